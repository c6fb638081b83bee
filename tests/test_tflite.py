"""TFLite export, op audit and the .tflite predictor, on a tiny SR model (conversions take seconds, not minutes)."""
from __future__ import annotations

import numpy as np
import pytest

from tfsr.keras import keras, layers
from tfsr.layers import PixelShuffle
from tfsr.models.common import conv
from tfsr.tflite import ConvertOptions, TFLitePredictor, audit_ops, convert
from tfsr.tiling import with_tiling


def tiny_sr(scale: int = 2, seed: int = 0, width: int = 8) -> keras.Model:
    """Nearest-neighbour upsampling plus a small random conv branch: outputs span 0..255 like a real SR model."""
    keras.utils.set_random_seed(seed)
    lr = keras.Input((None, None, 3), name="lr")
    feat = conv(lr, width, 3, name="head", activation="relu")
    feat = conv(feat, width, 3, name="body", activation="relu")
    up = conv(layers.Concatenate(name="cat")([lr, feat]), 3 * scale * scale, 1, name="up")
    model = keras.Model(lr, layers.ReLU(max_value=255.0, name="clip_output")(PixelShuffle(scale, name="shuffle")(up)))
    kernel, bias = model.get_layer("up").get_weights()
    kernel[:, :, :3, :] = 0.0
    for k in range(scale * scale):  # input channel c -> every sub-pixel of output channel c
        for c in range(3):
            kernel[0, 0, c, k * 3 + c] = 1.0
    kernel[:, :, 3:, :] *= 4.0
    model.get_layer("up").set_weights([kernel, bias * 0])
    return model


