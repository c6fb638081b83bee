"""Own int8 scales for the inputs of a concatenation that also feed other ops (PTQ).

TFLite's int8 CONCATENATION takes one scale for all its inputs and its output, and the converter's quantizer
meets that by dropping the inputs' own calibration ranges (``RemoveRedundantStatsOps``): every input takes the
concatenation's scale, the union of all their ranges. An input that also feeds a residual add or a conv loses
its precision there too. In s-LWSR the head conv's output (own step ~1.5 on the 0-255 feature scale) feeds the
first residual block *and* the final concat of all blocks, so it is stored with the concat's step 17.
QAT exports do not have this: each tensor keeps its fake-quant range and the converter requantizes (QUANTIZE
int8 -> int8) into the concatenation. ``own_concat_scales`` does the same to a PTQ model after conversion:
such a tensor gets the scale of its own calibrated range, a QUANTIZE op feeds the concatenation at the
concatenation's scale, and every conv that reads the tensor gets its int32 bias requantized for the new input
scale (TFLite quantizes a conv's bias with input scale x weight scale). Only tensors whose producer and
consumers accept any input/output scale are changed; the rest keep the converter's choice.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfsr.tflite import enum_names

# Ops whose int8 kernels take their output scale from the output tensor (requantizing internally).
FREE_OUTPUT = {"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED", "ADD", "SUB", "MUL", "LEAKY_RELU", "PRELU"}
# Ops that read any input scale: activation input slot -> bias slot (None: no bias).
FREE_INPUT = {"CONV_2D": (0, 2), "DEPTHWISE_CONV_2D": (0, 2), "FULLY_CONNECTED": (0, 2), "TRANSPOSE_CONV": (2, 3),
              "ADD": (None, None), "SUB": (None, None), "MUL": (None, None), "LEAKY_RELU": (0, None),
              "PRELU": (0, None), "QUANTIZE": (0, None)}  # fmt: skip
MIN_GAIN = 1.5  # requantize only where the own step is at least this much finer than the concatenation's


def int8_params(lo: float, hi: float) -> tuple[float, int]:
    """Scale and zero point of asymmetric int8 over [lo, hi] widened to hold 0, as TFLite's quantizer makes them."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255.0 if hi > lo else 1.0
    return scale, int(np.clip(np.round(-128 - lo / scale), -128, 127))


@dataclass
class Requantized:
    tensor: str
    concat_scale: float
    own_scale: float


