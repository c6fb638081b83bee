"""Channel equalization: exact in float on every model of the zoo, and it wins back int8 accuracy."""
from __future__ import annotations

import numpy as np
import pytest

from tfsr.keras import keras, layers
from tfsr.models.common import conv
from tfsr.quantization.equalize import channel_classes, channel_ranges, equalize
from tfsr.registry import build_model, list_models
from tfsr.tflite import ConvertOptions, TFLitePredictor, convert
from test_tflite import psnr, smooth_image, tiny_sr


@pytest.fixture(scope="module")
def patches():
    rng = np.random.default_rng(3)
    return np.stack([smooth_image(rng, 20, 20) for _ in range(4)]).astype(np.float32)


@pytest.mark.parametrize("name", list_models())
def test_equalized_model_computes_the_same_function(name, patches):
    model = build_model(name, 2)
    equalized, plan = equalize(model, patches, strength=1.0)
    assert plan.classes > 0 and plan.gains, f"{name}: nothing to equalize"
    expected = model(patches).numpy()
    assert np.abs(equalized(patches).numpy() - expected).max() <= 2e-6 * np.abs(expected).max() + 1e-4
    # No tensor's largest magnitude grows and the weights really changed.
    # (The copy's node indices of shared layers differ from the model's: compare the tensors in graph order.)
    before, after = channel_ranges(model, patches), channel_ranges(equalized, patches)
    assert len(before) == len(after)
    for key, old, new in zip(before, before.values(), after.values()):
        assert new.max() <= old.max() * (1 + 1e-4) + 1e-4, key
    changed = [n for n in plan.gains if not np.array_equal(model.get_layer(n).get_weights()[0],
                                                           equalized.get_layer(n).get_weights()[0])]  # fmt: skip
    assert changed


def skewed_model() -> keras.Model:
    """tiny_sr with head channel 0 made 200x larger and body's input from it 200x smaller: same function."""
    model = tiny_sr(2, width=8)
    kernel, bias = model.get_layer("head").get_weights()
    kernel[..., 0] *= 200.0
    bias[0] *= 200.0
    model.get_layer("head").set_weights([kernel, bias])
    kernel, bias = model.get_layer("body").get_weights()
    kernel[:, :, 0, :] /= 200.0
    model.get_layer("body").set_weights([kernel, bias])
    return model


def test_gains_equalize_a_skewed_channel(patches):
    model = skewed_model()
    equalized, plan = equalize(model, patches, strength=1.0, max_gain=1000.0)
    ranges = channel_ranges(equalized, patches)[("head", 0, 0)]
    assert ranges.min() == pytest.approx(ranges.max(), rel=1e-4)  # strength 1: every channel up to the largest
    assert plan.gains["body"][0].max() > 50 and plan.gains["body"][0].min() == pytest.approx(1.0)
    up_in, up_out = plan.gains["up"]  # concat([lr, body]) -> up -> pixel shuffle
    assert np.array_equal(up_out, np.ones(12)) and np.array_equal(up_in[:3], np.ones(3))  # the input, the output
    assert up_in[3:].min() >= 1 and up_in[3:].max() > 1  # body's channels, free
    _, capped = equalize(model, patches, strength=1.0, max_gain=4.0)
    assert capped.largest_gain == 4.0 and max(g.max() for pair in capped.gains.values() for g in pair) == 4.0


def test_equalization_wins_back_int8_accuracy(patches):
    model = skewed_model()
    image = smooth_image(np.random.default_rng(9), 24, 24)
    reference = model(image[None].astype(np.float32)).numpy()[0]

    def int8_psnr(m) -> float:
        data = convert(m, ConvertOptions("int8", "uint8"), list(patches))
        return psnr(TFLitePredictor(data, "int8", 2)(image), np.clip(np.round(reference), 0, 255))

    skewed = int8_psnr(model)
    equalized = int8_psnr(equalize(model, patches, strength=1.0, max_gain=1000.0)[0])
    assert equalized > skewed + 3.0, (skewed, equalized)


def test_non_homogeneous_ops_keep_gain_one():
    x = keras.Input((None, None, 3))
    a = conv(x, 4, 3, name="a")
    t = layers.Activation("tanh", name="tanh")(a)
    g = conv(t, 4, 1, name="gate", activation="sigmoid")
    gated = layers.Multiply(name="mul")([a, g])
    free = layers.LeakyReLU(0.1, name="leaky")(conv(x, 4, 3, name="b"))
    y = conv(layers.Concatenate(name="cat")([gated, free]), 3, 1, name="out")
    classes, convs = channel_classes(keras.Model(x, y))
    for fixed in (a, t, g, gated, y):  # tanh is not homogeneous and cannot fold a gain; sigmoid; the output
        assert not classes.roots(fixed).any(), fixed.name
    assert classes.roots(free).all()
    assert set(convs) == {"b", "out"}


def test_bad_strength_is_refused(patches):
    with pytest.raises(ValueError, match="strength"):
        equalize(tiny_sr(2), patches, strength=1.5)
