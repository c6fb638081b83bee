"""int8 inference simulated layer by layer in Keras, to measure what no TFLite model can: activations with one
int8 scale *per channel*.

TFLite quantizes each activation tensor with one scale; every remedy that gives channels more of that range
(equalization, folding, splitting tensors) is bounded by what per-channel activation scales would give. The
simulation rounds each layer's output to int8 (per tensor or per channel, MSE-optimal ranges from histograms of
calibration patches as ``tfsr.quantization.ranges``) and each conv kernel to int8 per output channel, and runs the
next layer on the rounded values. Ops that keep their input's scale in TFLite (max-pool, pixel shuffle, the output
clip) are not rounded again; a sigmoid's output takes TFLite's fixed 1/256 step. Per tensor, it lands within a
few hundredths of a dB of the real int8 model (E-RFDN: docs/quantization-benchmarks.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from tfsr.keras import keras, layers, tf
from tfsr.layers import PixelShuffle
from tfsr.models.common import activation_name
from tfsr.quantization.ranges import BINS, LEVELS, mse_range

SAME_SCALE = (layers.MaxPooling2D, PixelShuffle, layers.ReLU)  # TFLite keeps the input's scale (ReLU: the clip)
SIMULATIONS = ("float", "weights", "tensor", "channel")


@dataclass
class ActivationRanges:
    tensor: dict[str, tuple[float, float]]  # layer -> MSE-optimal (lo, hi) of its output
    channel: dict[str, np.ndarray]  # layer -> (channels, 2) MSE-optimal (lo, hi) per channel


def single_call_layers(model) -> list:
    """``model``'s layers in call order; ValueError unless it has one input and calls each layer once."""
    found = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if len(model.inputs) != 1 or any(len(layer._inbound_nodes) != 1 for layer in found):
        raise ValueError(f"{model.name}: the simulation needs one input and layers called once (no weight sharing)")
    return found


def activation_ranges(model, patches: np.ndarray, batch: int = 8, per_channel: bool = True) -> ActivationRanges:
    """MSE-optimal int8 ranges of every layer output over ``patches``, per tensor and (unless not asked, the slow
    part: a histogram per channel) per channel."""
    found = single_call_layers(model)
    probe = keras.Model(model.inputs, [layer.output for layer in found])

    def outputs():
        for start in range(0, len(patches), batch):
            for layer, value in zip(found, probe(patches[start : start + batch], training=False)):
                yield layer.name, np.asarray(value, np.float64).reshape(-1, value.shape[-1])

    lo, hi = {}, {}
    for name, flat in outputs():
        lo[name] = np.minimum(lo.get(name, 0.0), flat.min(axis=0))
        hi[name] = np.maximum(hi.get(name, 0.0), flat.max(axis=0))
    tensor_hist = {name: np.zeros(BINS) for name in lo}
    channel_hist = {name: np.zeros((len(lo[name]) if per_channel else 0, BINS)) for name in lo}
    for name, flat in outputs():
        tensor_hist[name] += np.histogram(flat, BINS, (lo[name].min(), max(hi[name].max(), 1e-6)))[0]
        for c in range(len(channel_hist[name])):
            channel_hist[name][c] += np.histogram(flat[:, c], BINS, (lo[name][c], max(hi[name][c], 1e-6)))[0]
    tensor = {n: mse_range(tensor_hist[n], lo[n].min(), max(hi[n].max(), 1e-6)) for n in lo}
    channel = {n: np.array([mse_range(h, l, max(u, 1e-6)) for h, l, u in zip(channel_hist[n], lo[n], hi[n])])
               for n in lo}  # fmt: skip
    return ActivationRanges(tensor, channel)


def fake_quant(x: np.ndarray, lo, hi) -> np.ndarray:
    """Round to the int8 grid of [lo, hi] (zero exactly representable), per channel when lo/hi are arrays."""
    step = (np.asarray(hi, np.float64) - lo) / LEVELS
    zero = np.round(-np.asarray(lo, np.float64) / step)
    return ((np.clip(np.round(x / step) + zero, 0, LEVELS) - zero) * step).astype(np.float32)


def kernel_steps(kernel: np.ndarray) -> np.ndarray:
    """The int8 step of each output channel of a conv kernel (last axis) as TFLite's per-channel weights take it:
    symmetric, the largest magnitude at 127 (1 for an all-zero channel)."""
    step = np.abs(kernel).reshape(-1, kernel.shape[-1]).max(axis=0) / 127.0
    return np.where(step == 0, 1.0, step)


def nearest_int8(kernel: np.ndarray) -> np.ndarray:
    """``kernel`` rounded to the nearest step of its per-channel int8 grid (``kernel_steps``)."""
    steps = kernel_steps(kernel)
    return np.round(kernel / steps) * steps


def int8_weights(model) -> keras.Model:
    """A copy of ``model`` whose conv kernels are rounded to int8, symmetric, one scale per output channel."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for layer in copy.layers:
        if type(layer) is layers.Conv2D:
            kernel, *rest = layer.get_weights()
            layer.set_weights([nearest_int8(kernel), *rest])
    return copy


def layer_call(layer, values: dict, twin=None):
    """``layer`` called as in its model (its only node) on ``values`` (tensor id in the model -> value); or, as
    ``layer`` is called there, ``twin`` (the same layer in a copy of the model, with other weights)."""
    node = layer._inbound_nodes[0]
    args, kwargs = tf.nest.map_structure(lambda t: values.get(id(t), t), (node.call_args, node.call_kwargs))
    return (layer if twin is None else twin)(*args, **kwargs)


def rounded_output(layer, value: np.ndarray, ranges: ActivationRanges, simulation: str = "tensor") -> np.ndarray:
    """``layer``'s output ``value`` as int8 inference would hold it (``simulation`` as ``simulated``'s)."""
    if simulation in ("float", "weights") or isinstance(layer, SAME_SCALE):
        return value
    if activation_name(layer) == "sigmoid":
        return np.clip(np.round(value * 256.0), 0, 255) / np.float32(256.0)
    if simulation == "channel":
        return fake_quant(value, ranges.channel[layer.name][:, 0], ranges.channel[layer.name][:, 1])
    return fake_quant(value, *ranges.tensor[layer.name])


def simulated(model, ranges: ActivationRanges, simulation: str) -> Callable[[np.ndarray], np.ndarray]:
    """``predict(lr) -> sr`` of ``model`` with int8 weights (``simulation`` "weights"), and activations rounded
    per tensor ("tensor") or per channel ("channel"); "float" rounds nothing."""
    if simulation not in SIMULATIONS:
        raise ValueError(f"simulation must be one of {SIMULATIONS}, not {simulation!r}")
    model = model if simulation == "float" else int8_weights(model)
    found = single_call_layers(model)

    def predict(lr: np.ndarray) -> np.ndarray:
        values = {id(model.inputs[0]): tf.constant(lr[None].astype(np.float32))}
        for layer in found:
            value = np.asarray(layer_call(layer, values))
            values[id(layer.output)] = tf.constant(rounded_output(layer, value, ranges, simulation))
        return np.asarray(values[id(model.outputs[0])])[0]

    return predict
