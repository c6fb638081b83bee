"""MSE-optimal activation ranges for PTQ: the range search, and the int8 models it makes."""
from __future__ import annotations

import numpy as np
import pytest

from tfsr.quantization.ranges import BINS, calibrated_model, mse_range, quantize_calibrated, with_ranges
from tfsr.tflite import ConvertOptions, TFLitePredictor, audit_ops, convert
from test_tflite import psnr, smooth_image, tiny_sr


def test_mse_range_clips_a_rare_outlier_and_keeps_a_uniform_range():
    # 1e8 values uniform in [0, 10] and one at 1000: clipping it (980**2) costs far less than a 100x wider step
    # for all the others (1e8 * (1000 / 255)**2 / 12).
    hist = np.zeros(BINS, np.int64)
    hist[: BINS // 100] = 100_000_000 // (BINS // 100)
    hist[-1] = 1
    lo, hi = mse_range(hist, 0.0, 1000.0, clip_weight=1.0)
    assert lo == 0.0 and 10.0 <= hi <= 60.0
    # Clipping weighted 16x (the default, CLIP_WEIGHT): the outlier still goes, the range clips it less.
    lo, hi_weighted = mse_range(hist, 0.0, 1000.0)
    assert lo == 0.0 and hi < hi_weighted <= 200.0
    uniform = np.full(BINS, 1000, np.int64)  # nothing to gain from clipping a uniform distribution
    assert mse_range(uniform, -5.0, 5.0) == pytest.approx((-5.0, 5.0))


def test_mse_range_is_the_range_of_least_measured_int8_error():
    # The search models int8 error (step**2 / 12 inside, squared distance outside); with clipping unweighted it
    # must pick the candidate whose int8 rounding of the samples really errs least (heavy tails: an inner optimum).
    from tfsr.quantization.ranges import FRACTIONS
    from tfsr.quantization.simulate import fake_quant

    samples = np.random.default_rng(0).laplace(0.0, 1.0, 20_000)
    lo, hi = samples.min(), samples.max()
    chosen = mse_range(np.histogram(samples, BINS, (lo, hi))[0], lo, hi, clip_weight=1.0)

    def measured(bounds):
        return np.mean((fake_quant(samples, *bounds) - samples) ** 2)

    best = min(measured((f * lo, g * hi)) for f in FRACTIONS for g in FRACTIONS)
    assert lo < chosen[0] < 0 < chosen[1] < hi
    assert measured(chosen) <= 1.02 * best


@pytest.mark.parametrize("method", ["mse", "mean-batch"])
def test_minmax_path_equals_the_stock_converter_and_ranges_shrink(method):
    rng = np.random.default_rng(1)
    model = tiny_sr(2)
    patches = [smooth_image(rng, 16, 16).astype(np.float32) for _ in range(8)]
    options = ConvertOptions("int8", "uint8")
    calibrated = calibrated_model(model, options, patches)
    image = smooth_image(rng, 24, 24)
    stock = TFLitePredictor(convert(model, options, patches), "stock", 2)(image)
    # Calibrate-only + TFLite's quantizer is exactly what convert() does: the same int8 model.
    np.testing.assert_array_equal(TFLitePredictor(quantize_calibrated(calibrated, options), "same", 2)(image), stock)
    ranged, changes = with_ranges(calibrated, patches, method)
    assert changes and all(new_lo >= lo * (1 + 1e-6) and new_hi <= hi * (1 + 1e-6) for lo, hi, new_lo, new_hi in changes.values())
    data = quantize_calibrated(ranged, options)
    assert audit_ops(data).problems == []
    reference = np.clip(np.round(model(image[None].astype(np.float32)).numpy()[0]), 0, 255)
    assert psnr(TFLitePredictor(data, method, 2)(image), reference) > 45.0


def test_unknown_range_method_is_refused():
    with pytest.raises(ValueError, match="range method must be one of"):
        with_ranges(b"", [], "median")


def test_float_nodes_stay_float_and_the_rest_int8():
    from tensorflow.lite.tools import flatbuffer_utils

    rng = np.random.default_rng(2)
    patches = [smooth_image(rng, 16, 16).astype(np.float32) for _ in range(4)]
    options = ConvertOptions("int8", "uint8")
    calibrated = calibrated_model(tiny_sr(2), options, patches)
    assert audit_ops(quantize_calibrated(calibrated, options)).problems == []
    names = [t.name.decode() for t in flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated)).subgraphs[0].tensors]
    head_output = next(n for n in names if "/head/Relu" in n.split(";")[0] and n.endswith("ReadVariableOp1"))
    problems = audit_ops(quantize_calibrated(calibrated, options, [head_output])).problems
    assert any("CONV_2D" in p and "FLOAT32" in p for p in problems) and any("DEQUANTIZE" in p for p in problems)
