"""Layer-wise int8 weight reconstruction: the receptive-field rows reproduce the conv, GPTQ rounding beats rounding
to the nearest step where inputs correlate, and TFLite's int8 kernels are exactly the chosen integers."""
from __future__ import annotations

import numpy as np
import pytest

from tfsr.keras import keras, layers
from tfsr.quantization.ranges import convert_with_ranges
from tfsr.quantization.reconstruct import gptq_round, im2col, reconstructed
from tfsr.quantization.simulate import kernel_steps
from tfsr.registry import build_model, list_models
from tfsr.tflite import ConvertOptions
from test_tflite import smooth_image, tiny_sr


SHARED_LAYERS = {"lfn", "litesrnet"}  # recurrent: one layer called at every step


@pytest.fixture(scope="module")
def patches():
    rng = np.random.default_rng(3)
    return np.stack([smooth_image(rng, 16, 16) for _ in range(8)]).astype(np.float32)


@pytest.mark.parametrize("kernel_size, strides, dilation, padding", [
    (3, 1, 1, "same"), (3, 2, 1, "valid"), (3, 2, 1, "same"), (3, 1, 2, "same"), (1, 1, 1, "valid")])  # fmt: skip
def test_receptive_field_rows_times_the_kernel_are_the_conv(patches, kernel_size, strides, dilation, padding):
    conv = layers.Conv2D(5, kernel_size, strides, padding, dilation_rate=dilation, bias_initializer="he_normal")
    out = conv(patches).numpy()
    kernel, bias = conv.get_weights()
    rows = im2col(conv, patches).numpy()
    np.testing.assert_allclose(rows @ kernel.reshape(-1, 5) + bias, out.reshape(-1, 5), rtol=1e-4, atol=1e-3)


def test_gptq_rounding_beats_nearest_on_correlated_inputs_and_keeps_the_grid():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(4000, 4))
    inputs = base @ rng.normal(size=(4, 12)) + 0.05 * rng.normal(size=(4000, 12))  # 12 inputs, rank ~4
    weights = rng.normal(size=(12, 6))
    weights[3, 2] = 0.0  # a pruned weight
    steps = kernel_steps(weights)
    pinned = np.abs(weights).argmax(axis=0)
    chosen = gptq_round(weights, inputs.T @ inputs, steps, 12, pinned, weights == 0)
    np.testing.assert_allclose(chosen / steps, np.round(chosen / steps), atol=1e-9)
    levels = np.round(chosen / steps)
    assert np.abs(levels).max() <= 127 and np.all(np.abs(levels).max(axis=0) == 127)  # each channel's step kept
    assert chosen[3, 2] == 0.0
    nearest = np.round(weights / steps) * steps
    error = {name: np.sqrt(np.mean((inputs @ (w - weights)) ** 2)) for name, w in (("gptq", chosen), ("nearest", nearest))}
    assert error["gptq"] < 0.7 * error["nearest"], error  # measured: half


def test_tflite_int8_kernels_are_the_chosen_integers_and_each_conv_gets_closer(patches):
    from ai_edge_litert.interpreter import Interpreter

    model = tiny_sr(2)
    rebuilt, summary = reconstructed(model, patches)
    assert summary.layers == 3 and set(summary.output_error) == {"head", "body", "up"}
    nearest, chosen = np.array(list(summary.output_error.values())).T
    assert np.all(chosen <= nearest * 1.001) and chosen.sum() < nearest.sum(), summary.output_error
    data, _ = convert_with_ranges(rebuilt, ConvertOptions("int8", "uint8"), list(patches), "mse")
    interpreter = Interpreter(model_content=data)
    kernels = [interpreter.get_tensor(d["index"]) for d in interpreter.get_tensor_details()
               if d["dtype"] == np.int8 and len(d["shape"]) == 4 and len(d["quantization_parameters"]["scales"]) > 1]
    assert len(kernels) == 3
    for name in ("head", "body", "up"):
        kernel = rebuilt.get_layer(name).get_weights()[0]
        levels = np.round(kernel / kernel_steps(kernel)).astype(np.int8).transpose(3, 0, 1, 2)  # TFLite: O, H, W, I
        assert any(k.shape == levels.shape and np.array_equal(k, levels) for k in kernels), name
    assert rebuilt.get_layer("head").get_weights()[0].shape == model.get_layer("head").get_weights()[0].shape


def test_other_convs_keep_their_weights(patches):
    inputs = keras.Input((None, None, 3))
    depthwise = layers.DepthwiseConv2D(3, padding="same", name="dw")(inputs)
    model = keras.Model(inputs, layers.Conv2D(3, 1, name="pw")(depthwise))
    rebuilt, summary = reconstructed(model, patches)
    assert list(summary.output_error) == ["pw"]
    for a, b in zip(model.get_layer("dw").get_weights(), rebuilt.get_layer("dw").get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", list_models())
def test_every_model_of_the_zoo_reconstructs_or_is_refused_for_its_shared_layers(name):
    model = build_model(name, 2)
    patch = smooth_image(np.random.default_rng(1), 24, 24)[None].astype(np.float32)  # E-RFDN's ESA pools 7x7 / 3
    if name in SHARED_LAYERS:
        with pytest.raises(ValueError, match="layers called once"):
            reconstructed(model, patch)
        return
    rebuilt, summary = reconstructed(model, patch)
    plain_convs = [layer.name for layer in model.layers if type(layer) is layers.Conv2D and layer.groups == 1]
    assert summary.layers == len(plain_convs) > 0 and list(summary.output_error) == plain_convs
    for conv in plain_convs:
        kernel = rebuilt.get_layer(conv).get_weights()[0]
        np.testing.assert_allclose(kernel / kernel_steps(kernel), np.round(kernel / kernel_steps(kernel)), atol=1e-3)