def smooth_image(rng, h: int, w: int) -> np.ndarray:
    from tfsr.imresize import imresize

    return imresize(rng.integers(0, 256, (max(1, h // 4), max(1, w // 4), 3), dtype=np.uint8), output_shape=(h, w))


def psnr(a, b) -> float:
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


@pytest.fixture(scope="module")
def model():
    return tiny_sr(2)


@pytest.fixture(scope="module")
def patches():
    rng = np.random.default_rng(1)
    return [smooth_image(rng, 16, 16).astype(np.float32) for _ in range(16)]


@pytest.fixture(scope="module")
def int8_bytes(model, patches):
    return convert(model, ConvertOptions("int8", "int8"), patches)


def test_ptq_int8_output_close_to_float(model, int8_bytes):
    image = smooth_image(np.random.default_rng(2), 30, 22)
    float_sr = np.asarray(model(image[None].astype(np.float32))[0])
    int8_sr = TFLitePredictor(int8_bytes, "int8")(image)
    assert int8_sr.shape == (60, 44, 3)
    assert psnr(int8_sr, float_sr) > 48.0  # measured 52.4 dB
    audit = audit_ops(int8_bytes)
    assert audit.input_types == ["INT8"] and audit.output_types == ["INT8"]
    assert audit.input_shape == [1, -1, -1, 3]
    assert audit.problems == []
    assert all(t == "INT8" for op in audit.ops for t in op.inputs + op.outputs)


@pytest.mark.parametrize("io, expected", [("uint8", "UINT8"), ("float32", "FLOAT32")])
def test_io_types_and_boundary_conversions(model, patches, io, expected):
    data = convert(model, ConvertOptions("int8", io), patches)
    audit = audit_ops(data)
    assert audit.input_types == [expected] and audit.output_types == [expected]
    assert audit.problems == []  # the boundary QUANTIZE / DEQUANTIZE are expected, not problems
    names = [op.name for op in audit.ops]
    assert names[0] == "QUANTIZE" and names[-1] in ("QUANTIZE", "DEQUANTIZE")
    image = smooth_image(np.random.default_rng(3), 12, 12)
    assert psnr(TFLitePredictor(data, io)(image), model(image[None].astype(np.float32))[0]) > 48.0  # measured 52.4


def test_float_exports_and_audit_flags_float_ops(model):
    image = smooth_image(np.random.default_rng(4), 10, 14)
    reference = np.asarray(model(image[None].astype(np.float32))[0])
    for mode, tolerance in (("float32", 1e-3), ("float16", 0.5)):
        data = convert(model, ConvertOptions(mode, "float32"))
        assert np.abs(TFLitePredictor(data, mode)(image) - reference).max() < tolerance
    audit = audit_ops(convert(model, ConvertOptions("float32", "float32")))
    assert any(p.startswith("float op CONV_2D") for p in audit.problems)
    assert audit_ops(convert(model, ConvertOptions("float32", "float32")), expect_integer=False).problems == []


def test_weights_have_a_scale_per_filter_unless_per_tensor_is_asked(model, patches, int8_bytes):
    from tfsr.tflite import _interpreter

    def kernel_scales(data: bytes) -> list[int]:  # (filters, kh, kw, inputs) int8 kernels: their scale counts
        details = _interpreter(data, 1).get_tensor_details()
        return [len(d["quantization_parameters"]["scales"]) for d in details
                if d["dtype"] == np.int8 and len(d["shape"]) == 4 and d["shape"][0] > 1]  # fmt: skip

    assert sorted(kernel_scales(int8_bytes)) == [8, 8, 12]  # head, body, up
    assert kernel_scales(convert(model, ConvertOptions("int8", "int8", per_channel=False), patches)) == [1, 1, 1]


def test_fixed_shape_tiling_equals_untiled(model, patches, int8_bytes):
    fixed = convert(model, ConvertOptions("int8", "int8", input_hw=(24, 24)), patches)
    tiled = with_tiling(TFLitePredictor(fixed, "fixed"), None)
    assert TFLitePredictor(fixed, "fixed").input_hw == (24, 24)
    dynamic = TFLitePredictor(int8_bytes, "dynamic")
    rng = np.random.default_rng(5)
    lr = smooth_image(rng, 50, 61)
    reference = np.asarray(model(lr[None].astype(np.float32))[0])
    a, b = tiled(lr), dynamic(lr)
    assert a.shape == b.shape == (100, 122, 3)
    assert abs(psnr(a, reference) - psnr(b, reference)) < 0.01
    assert np.abs(a - b).max() <= 1.0  # seams see the same context (without overlap: 86 levels off at seams)
    assert tiled(lr[:10, :13]).shape == (20, 26, 3)  # smaller than the window: edge-padded, cropped back


def test_audit_reports_edgetpu_problems(int8_bytes, model, patches):
    audit = audit_ops(int8_bytes, "edgetpu")
    assert any(p.startswith("DEPTH_TO_SPACE") for p in audit.problems)
    assert any("dynamic input shape" in p for p in audit.problems)
    assert audit_ops(int8_bytes, "nnapi").problems == []
    with pytest.raises(Exception, match="--target must be one of"):
        audit_ops(int8_bytes, "tpu")
    from tfsr.tflite import tf

    @tf.function(input_signature=[tf.TensorSpec([2, 16, 16, 3], tf.float32)])
    def batch_of_two(lr):
        return model(lr)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([batch_of_two.get_concrete_function()], model)
    problems = audit_ops(converter.convert(), "edgetpu", expect_integer=False).problems
    assert "batch 2: the Edge TPU needs batch 1" in problems and not any("dynamic" in p for p in problems)


def test_evaluate_accepts_tflite(tmp_path, tiny_set, patches):
    from pipelines.evaluate import EvaluateConfig, run

    model = tiny_sr(4)
    path = tmp_path / "tiny_int8.tflite"
    path.write_bytes(convert(model, ConvertOptions("int8", "uint8"), patches))
    keras_path = tmp_path / "tiny_x4.keras"
    model.save(keras_path)
    result = run(EvaluateConfig([str(path), str(keras_path)], [str(tiny_set)]), log=lambda m: None)
    int8, float_ = result.scores["tiny_int8"]["Tiny"], result.scores["tiny_x4"]["Tiny"]
    assert result.config.scale == 4
    assert 20 < float_.psnr_y and abs(int8.psnr_y - float_.psnr_y) < 0.3


def test_bad_tflite_files_and_options(tmp_path):
    from tfsr.errors import TfsrError
    from tfsr.predictors import make_predictor

    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"not a flatbuffer")
    with pytest.raises(TfsrError, match="is not a TFLite flatbuffer"):
        make_predictor(str(bad), None)
    with pytest.raises(TfsrError, match="does not exist"):
        make_predictor(str(tmp_path / "missing.tflite"), None)
    with pytest.raises(TfsrError, match="--io must be one of"):
        ConvertOptions("int8", "int4")
    with pytest.raises(TfsrError, match="--input-size must be positive"):
        ConvertOptions("int8", "int8", input_hw=(0, 0))
