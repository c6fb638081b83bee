"""int8 conv weights chosen layer by layer to reproduce the float network, instead of rounded to the nearest step.

Rounding every weight to its nearest int8 step ignores two things the calibration patches know: which rounding
errors cancel in a conv's output (they are correlated through its inputs), and how far the int8 network's own
inputs to the conv have already drifted from the float ones. Layer by layer in topological order, over the
calibration patches, this takes a conv's inputs *as the int8 network computes them* (its weights reconstructed so
far, every activation rounded as ``tfsr.quantization.simulate`` does, per tensor like TFLite) and the float
network's output of the layer (before its activation), and picks

- the kernel and bias minimising the squared output error (least squares on the int8 inputs, slightly pulled
  towards the given weights),
- then the kernel's int8 values by GPTQ (Frantar et al., 2023): input rows rounded one at a time, each row's
  rounding error pushed onto the rows not yet rounded through the inverse of the inputs' Gram matrix, the bias
  last and left in float (TFLite keeps biases in int32 at a far finer step): the bias correction falls out.

The kernels are returned on their int8 grid, one step per output channel, with each channel's largest magnitude
at exactly 127 steps, so TFLite's per-channel weight quantization (step = largest magnitude / 127) reproduces the
chosen integers exactly. Weights that are exactly zero (pruning) stay zero. Convs of other kinds (depthwise,
transposed, grouped) keep their weights.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfsr.keras import keras, layers, tf
from tfsr.models.common import graph_use
from tfsr.quantization.simulate import (ActivationRanges, activation_ranges, kernel_steps, layer_call, nearest_int8,
                                        rounded_output, single_call_layers)  # fmt: skip

DAMPING = 0.01  # ridge, relative to each input's energy: keeps the least squares well posed on correlated inputs
ROWS_PER_CHUNK = 65536  # im2col rows per matrix product, to bound memory


@dataclass
class Reconstruction:
    layers: int  # convs whose weights were chosen
    output_error: dict[str, tuple[float, float]]  # conv -> (nearest rounding, reconstructed) output RMSE on patches


def _reconstructable(layer) -> bool:
    return type(layer) is layers.Conv2D and layer.groups == 1


def im2col(layer, x: tf.Tensor) -> tf.Tensor:
    """Rows of ``x``'s receptive fields as ``layer`` (a Conv2D) sees them: ``im2col(x) @ kernel.reshape(-1, out)``
    is the conv (before bias and activation)."""
    kh, kw = layer.kernel_size
    patches = tf.image.extract_patches(x, [1, kh, kw, 1], [1, *layer.strides, 1], [1, *layer.dilation_rate, 1],
                                       layer.padding.upper())  # fmt: skip
    return tf.reshape(patches, (-1, patches.shape[-1]))


def _gram(rows_q: np.ndarray, target: np.ndarray, use_bias: bool) -> tuple[np.ndarray, np.ndarray]:
    """X^T X and X^T Y of the int8 inputs' rows (a column of ones appended for the bias), in float64 chunks."""
    width = rows_q.shape[1] + use_bias
    gram, cross = np.zeros((width, width)), np.zeros((width, target.shape[1]))
    for start in range(0, len(rows_q), ROWS_PER_CHUNK):
        x = rows_q[start : start + ROWS_PER_CHUNK].astype(np.float64)
        if use_bias:
            x = np.hstack([x, np.ones((len(x), 1))])
        gram += x.T @ x
        cross += x.T @ target[start : start + ROWS_PER_CHUNK]
    return gram, cross


def _damped(gram: np.ndarray) -> np.ndarray:
    """The Gram matrix with each diagonal entry raised by ``DAMPING`` of itself: relative, since the inputs
    (pixels on a 0-255 scale, the bias's column of ones) differ in scale by orders of magnitude."""
    return gram + np.diag(DAMPING * np.diag(gram) + 1e-12)


def gptq_round(weights: np.ndarray, gram: np.ndarray, steps: np.ndarray, quantized_rows: int,
               pinned: np.ndarray, zero: np.ndarray) -> np.ndarray:  # fmt: skip
    """``weights`` (rows: inputs, columns: output channels) with its first ``quantized_rows`` rows rounded to
    multiples of ``steps`` (within +-127), each rounding error compensated on the later rows (rows after
    ``quantized_rows`` are free: the bias). ``pinned[c]`` is the row of channel c held at +-127 steps (so the
    channel's step stays its largest magnitude / 127; -1: none, an all-zero channel); ``zero``
    marks weights held at 0."""
    weights = weights.copy()
    damped = _damped(gram)
    # The upper Cholesky factor of the inverse Gram matrix: row i holds how row i's error spreads onto rows > i.
    spread = np.linalg.cholesky(np.linalg.inv(damped)).T
    for i in range(quantized_rows):
        row = weights[i]
        levels = np.clip(np.round(row / steps), -127, 127)
        at_pin = pinned == i
        levels[at_pin] = 127 * np.sign(row[at_pin] + (row[at_pin] == 0))
        levels[zero[i]] = 0
        rounded = levels * steps
        error = (row - rounded) / spread[i, i]
        weights[i] = rounded
        weights[i + 1 :] -= np.outer(spread[i, i + 1 :], error)
    return weights


