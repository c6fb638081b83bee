"""Where int8 loses: per-layer float vs int8 errors from TFLite's QuantizationDebugger.

For each quantized op the debugger runs the op in int8 and in float on the same (quantized) inputs over the
debug patches, so each row is the error that op adds by itself: RMSE in pixel-value units and relative to the
op's quantization step (``rmse / scale`` well above 0.3 means a range or precision problem, not rounding).
The same debugger can also build selectively quantized models (``denylisted_ops``: those ops stay in float).
"""
from __future__ import annotations

import csv
import io
import warnings
from dataclasses import asdict, dataclass
from typing import Iterator, Sequence

import numpy as np

from tfsr.keras import tf
from tfsr.tflite import ConvertOptions, make_converter


@dataclass
class LayerError:
    op: str
    tensor: str  # the first TFLite name of the tensor: the Keras layer it came from
    rmse: float
    rmse_over_scale: float
    max_abs_error: float
    scale: float
    node: str = ""  # the full TFLite tensor name, as ``selectively_quantized(float_nodes=...)`` takes it

    def to_json(self) -> dict:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in asdict(self).items() if k != "node"}


def _debugger(model, options: ConvertOptions, representative: Sequence[np.ndarray], debug_patches: Sequence[np.ndarray],
              denylisted_ops: Sequence[str] = (), denylisted_nodes: Sequence[str] = ()):  # fmt: skip
    float_io = ConvertOptions(options.mode, "float32", options.input_hw, options.per_channel)
    converter = make_converter(model, float_io, representative)
    debug_options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_ops=list(denylisted_ops) or None, denylisted_nodes=list(denylisted_nodes) or None
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the debugger runs the deprecated tf.lite.Interpreter; it still works
        return tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=lambda: ([p[None].astype(np.float32)] for p in debug_patches),
            debug_options=debug_options,
        )  # fmt: skip


def layer_errors(model, options: ConvertOptions, representative: Sequence[np.ndarray],
                 debug_patches: Sequence[np.ndarray]) -> list[LayerError]:  # fmt: skip
    """Per-op int8 errors of ``model`` converted with ``options``, worst (by RMSE) first."""
    debugger = _debugger(model, options, representative, debug_patches)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        debugger.run()
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    rows = []
    for row in csv.DictReader(io.StringIO(dump.getvalue())):
        scale = float(row["scale"])
        rmse = float(np.sqrt(float(row["mean_squared_error"])))
        rows.append(LayerError(row["op_name"], row["tensor_name"].split(";")[0], rmse, rmse / scale if scale else 0.0,
                               float(row["max_abs_error"]), scale, row["tensor_name"]))  # fmt: skip
    return sorted(rows, key=lambda r: r.rmse, reverse=True)


def selectively_quantized(model, options: ConvertOptions, representative: Sequence[np.ndarray],
                          float_ops: Sequence[str] = (), float_nodes: Sequence[str] = ()) -> bytes:  # fmt: skip
    """An int8 model (float I/O) keeping ``float_ops`` (e.g. ``["MUL", "LOGISTIC"]`` for attention) and the
    ``float_nodes`` (``LayerError.node`` names, e.g. the worst layers) in float."""
    debugger = _debugger(model, options, representative, representative[:2], float_ops, float_nodes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return debugger.get_nondebug_quantized_model()


@dataclass
class PropagatedError:
    tensor: str  # the first TFLite name of the tensor
    rmse: float  # int8 (dequantized) minus float, over the patches, in the tensor's own units (0-255 features)
    bias_rms: float  # RMS over channels of each channel's mean error: the part a bias could correct
    snr_db: float  # float tensor power over error power
    abs_max: float  # of the float tensor

    def to_json(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _every_tensor(data: bytes, patches: Sequence[np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
    """For each patch, {name: value} of every 4-D activation (op output) of a TFLite model, dequantized."""
    from ai_edge_litert.interpreter import Interpreter

    from tfsr.tflite import dequantize, quantize_to

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # preserve_all_tensors "is for debugging": that is what this is
        interpreter = Interpreter(model_content=data, experimental_preserve_all_tensors=True)
    source = interpreter.get_input_details()[0]
    activations = {source["index"]} | {i for op in interpreter._get_ops_details() for i in op["outputs"]}
    shape = None
    for patch in patches:
        if patch.shape != shape:
            interpreter.resize_tensor_input(source["index"], [1, *patch.shape])
            interpreter.allocate_tensors()
            shape = patch.shape
        interpreter.set_tensor(source["index"], quantize_to(patch[None].astype(np.float32), source))
        interpreter.invoke()
        yield {detail["name"]: dequantize(interpreter.get_tensor(detail["index"]), detail)
               for detail in interpreter.get_tensor_details()
               if detail["index"] in activations and len(detail["shape"]) == 4}  # fmt: skip


def propagated_errors(float_model: bytes, int8_model: bytes, patches: Sequence[np.ndarray]) -> list[PropagatedError]:
    """Float vs int8 tensors *through the whole network* (what the debugger's per-op errors do not show): both
    TFLite models run on the same patches and every tensor they share by name is compared, in graph order.
    ``float_model``: the calibrated float model the int8 one was quantized from (``ranges.calibrated_model``),
    which keeps its tensor names."""
    errors: dict[str, list[np.ndarray]] = {}
    references: dict[str, list[np.ndarray]] = {}
    for reference, quantized in zip(_every_tensor(float_model, patches), _every_tensor(int8_model, patches)):
        for name, value in reference.items():
            if name in quantized and quantized[name].shape == value.shape:
                errors.setdefault(name, []).append((quantized[name] - value).reshape(-1, value.shape[-1]))
                references.setdefault(name, []).append(value.reshape(-1, value.shape[-1]))
    rows = []
    for name, parts in errors.items():
        error, value = np.concatenate(parts), np.concatenate(references[name])
        power = float(np.mean(error**2))
        rows.append(PropagatedError(name.split(";")[0], float(np.sqrt(power)), float(np.sqrt(np.mean(error.mean(0) ** 2))),
                                    float(10 * np.log10(np.mean(value**2) / max(power, 1e-12))), float(np.abs(value).max())))  # fmt: skip
    return rows
