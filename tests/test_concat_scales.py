"""Concatenation inputs on their own int8 scales (PTQ): what the converter does, and what the rewrite fixes."""
from __future__ import annotations

import numpy as np
import pytest

from tfsr.keras import keras, layers
from tfsr.layers import PixelShuffle
from tfsr.models.common import conv
from tfsr.quantization.concat_scales import int8_params, own_concat_scales
from tfsr.quantization.ranges import calibrated_model, quantize_calibrated
from tfsr.registry import build_model, list_models
from tfsr.tflite import ConvertOptions, TFLitePredictor, audit_ops
from test_tflite import psnr, smooth_image

OPTIONS = ConvertOptions("int8", "uint8")


def skip_concat_sr(scale: int = 2) -> keras.Model:
    """s-LWSR in miniature: a narrow head feeds a residual block *and* a concat with a 40x wider tensor."""
    keras.utils.set_random_seed(3)
    lr = keras.Input((None, None, 3), name="lr")
    head = conv(lr, 8, 3, name="head")
    res = layers.Add(name="res")([head, conv(head, 8, 3, name="body", activation="relu")])
    wide = conv(lr, 8, 3, name="wide")
    mix = conv(layers.Concatenate(name="cat")([head, wide]), 8, 1, name="mix")
    up = conv(layers.Add(name="join")([res, mix]), 3 * scale * scale, 3, name="up")
    model = keras.Model(lr, layers.ReLU(max_value=255.0, name="clip")(PixelShuffle(scale, name="shuffle")(up)), name="skip_concat_sr")
    for name, gain in (("head", 0.1), ("wide", 4.0)):
        kernel, bias = model.get_layer(name).get_weights()
        model.get_layer(name).set_weights([kernel * gain, bias])
    kernel, bias = model.get_layer("body").get_weights()  # a bias for the rewrite to requantize
    model.get_layer("body").set_weights([kernel, np.linspace(-3.0, 3.0, bias.size, dtype=np.float32)])
    kernel, bias = model.get_layer("mix").get_weights()
    kernel[:, :, 8:, :] *= 0.02  # the wide half matters little downstream: the head's precision does
    model.get_layer("mix").set_weights([kernel, bias])
    kernel, bias = model.get_layer("up").get_weights()
    model.get_layer("up").set_weights([kernel * 4.0, bias + 128.0])
    return model


def tensor_scale(data: bytes, suffix: str) -> float:
    from tensorflow.lite.tools import flatbuffer_utils

    graph = flatbuffer_utils.convert_bytearray_to_object(bytearray(data)).subgraphs[0]
    names = [t.name.decode() for t in graph.tensors]
    matches = [t for t, n in zip(graph.tensors, names) if n.split(";")[0].endswith(suffix)
               and t.type == 9 and not n.endswith("/concat_scale")]  # int8 activations only: not the bias
    assert len(matches) == 1, names
    return float(matches[0].quantization.scale[0])


@pytest.fixture(scope="module")
def patches():
    rng = np.random.default_rng(0)
    return [smooth_image(rng, 16, 16).astype(np.float32) for _ in range(12)]


def test_int8_params_match_tflites_asymmetric_int8():
    assert int8_params(0.0, 255.0) == (1.0, -128)
    scale, zero_point = int8_params(-10.0, 30.0)
    assert scale == pytest.approx(40.0 / 255) and zero_point == round(-128 + 10.0 / scale)
    assert int8_params(2.0, 5.0)[1] == -128  # widened to hold 0


def test_own_scales_for_a_concat_input_that_feeds_a_residual_block(patches):
    model = skip_concat_sr()
    calibrated = calibrated_model(model, OPTIONS, patches)
    shared = quantize_calibrated(calibrated, OPTIONS)
    head_on_concat_scale = tensor_scale(shared, "head/BiasAdd")  # the converter's choice
    assert head_on_concat_scale == pytest.approx(tensor_scale(shared, "cat/concat"))

    own, requantized = own_concat_scales(shared, calibrated)
    assert [r.tensor.split(";")[0] for r in requantized] == ["skip_concat_sr/head/BiasAdd"]
    assert requantized[0].concat_scale == pytest.approx(head_on_concat_scale)
    assert tensor_scale(own, "head/BiasAdd") == pytest.approx(requantized[0].own_scale)
    assert requantized[0].own_scale * 10 < head_on_concat_scale  # the head's own range is >10x narrower
    audit = audit_ops(own)
    assert audit.counts()["QUANTIZE"] == 3  # uint8 input -> int8, int8 -> uint8 output, and the requantization
    [problem] = audit.problems
    assert problem.startswith("QUANTIZE inside the graph") and problem.endswith("['INT8'] -> ['INT8'])")

    image = smooth_image(np.random.default_rng(5), 24, 24)
    reference = np.clip(np.round(model(image[None].astype(np.float32)).numpy()[0]), 0, 255)
    shared_psnr = psnr(TFLitePredictor(shared, "shared", 2)(image), reference)
    own_psnr = psnr(TFLitePredictor(own, "own", 2)(image), reference)
    # The residual block reads the head at a 10x finer step, and the conv biases follow the new input scale.
    assert own_psnr > shared_psnr + 3.0, (shared_psnr, own_psnr)
    assert own_psnr > 40.0


def test_nothing_to_requantize_leaves_the_model_alone(patches):
    from test_tflite import tiny_sr

    model = tiny_sr(2)  # its concat reads the graph input and a tensor nothing else reads
    calibrated = calibrated_model(model, OPTIONS, patches)
    shared = quantize_calibrated(calibrated, OPTIONS)
    assert own_concat_scales(shared, calibrated) == (shared, [])


@pytest.mark.parametrize("name", list_models())
def test_every_model_converts_with_own_concat_scales(name, patches):
    model = build_model(name, 2, clip_output=True)
    calibrated = calibrated_model(model, OPTIONS, patches[:4])
    shared = quantize_calibrated(calibrated, OPTIONS)
    own, requantized = own_concat_scales(shared, calibrated)
    problems = audit_ops(own).problems
    # Every new op is an int8 -> int8 requantization; nothing falls back to float.
    assert sum("QUANTIZE inside the graph" in p and "['INT8'] -> ['INT8']" in p for p in problems) == (
        sum("QUANTIZE inside the graph" in p for p in audit_ops(shared).problems) + len(requantized))
    assert not [p for p in problems if "float op" in p or "DEQUANTIZE" in p]
    image = smooth_image(np.random.default_rng(2), 12, 12)
    out = TFLitePredictor(own, name, 2)(image)
    assert out.shape == (24, 24, 3)
    if not requantized:
        assert own == shared
