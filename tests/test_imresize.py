import numpy as np
import pytest

from tests.conftest import DATA, needs_shared
from tfsr.images import read_image, list_images
from tfsr.imresize import imresize, modcrop


@needs_shared
@pytest.mark.parametrize("set_name", ["Set5", "Set14"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_downscale_reproduces_matlab_lr_files_bit_exactly(set_name, scale):
    for hr_path in list_images(DATA / set_name / "HR"):
        hr = read_image(hr_path).rgb
        lr_file = read_image(DATA / set_name / "LR_bicubic" / f"X{scale}" / f"{hr_path.stem}x{scale}.png").rgb
        ours = imresize(modcrop(hr, scale), 1 / scale)
        assert ours.dtype == np.uint8
        assert np.array_equal(ours, lr_file), f"{hr_path.name} x{scale}"


def test_halves_round_up_like_matlab():
    # A 2-pixel ramp averaged to x.5 values: MATLAB rounds them up, NumPy's round would go to even.
    img = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    assert imresize(img, 0.5).tolist() == [[2]]  # mean 1.5 -> 2


def test_upscale_shape_and_constant_image():
    img = np.full((5, 7, 3), 77, dtype=np.uint8)
    out = imresize(img, 3)
    assert out.shape == (15, 21, 3)
    assert np.all(out == 77)


def test_float_input_stays_unrounded_and_output_shape_argument():
    img = np.linspace(0, 1, 64, dtype=np.float64).reshape(8, 8)
    out = imresize(img, output_shape=(4, 6))
    assert out.dtype == np.float64 and out.shape == (4, 6)
    assert not np.allclose(out, np.round(out))


def test_modcrop_keeps_top_left():
    img = np.arange(7 * 10).reshape(7, 10)
    assert modcrop(img, 3).shape == (6, 9)
    assert np.array_equal(modcrop(img, 3), img[:6, :9])


def test_exactly_one_size_argument():
    with pytest.raises(ValueError, match="exactly one"):
        imresize(np.zeros((4, 4)), 2, output_shape=(8, 8))
