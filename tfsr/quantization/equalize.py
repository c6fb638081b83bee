"""Channel equalization: give the small channels of each activation more of its int8 range, in float, exactly.

int8 activations have one scale per tensor, so a tensor whose channels span very different ranges (E-RFDN's
first block: a few channels reach +-1500 while most stay within +-50) quantizes its small channels coarsely.
Multiplying channel c of a tensor by a gain s_c > 0 changes nothing in float when the producers fold s_c into
their output weights (kernel[..., c] and bias[c] times s_c) and the consumers into their input weights
(kernel[..., c, :] / s_c); positively homogeneous ops in between (ReLU, LeakyReLU, PReLU, Add, max-pool,
bilinear resize, concatenation, a gate multiply, contrast pooling) pass the gain through unchanged. This is the
cross-layer equalization of Nagel et al. (ICCV 2019) and SmoothQuant's migration (Xiao et al., ICML 2023),
generalized to the graph of any tfsr model:

1. Channels tied by those ops form classes that must share one gain (a union-find over (tensor, channel)); a
   channel that reaches a model input or output, or any op that is not homogeneous (sigmoid, pixel shuffle,
   a conv with bias into a sigmoid, ...) keeps gain 1.
2. Each class gets ``s = min over its tensors t of (max_t / range_t,c) ** strength``, capped at ``max_gain``,
   from per-channel ranges on calibration patches: no tensor's largest magnitude grows, its small channels grow up
   to it. ``strength`` < 1 leaves some of the work to the consumer's weights, whose input slices shrink by s.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from tfsr.keras import keras, layers
from tfsr.layers import ContrastPooling, ResizeLike
from tfsr.models.common import activation_name, model_nodes

# Single-input ops with f(s * x) = s * f(x) per channel for s > 0.
_HOMOGENEOUS = (layers.LeakyReLU, layers.PReLU, layers.MaxPooling2D, layers.AveragePooling2D, layers.UpSampling2D,
                layers.ZeroPadding2D, layers.Cropping2D, layers.Dropout, ContrastPooling)  # fmt: skip
_ELEMENTWISE = (layers.Add, layers.Subtract, layers.Average, layers.Maximum, layers.Minimum)
_HOMOGENEOUS_ACTIVATIONS = ("linear", "relu")


def _tensor_key(tensor) -> tuple[str, int, int]:
    layer, node_index, tensor_index = tensor._keras_history
    return layer.name, node_index, tensor_index


def _passes_gain(layer) -> bool:
    if isinstance(layer, layers.ReLU):
        return layer.max_value is None and float(layer.threshold) == 0.0 and float(layer.negative_slope) >= 0.0
    if isinstance(layer, layers.Activation):
        return activation_name(layer) in _HOMOGENEOUS_ACTIVATIONS
    return isinstance(layer, _HOMOGENEOUS)


def _is_gate(tensor) -> bool:
    return activation_name(tensor._keras_history[0]) == "sigmoid"


@dataclass
class ChannelClasses:
    """Union-find over the channels of every tensor of a model; class FIXED (index 0) keeps gain 1."""

    offsets: dict[tuple[str, int, int], int] = field(default_factory=dict)
    channels: dict[tuple[str, int, int], int] = field(default_factory=dict)
    parent: list[int] = field(default_factory=lambda: [0])

    def add(self, tensor) -> None:
        key = _tensor_key(tensor)
        if key not in self.offsets:
            n = int(tensor.shape[-1])
            self.offsets[key], self.channels[key] = len(self.parent), n
            self.parent.extend(range(len(self.parent), len(self.parent) + n))

    def ids(self, tensor) -> np.ndarray:
        key = _tensor_key(tensor)
        return np.arange(self.offsets[key], self.offsets[key] + self.channels[key])

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: Iterable[int], b: Iterable[int]) -> None:
        for i, j in zip(a, b):
            ri, rj = self.find(int(i)), self.find(int(j))
            if ri != rj:  # the smaller root wins, so FIXED (0) stays the root of its class
                self.parent[max(ri, rj)] = min(ri, rj)

    def fix(self, tensor) -> None:
        ids = self.ids(tensor)
        self.union(ids, np.zeros_like(ids))

    def roots(self, tensor) -> np.ndarray:
        return np.array([self.find(int(i)) for i in self.ids(tensor)])


def channel_classes(model) -> tuple[ChannelClasses, dict[str, tuple[list, list]]]:
    """The classes of channels that may share a gain, and for every conv layer its (inputs, outputs) tensors."""
    classes = ChannelClasses()
    convs: dict[str, tuple[list, list]] = {}
    for layer, _, inputs, outputs in model_nodes(model):
        for t in (*inputs, *outputs):
            classes.add(t)
        # Plain convs only: a transposed conv's kernel is (h, w, out, in) and a depthwise conv ties each output to
        # one input channel; both fall to the last branch (gain 1 on both sides).
        foldable = (
            isinstance(layer, layers.Conv2D)
            and not isinstance(layer, layers.Conv2DTranspose)
            and layer.groups == 1
            and activation_name(layer) in (*_HOMOGENEOUS_ACTIVATIONS, "sigmoid")
        )
        if foldable:
            if layer.name in convs:  # a shared conv (recurrent weights): every call must see the same gains
                first_in, first_out = convs[layer.name]
                classes.union(classes.ids(first_in[0]), classes.ids(inputs[0]))
                classes.union(classes.ids(first_out[0]), classes.ids(outputs[0]))
            else:
                convs[layer.name] = (inputs, outputs)
            if activation_name(layer) == "sigmoid":  # not homogeneous
                classes.fix(outputs[0])
        elif _passes_gain(layer) and len(inputs) == 1:
            classes.union(classes.ids(inputs[0]), classes.ids(outputs[0]))
        elif isinstance(layer, ResizeLike):  # input 1 only gives the size
            classes.union(classes.ids(inputs[0]), classes.ids(outputs[0]))
        elif isinstance(layer, _ELEMENTWISE) and all(t.shape[-1] == outputs[0].shape[-1] for t in inputs):
            for t in inputs:
                classes.union(classes.ids(t), classes.ids(outputs[0]))
        elif isinstance(layer, layers.Concatenate) and layer.axis in (-1, len(outputs[0].shape) - 1):
            classes.union(np.concatenate([classes.ids(t) for t in inputs]), classes.ids(outputs[0]))
        elif isinstance(layer, layers.Multiply) and len(inputs) == 2 and sum(map(_is_gate, inputs)) == 1:
            gate, features = sorted(inputs, key=lambda t: not _is_gate(t))
            classes.fix(gate)
            if features.shape[-1] == outputs[0].shape[-1]:
                classes.union(classes.ids(features), classes.ids(outputs[0]))
            else:
                classes.fix(features)
                classes.fix(outputs[0])
        else:
            for t in (*inputs, *outputs):
                classes.fix(t)
    for t in model.outputs:
        classes.fix(t)
    for name in list(convs):  # convs whose every side is fixed have nothing to fold
        ins, outs = convs[name]
        if not (classes.roots(ins[0]).any() or classes.roots(outs[0]).any()):
            del convs[name]
    return classes, convs


def channel_ranges(model, patches: np.ndarray, batch: int = 4) -> dict[tuple[str, int, int], np.ndarray]:
    """Per-channel max |x| of every tensor of ``model`` over ``patches`` (N, H, W, 3)."""
    by_key = {}  # insertion-ordered: the graph order
    for _, _, inputs, outputs in model_nodes(model):
        for t in (*inputs, *outputs):
            by_key.setdefault(_tensor_key(t), t)
    keys, tensors = list(by_key), list(by_key.values())
    probe = keras.Model(model.inputs, tensors)
    ranges = {key: np.zeros(int(t.shape[-1]), np.float64) for key, t in zip(keys, tensors)}
    for start in range(0, len(patches), batch):
        values = probe(patches[start : start + batch], training=False)
        for key, value in zip(keys, values):
            peak = np.max(np.abs(np.asarray(value, np.float64)).reshape(-1, value.shape[-1]), axis=0)
            ranges[key] = np.maximum(ranges[key], peak)
    return ranges


@dataclass
class Equalization:
    gains: dict[str, tuple[np.ndarray, np.ndarray]]  # conv layer -> (input gains, output gains)
    classes: int  # classes of channels that got a gain
    largest_gain: float


def equalization_gains(model, patches: np.ndarray, strength: float = 0.5, max_gain: float = 16.0) -> Equalization:
    """The gains (see the module docstring) for every conv with a non-fixed side."""
    if not 0.0 <= strength <= 1.0 or max_gain < 1.0:
        raise ValueError(f"strength must be in [0, 1] and max_gain >= 1, not {strength} and {max_gain}")
    classes, convs = channel_classes(model)
    ranges = channel_ranges(model, patches)
    gain = np.full(len(classes.parent), np.inf)
    for key, offset in classes.offsets.items():
        r = ranges[key]
        ratio = np.where(r > 0, r.max() / np.maximum(r, 1e-30), np.inf) ** strength
        roots = [classes.find(int(i)) for i in range(offset, offset + len(r))]
        np.minimum.at(gain, roots, ratio)
    gain = np.clip(np.where(np.isfinite(gain), gain, max_gain), 1.0, max_gain)
    gain[0] = 1.0
    gains = {name: (gain[classes.roots(ins[0])], gain[classes.roots(outs[0])]) for name, (ins, outs) in convs.items()}
    roots = {classes.find(i) for i in range(1, len(classes.parent))} - {0}
    return Equalization(gains, len(roots), float(gain.max()))


def equalize(model, patches: np.ndarray, strength: float = 0.5, max_gain: float = 16.0) -> tuple[keras.Model, Equalization]:
    """A copy of ``model`` with equalized channels: the same function in float, smaller int8 error."""
    plan = equalization_gains(model, patches, strength, max_gain)
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for name, (gain_in, gain_out) in plan.gains.items():
        layer = copy.get_layer(name)
        kernel, *rest = layer.get_weights()
        kernel = kernel * gain_out.astype(kernel.dtype) / gain_in[:, None].astype(kernel.dtype)
        layer.set_weights([kernel, *(b * gain_out.astype(b.dtype) for b in rest)])
    return copy, plan

