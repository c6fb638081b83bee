"""Parameters and multiply-adds, in the SR papers' convention (multiply-adds for a 1280x720 output)."""
from __future__ import annotations

from tfsr.keras import keras, layers

PAPER_OUTPUT_HW = (720, 1280)


def lr_size_for_output(scale: int, output_hw: tuple[int, int] = PAPER_OUTPUT_HW) -> tuple[int, int]:
    return output_hw[0] // scale, output_hw[1] // scale


def _layer_macs(layer, in_shape, out_shape) -> int:
    if isinstance(layer, layers.DepthwiseConv2D):
        kh, kw = layer.kernel_size
        return out_shape[1] * out_shape[2] * out_shape[3] * kh * kw
    if isinstance(layer, layers.Conv2DTranspose):
        kh, kw = layer.kernel_size
        return in_shape[1] * in_shape[2] * in_shape[3] * kh * kw * layer.filters
    if isinstance(layer, layers.Conv2D):
        kh, kw = layer.kernel_size
        return out_shape[1] * out_shape[2] * out_shape[3] * kh * kw * in_shape[3] // layer.groups
    if isinstance(layer, layers.Dense):
        return int(in_shape[-1]) * layer.units
    return 0


def count_macs(model: keras.Model, lr_hw: tuple[int, int]) -> int:
    """Multiply-adds of convolutions and dense layers for one LR input of ``lr_hw``; shared layers count per call."""
    fixed = keras.models.clone_model(model, input_tensors=keras.Input((*lr_hw, model.input_shape[-1])))
    total = 0
    for layer in fixed.layers:
        for node in layer._inbound_nodes:
            in_shape = node.input_shapes
            out_shape = node.output_shapes
            if isinstance(in_shape, list):
                in_shape = in_shape[0]
            if isinstance(out_shape, list):
                out_shape = out_shape[0]
            if in_shape is None or out_shape is None:
                continue
            total += _layer_macs(layer, in_shape, out_shape)
    return int(total)
