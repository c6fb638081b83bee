"""TFLite export, inspection and inference: float32 / float16 / int8 conversion, an op audit, a predictor.

Conversions take a Keras SR model (input and output RGB in [0, 255]) and use batch 1; the spatial shape stays
dynamic unless ``input_hw`` fixes it (what accelerators with static shapes need). Importing this module registers
``.tflite`` files with :func:`tfsr.predictors.make_predictor`, so ``cli.py evaluate model.tflite`` works.
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from tfsr.errors import TfsrError, first_line
from tfsr.keras import tf
from tfsr.predictors import SUFFIX_FACTORIES, check_scale
from tfsr.tiling import with_tiling

IO_TYPES = ("int8", "uint8", "float32")
MODES = ("float32", "float16", "int8", "int8-qat", "int16x8")
DEFAULT_THREADS = 2


@dataclass(frozen=True)
class ConvertOptions:
    """How a Keras model becomes a .tflite flatbuffer.

    ``int8``: post-training full-integer quantization calibrated on ``representative`` LR patches;
    ``int8-qat``: a QAT model whose fake-quant ranges are already learned (patches optional: they only calibrate
    tensors that have no fake-quant node);
    ``int16x8``: 16-bit activations with 8-bit weights (where the target accepts it).
    """

    mode: str = "int8"
    io: str = "int8"
    input_hw: tuple[int, int] | None = None  # fixed spatial shape; None = dynamic
    per_channel: bool = True

    def __post_init__(self):
        if self.mode not in MODES:
            raise TfsrError(f"conversion mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.io not in IO_TYPES:
            raise TfsrError(f"--io must be one of {', '.join(IO_TYPES)}, not {self.io!r}")
        if self.input_hw is not None and min(self.input_hw) < 1:
            raise TfsrError(f"--input-size must be positive, not {self.input_hw[0]}x{self.input_hw[1]}")


def io_dtype(io: str, mode: str):
    if mode == "int16x8":
        return tf.int16 if io != "float32" else tf.float32  # int16x8 models take int16 or float I/O only
    return {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}[io]


def make_converter(model, options: ConvertOptions, representative: Sequence[np.ndarray] | None = None):
    """A configured ``TFLiteConverter`` (batch 1). ``representative``: float32 LR patches (h, w, 3) in [0, 255]."""
    h, w = options.input_hw or (None, None)

    @tf.function(input_signature=[tf.TensorSpec([1, h, w, 3], tf.float32, name="lr")])
    def serve(lr):
        return model(lr, training=False)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], model)
    if options.mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif options.mode != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if options.mode != "int8-qat" and not representative:
            raise TfsrError("post-training int8 needs calibration patches (--calib-data)")
        if representative:
            # For QAT models only tensors without a fake-quant node (inside Average, multi-op layers) are
            # calibrated, instead of being left in float; the learned QAT ranges are kept where they exist.
            converter.representative_dataset = lambda: ([p[None].astype(np.float32)] for p in representative)
        if options.mode == "int8":
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        elif options.mode == "int16x8":
            # 16x8 lacks some kernels (DEPTH_TO_SPACE): those run in float, and the op audit reports them.
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS
            ]
        converter.inference_input_type = io_dtype(options.io, options.mode)
        converter.inference_output_type = io_dtype(options.io, options.mode)
        converter._experimental_disable_per_channel = not options.per_channel
    return converter


def convert(model, options: ConvertOptions, representative: Sequence[np.ndarray] | None = None) -> bytes:
    """The model as a .tflite flatbuffer (batch 1). ``representative``: float32 LR patches (h, w, 3) in [0, 255]."""
    converter = make_converter(model, options, representative)
    try:
        return converter.convert()
    except Exception as exc:  # the converter raises many types, with MLIR dumps; keep the first line
        raise TfsrError(f"TFLite conversion ({options.mode}) of {model.name} failed: {first_line(exc)}") from None


def gzip_size(data: bytes) -> int:
    """Size after gzip -9: what a download or an app bundle pays, and where pruned zeros show up."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))


# ------------------------------------------------------------------------------------------------ op audit