def reconstruct_conv(kernel: np.ndarray, bias: np.ndarray | None, rows_q: np.ndarray,
                     target: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:  # fmt: skip
    """A conv's (kernel, bias) chosen to map the int8 input rows ``rows_q`` to the float pre-activations
    ``target``: least squares, then GPTQ rounding to the int8 grid with the bias left in float."""
    shape, flat = kernel.shape, kernel.reshape(-1, kernel.shape[-1]).astype(np.float64)
    use_bias = bias is not None
    gram, cross = _gram(rows_q, target, use_bias)
    given = np.vstack([flat, bias[None].astype(np.float64)]) if use_bias else flat
    # The float kernel (and bias) best on the int8 inputs, its ridge pulling towards the given weights: on inputs
    # without drift (the first layer's) it is the given layer.
    ridge = _damped(gram) - gram
    best = np.linalg.solve(gram + ridge, cross + ridge @ given)
    zero = np.vstack([flat == 0, np.zeros((int(use_bias), flat.shape[1]), bool)])
    best[zero] = 0.0
    best_kernel = best[: len(flat)]
    steps = kernel_steps(best_kernel)
    pinned = np.where(np.abs(best_kernel).max(axis=0) > 0, np.abs(best_kernel).argmax(axis=0), -1)
    chosen = gptq_round(best, gram, steps, len(flat), pinned, zero)
    new_kernel = (chosen[: len(flat)] / steps).round() * steps  # exact multiples, as the converter will find them
    return new_kernel.reshape(shape).astype(np.float32), chosen[len(flat)].astype(np.float32) if use_bias else None


def _rmse(rows: np.ndarray, kernel: np.ndarray, bias, target: np.ndarray) -> float:
    total = 0.0
    for start in range(0, len(rows), ROWS_PER_CHUNK):
        out = rows[start : start + ROWS_PER_CHUNK] @ kernel.reshape(-1, kernel.shape[-1])
        total += float(np.sum((out + (0 if bias is None else bias) - target[start : start + ROWS_PER_CHUNK]) ** 2))
    return (total / target.size) ** 0.5


def reconstructed(model, patches: np.ndarray, ranges: ActivationRanges | None = None,
                  log=lambda msg: None) -> tuple[keras.Model, Reconstruction]:  # fmt: skip
    """A copy of ``model`` whose Conv2D weights are chosen, layer by layer on ``patches``, to reproduce the float
    model through int8 inference (see the module); ``ranges``: the activation ranges the simulation rounds to
    (default: MSE-optimal per tensor on ``patches``, as the PTQ conversion chooses them)."""
    if ranges is None:
        ranges = activation_ranges(model, patches, per_channel=False)
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    found, copies = single_call_layers(model), single_call_layers(copy)
    # Each value is dropped once its last reader has run: every tensor of the network over all patches at once
    # would not fit in memory.
    readers = dict(graph_use(model).readers)
    source = tf.constant(patches.astype(np.float32))
    floats, int8s = {id(model.inputs[0]): source}, {id(model.inputs[0]): source}  # keyed by the model's tensors
    errors = {}
    convs = [layer for layer in found if _reconstructable(layer)]
    for layer, twin in zip(found, copies):
        if _reconstructable(layer):
            x_f, x_q = floats[id(layer.input)], int8s[id(layer.input)]
            kernel, bias = layer.kernel.numpy(), layer.bias.numpy() if layer.use_bias else None
            rows_q = np.asarray(im2col(layer, x_q))
            pre_activation = np.asarray(layer.convolution_op(x_f, layer.kernel)).reshape(-1, kernel.shape[-1])
            target = pre_activation.astype(np.float64) + (0 if bias is None else bias)
            new_kernel, new_bias = reconstruct_conv(kernel, bias, rows_q, target)
            errors[layer.name] = (_rmse(rows_q, nearest_int8(kernel), bias, target),
                                  _rmse(rows_q, new_kernel, new_bias, target))  # fmt: skip
            twin.set_weights([new_kernel] + ([] if new_bias is None else [new_bias]))
            log(f"reconstructed {layer.name} ({len(errors)}/{len(convs)}): output RMSE {errors[layer.name][0]:.4g} "
                f"rounded to nearest, {errors[layer.name][1]:.4g} reconstructed")  # fmt: skip
        floats[id(layer.output)] = layer_call(layer, floats)
        int8s[id(layer.output)] = tf.constant(rounded_output(twin, np.asarray(layer_call(layer, int8s, twin)), ranges))
        for tensor in tf.nest.flatten(layer._inbound_nodes[0].keras_inputs):
            readers[id(tensor)] -= 1
            if not readers[id(tensor)]:
                del floats[id(tensor)], int8s[id(tensor)]
    return copy, Reconstruction(len(convs), errors)