def own_concat_scales(int8: bytes, calibrated: bytes, min_gain: float = MIN_GAIN) -> tuple[bytes, list[Requantized]]:
    """``int8`` with each concatenation input that also feeds other ops on the scale of its range in
    ``calibrated`` (the calibrated float model ``int8`` was quantized from), where that step is at least
    ``min_gain`` times finer; a QUANTIZE op per concatenation it feeds brings it to the concatenation's scale."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    from tfsr.quantization.ranges import tensor_ranges

    calibrated_t = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    ranges = {calibrated_t.subgraphs[0].tensors[i].name: r for i, r in tensor_ranges(calibrated_t).items()}
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(int8))
    graph = model.subgraphs[0]
    op_names = enum_names(schema.BuiltinOperator)

    def name_of(op) -> str:
        code = model.operatorCodes[op.opcodeIndex]
        return op_names[max(code.builtinCode, code.deprecatedBuiltinCode)]

    producer, consumers = {}, {}
    for op in graph.operators:
        for t in op.outputs:
            producer[t] = op
        for t in op.inputs:
            if t >= 0:
                consumers.setdefault(t, []).append(op)

    def params(t) -> tuple[float, int]:
        q = graph.tensors[t].quantization
        return float(q.scale[0]), int(q.zeroPoint[0])

    def accepts_any_scale(op, t) -> bool:
        if name_of(op) not in FREE_INPUT:
            return False
        slot = FREE_INPUT[name_of(op)][0]
        return slot is None or (op.inputs[slot] == t and list(op.inputs).count(t) == 1)

    boundary = set(graph.inputs) | set(graph.outputs)
    plan: dict[int, tuple[float, int]] = {}  # tensor -> own (scale, zero point)
    for t, users in consumers.items():
        concats = [op for op in users if name_of(op) == "CONCATENATION"]
        others = [op for op in users if name_of(op) != "CONCATENATION"]
        if not concats or not others or t in boundary or graph.tensors[t].name not in ranges:
            continue
        if t not in producer or name_of(producer[t]) not in FREE_OUTPUT or not all(accepts_any_scale(op, t) for op in others):
            continue
        if any(params(op.outputs[0]) != params(t) for op in concats):
            continue  # not on its concatenation's scale: the converter already requantizes it
        own = int8_params(*ranges[graph.tensors[t].name])
        if own[0] * min_gain <= params(t)[0]:
            plan[t] = own

    if not plan:
        return int8, []
    quantize_code = _opcode(model, schema, schema.BuiltinOperator.QUANTIZE)
    done, inserted = [], {}  # inserted: concat op id -> QUANTIZE ops to place before it
    for t, (scale, zero_point) in plan.items():
        tensor = graph.tensors[t]
        old_scale, old_zero_point = params(t)
        for op in consumers[t]:
            if name_of(op) == "CONCATENATION":
                copy = _new_tensor(model, schema, tensor, tensor.name + b"/concat_scale", old_scale, old_zero_point)
                requantize = schema.OperatorT()
                requantize.opcodeIndex, requantize.inputs, requantize.outputs = quantize_code, [t], [copy]
                inserted.setdefault(id(op), []).append(requantize)
                op.inputs = [copy if x == t else x for x in op.inputs]
            else:
                bias_slot = FREE_INPUT[name_of(op)][1]
                if bias_slot is not None and len(op.inputs) > bias_slot and op.inputs[bias_slot] >= 0:
                    _rescale_bias(model, schema, graph.tensors[op.inputs[bias_slot]], old_scale / scale)
        tensor.quantization.scale, tensor.quantization.zeroPoint = [scale], [zero_point]
        done.append(Requantized(tensor.name.decode(), old_scale, scale))
    graph.operators = [new for op in graph.operators for new in (*inserted.get(id(op), []), op)]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), done


def _opcode(model, schema, builtin: int) -> int:
    for index, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            code.version = max(code.version, 2)  # version 2: int8 in and out
            return index
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 2
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _new_tensor(model, schema, like, name: bytes, scale: float, zero_point: int) -> int:
    tensor = schema.TensorT()
    tensor.name, tensor.type = name, like.type
    tensor.shape, tensor.shapeSignature = list(like.shape), None if like.shapeSignature is None else list(like.shapeSignature)
    tensor.quantization = schema.QuantizationParametersT()
    tensor.quantization.scale, tensor.quantization.zeroPoint = [scale], [zero_point]
    model.buffers.append(schema.BufferT())
    tensor.buffer = len(model.buffers) - 1
    model.subgraphs[0].tensors.append(tensor)
    return len(model.subgraphs[0].tensors) - 1


def _rescale_bias(model, schema, bias, factor: float) -> None:
    """Requantize an int32 bias whose scale (input scale x weight scale) changes by 1 / ``factor``."""
    values = np.frombuffer(bytes(model.buffers[bias.buffer].data), np.int32).astype(np.float64)
    rescaled = np.clip(np.round(values * factor), np.iinfo(np.int32).min, np.iinfo(np.int32).max).astype(np.int32)
    buffer = schema.BufferT()  # a fresh buffer: the converter may share one between equal constants
    buffer.data = np.frombuffer(rescaled.tobytes(), np.uint8)
    model.buffers.append(buffer)
    bias.buffer = len(model.buffers) - 1
    bias.quantization.scale = [s / factor for s in np.ravel(bias.quantization.scale)]