# Edge TPU: the operations the compiler maps to the TPU (coral.ai/docs/edgetpu/models-intro, "Supported
# operations"). The compiler maps the graph up to the first unsupported op; that op and the rest run on the CPU.
EDGETPU_OPS = frozenset(
    ["ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS", "FULLY_CONNECTED",
     "L2_NORMALIZATION", "LOGISTIC", "LSTM", "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "PACK", "PAD",
     "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE",
     "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT",
     "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "SQUARED_DIFFERENCE", "TANH", "TRANSPOSE", "TRANSPOSE_CONV"]
)  # fmt: skip
# Android NNAPI: the ops the TFLite NNAPI delegate maps (tensorflow/lite/delegates/nnapi/nnapi_delegate.cc,
# NNAPI feature level 3+); others fall back to the CPU and split the graph.
NNAPI_OPS = frozenset(
    ["ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE", "DEQUANTIZE",
     "DIV", "ELU", "EXP", "EXPAND_DIMS", "FULLY_CONNECTED", "HARD_SWISH", "L2_NORMALIZATION", "LEAKY_RELU",
     "LOGISTIC", "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "PAD", "PADV2", "PRELU", "QUANTIZE",
     "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR",
     "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQRT", "SQUARED_DIFFERENCE",
     "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "TANH", "TRANSPOSE", "TRANSPOSE_CONV"]
)  # fmt: skip
TARGET_OPS: dict[str, frozenset[str] | None] = {"generic": None, "nnapi": NNAPI_OPS, "edgetpu": EDGETPU_OPS}
FLOAT_TYPES = ("FLOAT32", "FLOAT16")


@dataclass
class OpRecord:
    index: int
    name: str
    version: int
    inputs: list[str]  # activation tensor types ("INT8", "FLOAT32" ...); weights are listed separately
    weights: list[str]
    outputs: list[str]


@dataclass
class OpAudit:
    target: str
    ops: list[OpRecord]
    input_types: list[str]
    output_types: list[str]
    input_shape: list[int]  # -1 for a dynamic dimension
    problems: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for op in self.ops:
            counts[op.name] = counts.get(op.name, 0) + 1
        return counts

    def to_json(self) -> dict:
        return {
            "target": self.target,
            "input": {"types": self.input_types, "shape": self.input_shape},
            "output_types": self.output_types,
            "op_counts": self.counts(),
            "ops": [
                {"op": o.name, "version": o.version, "in": o.inputs, "weights": o.weights, "out": o.outputs}
                for o in self.ops
            ],
            "problems": self.problems,
        }

    def summary(self) -> str:
        ops = ", ".join(f"{n} x{c}" for n, c in sorted(self.counts().items()))
        return f"{len(self.ops)} ops ({ops}); " + ("no problems" if not self.problems else "; ".join(self.problems))


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def enum_names(enum_class) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_") and isinstance(v, int)}


def audit_ops(data: bytes, target: str = "generic", expect_integer: bool = True) -> OpAudit:
    """Every op of the main subgraph with its activation types, read from the flatbuffer itself.

    Problems: float ops in an integer model, QUANTIZE/DEQUANTIZE inside the graph (anything but the conversion
    of a float graph input or output), dynamic shapes and ops outside the target's list.
    """
    if target not in TARGET_OPS:
        raise TfsrError(f"--target must be one of {', '.join(TARGET_OPS)}, not {target!r}")
    schema = _schema()
    model = schema.Model.GetRootAs(data, 0)
    op_names, type_names = enum_names(schema.BuiltinOperator), enum_names(schema.TensorType)
    graph = model.Subgraphs(0)
    graph_inputs, graph_outputs = set(graph.InputsAsNumpy().tolist()), set(graph.OutputsAsNumpy().tolist())

    def is_constant(t: int) -> bool:
        return model.Buffers(graph.Tensors(t).Buffer()).DataLength() > 0

    def type_of(t: int) -> str:
        return type_names[graph.Tensors(t).Type()]

    ops = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = op_names.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM":
            name = f"CUSTOM:{code.CustomCode().decode()}"
        ins = [t for t in op.InputsAsNumpy().tolist() if t >= 0]
        ops.append(OpRecord(i, name, code.Version(), [type_of(t) for t in ins if not is_constant(t)],
                            [type_of(t) for t in ins if is_constant(t)],
                            [type_of(t) for t in op.OutputsAsNumpy().tolist()]))  # fmt: skip
    inputs, outputs = sorted(graph_inputs), sorted(graph_outputs)
    in_tensor = graph.Tensors(inputs[0])
    shape = (in_tensor.ShapeSignatureAsNumpy() if not in_tensor.ShapeSignatureIsNone() else in_tensor.ShapeAsNumpy())
    audit = OpAudit(target, ops, [type_of(t) for t in inputs], [type_of(t) for t in outputs], shape.tolist())

    allowed = TARGET_OPS[target]
    for record, i in zip(ops, range(graph.OperatorsLength())):
        op = graph.Operators(i)
        at_input = set(op.InputsAsNumpy().tolist()) <= graph_inputs
        at_output = set(op.OutputsAsNumpy().tolist()) <= graph_outputs
        # Converting the graph's own input or output (float or uint8 I/O) is expected; anywhere else it is not.
        boundary = (record.name == "QUANTIZE" and (at_input or at_output)) or (record.name == "DEQUANTIZE" and at_output)
        if record.name in ("QUANTIZE", "DEQUANTIZE") and not boundary:
            audit.problems.append(f"{record.name} inside the graph (op {i}: {record.inputs} -> {record.outputs})")
        elif expect_integer and not boundary and any(t in FLOAT_TYPES for t in record.inputs + record.outputs):
            audit.problems.append(f"float op {record.name} (op {i}: {record.inputs} -> {record.outputs})")
        if allowed is not None and record.name not in allowed:
            audit.problems.append(f"{record.name} (op {i}) is not supported by {target}: it falls back to the CPU")
    if target == "edgetpu":
        if any(d < 0 for d in audit.input_shape):
            audit.problems.append(f"dynamic input shape {audit.input_shape}: the Edge TPU needs a fixed shape")
        if audit.input_shape and audit.input_shape[0] != 1:
            audit.problems.append(f"batch {audit.input_shape[0]}: the Edge TPU needs batch 1")
    return audit


# ------------------------------------------------------------------------------------------------ inference


def _interpreter(data: bytes, threads: int, delegate: bool = True):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if delegate else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return Interpreter(model_content=data, num_threads=threads, experimental_op_resolver_type=resolver)


def quantize_to(values: np.ndarray, detail: dict) -> np.ndarray:
    """Float values as the tensor's dtype, by its (scale, zero point); float tensors pass through."""
    dtype = detail["dtype"]
    scale, zero = detail["quantization"]
    if not np.issubdtype(dtype, np.integer) or scale == 0:
        return values.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(values / scale + zero), info.min, info.max).astype(dtype)


def dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    if not np.issubdtype(values.dtype, np.integer) or scale == 0:
        return values.astype(np.float32)
    return ((values.astype(np.float32) - zero) * scale).astype(np.float32)


class TFLitePredictor:
    """Runs a .tflite SR model on uint8 RGB LR images with LiteRT (XNNPACK on CPU).

    Dynamic-shape models are resized per image; fixed-shape ones expose ``input_hw`` and are tiled with overlap
    by :func:`tfsr.tiling.with_tiling` (see :func:`tflite_predictor`).
    """

    def __init__(self, data: bytes, label: str, scale: int | None = None, threads: int = DEFAULT_THREADS):
        self.label = label
        self.data = data
        self.interpreter = _interpreter(data, threads)
        self.input = self.interpreter.get_input_details()[0]
        self.output_index = self.interpreter.get_output_details()[0]["index"]
        signature = self.input["shape_signature"]
        self.input_hw = None if min(signature[1:3]) < 0 else (int(signature[1]), int(signature[2]))
        self._shape = None
        probe = np.zeros((*(self.input_hw or (16, 16)), 3), dtype=np.uint8)  # E-RFDN's ESA needs 15x15 or more
        self.scale = check_scale(label, self(probe).shape[0] // probe.shape[0], scale)

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        shape = [1, lr.shape[0], lr.shape[1], 3]
        if self.input_hw is not None and tuple(shape[1:3]) != self.input_hw:
            raise TfsrError(f"{self.label} takes {self.input_hw[1]}x{self.input_hw[0]} inputs, not {shape[2]}x{shape[1]}")
        if shape != self._shape:
            if self.input_hw is None:
                self.interpreter.resize_tensor_input(self.input["index"], shape)
            self.interpreter.allocate_tensors()
            self._shape = shape
        self.interpreter.set_tensor(self.input["index"], quantize_to(lr[None].astype(np.float32), self.input))
        self.interpreter.invoke()
        output = self.interpreter.get_output_details()[0]
        return dequantize(self.interpreter.get_tensor(self.output_index), output)[0]


def read_tflite(path: str | Path) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise TfsrError(f"model file {path} does not exist")
    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise TfsrError(f"model file {path} is not a TFLite flatbuffer (truncated or another format)")
    return data


def tflite_predictor(path: str | Path, scale: int | None = None, threads: int = DEFAULT_THREADS):
    """A predictor for a .tflite file (fixed-shape models tiled)."""
    data = read_tflite(path)
    try:
        predictor = TFLitePredictor(data, Path(path).stem, scale, threads)
    except TfsrError:
        raise
    except Exception as exc:  # LiteRT rejects a damaged flatbuffer in many ways (ValueError, RuntimeError ...)
        raise TfsrError(f"model file {path} is not a valid TFLite model: {first_line(exc)}") from None
    return with_tiling(predictor, None)


SUFFIX_FACTORIES[".tflite"] = lambda path, scale: tflite_predictor(path, scale)
