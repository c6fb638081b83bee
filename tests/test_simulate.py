"""The Keras int8 simulation: float is the model, per-tensor agrees with the real int8 TFLite model, per-channel
activation scales recover what one scale per tensor loses on a skewed model."""
from __future__ import annotations

import numpy as np
import pytest

from tfsr.quantization.ranges import convert_with_ranges
from tfsr.quantization.simulate import activation_ranges, fake_quant, simulated
from tfsr.registry import build_model
from tfsr.tflite import ConvertOptions, TFLitePredictor
from test_equalize import skewed_model
from test_tflite import psnr, smooth_image


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(4)
    patches = np.stack([smooth_image(rng, 20, 20) for _ in range(8)]).astype(np.float32)
    return patches, smooth_image(np.random.default_rng(9), 24, 24)


def test_fake_quant_rounds_to_the_int8_grid_of_its_range():
    x = np.array([-3.0, -0.01, 0.0, 0.7, 2.0, 9.0], np.float32)
    step = 4.0 / 255  # zero point round(1 / step) = 64: the grid runs from -64 to 191 steps, zero exact
    np.testing.assert_allclose(fake_quant(x, -1.0, 3.0), np.array([-64, -1, 0, 45, 128, 191]) * step, rtol=1e-6)
    per_channel = fake_quant(np.array([[0.5, 0.5]], np.float32), np.array([0.0, 0.0]), np.array([1.0, 255.0]))
    np.testing.assert_allclose(per_channel[0], [128 / 255, 0.0], rtol=1e-6)  # steps 1/255 and 1: one scale each


def test_simulation_agrees_with_tflite_and_per_channel_recovers_a_skewed_channel(data):
    patches, image = data
    model = skewed_model()
    ranges = activation_ranges(model, patches)
    reference = np.clip(np.round(model(image[None].astype(np.float32)).numpy()[0]), 0, 255)
    scores = {s: psnr(np.clip(np.round(simulated(model, ranges, s)(image)), 0, 255), reference)
              for s in ("float", "weights", "tensor", "channel")}  # fmt: skip
    tflite, _ = convert_with_ranges(model, ConvertOptions("int8", "uint8"), list(patches), "mse")
    real = psnr(TFLitePredictor(tflite, "int8", 2)(image), reference)
    assert scores["float"] == np.inf
    assert abs(scores["tensor"] - real) < 0.3, (scores, real)  # measured: 31.13 against 31.16 dB
    assert scores["channel"] > scores["tensor"] + 3.0 and scores["weights"] > scores["channel"], (scores, real)


def test_shared_layers_are_refused(data):
    with pytest.raises(ValueError, match="layers called once"):
        activation_ranges(build_model("litesrnet", 2), data[0])
