import numpy as np
import pytest

from tfsr.metrics import grey_from_rgb, psnr, quantize_image, rgb_to_y, score_image, ssim


def test_rgb_to_y_matches_matlab_formula():
    rgb = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0]]], dtype=np.uint8)
    assert rgb_to_y(rgb)[0].tolist() == pytest.approx([235.0, 16.0, 16 + 65.481])
    assert rgb_to_y(rgb, rounded=True)[0].tolist() == [235.0, 16.0, 81.0]


def test_grey_from_rgb_inverts_replication():
    v = np.arange(256, dtype=np.uint8)
    rgb = np.repeat(v[None, :, None], 3, axis=2)
    assert np.allclose(grey_from_rgb(rgb)[0], v)


def test_psnr_of_known_error():
    a = np.zeros((10, 10))
    b = np.full((10, 10), 5.0)
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 / 25))
    assert psnr(a, a) == float("inf")


def test_ssim_identity_and_agreement_with_tensorflow(rng):
    from tfsr.keras import tf

    a = rng.integers(0, 256, (40, 36)).astype(np.float64)
    b = np.clip(a + rng.normal(0, 60, a.shape), 0, 255)
    assert ssim(a, a) == pytest.approx(1.0)
    ours = ssim(a, b)
    theirs = float(tf.image.ssim(a[..., None].astype(np.float32), b[..., None].astype(np.float32), 255.0,
                                 filter_size=11, filter_sigma=1.5, k1=0.01, k2=0.03))  # fmt: skip
    assert 0.2 < ours < 0.95
    assert ours == pytest.approx(theirs, abs=1e-6)  # TF computes in float32: they agree to ~1e-7


def test_quantize_clips_and_rounds_halves_up():
    assert quantize_image(np.array([-3.0, 0.5, 1.49, 254.5, 300.0])).tolist() == [0, 1, 1, 255, 255]


def test_score_image_shaves_border():
    hr = np.full((20, 20, 3), 100, dtype=np.uint8)
    sr = hr.astype(np.float64).copy()
    sr[:4] = 0  # damage only the border rows that scale 4 shaves
    assert score_image(sr, hr, 4)[0] == float("inf")
    assert score_image(sr, hr, 3)[0] < 30


def test_score_image_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="differs"):
        score_image(np.zeros((8, 8, 3)), np.zeros((8, 9, 3), dtype=np.uint8), 2)
