"""upscale: files and folders, image modes kept, EXIF, tiling, skips and no overwriting."""
import errno

import numpy as np
import pytest
from PIL import Image

from tests.test_cli_foundation import invoke
from tests.test_evaluate_cli import x2_model  # noqa: F401  (the fixture)
from tfsr.imresize import imresize


def test_fixed_shape_tflite_upscales_tile_by_tile_like_its_keras_model(tmp_path, rng, x2_model):
    from tfsr.predictors import load_keras_model
    from tfsr.tflite import ConvertOptions, convert

    fixed = convert(load_keras_model(x2_model), ConvertOptions(mode="float32", io="float32", input_hw=(24, 24)))
    (tmp_path / "fixed24.tflite").write_bytes(fixed)
    Image.fromarray(imresize(rng.integers(0, 256, (10, 13, 3), dtype=np.uint8), 4)).save(tmp_path / "a.png")  # 52x40
    for model in (x2_model, tmp_path / "fixed24.tflite"):
        result = invoke("upscale", model, tmp_path / "a.png", "--out", tmp_path / model.suffix[1:])
        assert result.exit_code == 0, result.output
    keras_out, tflite_out = (np.asarray(Image.open(tmp_path / d / "a_x2.png"), dtype=int) for d in ("keras", "tflite"))
    assert tflite_out.shape == (80, 104, 3) and np.abs(keras_out - tflite_out).max() <= 2


def test_upscale_keeps_modes_and_upscales_alpha_with_bicubic(tmp_path, rng):
    src = tmp_path / "in"
    src.mkdir()
    rgba = rng.integers(0, 256, (12, 10, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(src / "rgba.png")
    Image.fromarray(rgba[..., 0]).save(src / "grey.png")
    Image.fromarray(rgba[..., :3]).convert("P").save(src / "palette.gif")
    Image.fromarray((rgba[..., 0].astype(np.uint16) * 257)).save(src / "deep.png")  # 16-bit grey
    result = invoke("upscale", "bicubic", src, "--scale", 3, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "4 written, 0 skipped (output exists; --overwrite replaces), 0 failed"
    out = tmp_path / "out"
    up = Image.open(out / "rgba_x3.png")
    assert up.mode == "RGBA" and up.size == (30, 36)
    np.testing.assert_array_equal(np.asarray(up)[..., 3], imresize(rgba[..., 3], 3))
    np.testing.assert_array_equal(np.asarray(up)[..., :3], imresize(rgba[..., :3], 3))
    grey = Image.open(out / "grey_x3.png")
    assert grey.mode == "L"
    np.testing.assert_array_equal(np.asarray(grey), imresize(rgba[..., 0], 3))
    np.testing.assert_array_equal(np.asarray(Image.open(out / "deep_x3.png")), imresize(rgba[..., 0], 3))
    assert Image.open(out / "palette_x3.png").mode == "RGB"
    assert "[########################] 4/4" in result.stderr


def test_upscale_respects_exif_orientation(tmp_path, rng):
    img = Image.fromarray(rng.integers(0, 256, (8, 20, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "photo.jpg", exif=exif.tobytes())
    result = invoke("upscale", "bicubic", tmp_path / "photo.jpg", "--scale", 2, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "out" / "photo_x2.png").size == (16, 40)  # displayed 8 wide, 20 tall


def test_upscale_model_tiled_matches_untiled_and_never_overwrites(tmp_path, rng, x2_model):
    lr = imresize(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8), 4)  # 40x48
    Image.fromarray(lr).save(tmp_path / "my photo é.png")
    whole = invoke("upscale", x2_model, tmp_path / "my photo é.png", "--out", tmp_path / "whole")
    assert whole.exit_code == 0, whole.output
    tiled = invoke("upscale", x2_model, tmp_path / "my photo é.png", "--out", tmp_path / "tiled", "--tile", 24,
                   "--overlap", 8)  # fmt: skip
    assert tiled.exit_code == 0, tiled.output
    a, b = (np.asarray(Image.open(tmp_path / d / "my photo é_x2.png"), dtype=int) for d in ("whole", "tiled"))
    assert a.shape == (80, 96, 3) and np.abs(a - b).max() <= 1
    target = tmp_path / "whole" / "my photo é_x2.png"
    target.write_bytes(b"previous")
    again = invoke("upscale", x2_model, tmp_path / "my photo é.png", "--out", tmp_path / "whole")
    assert again.exit_code == 0 and "0 written, 1 skipped" in again.stdout
    assert target.read_bytes() == b"previous"
    forced = invoke("upscale", x2_model, tmp_path / "my photo é.png", "--out", tmp_path / "whole", "--overwrite")
    assert forced.exit_code == 0 and "1 written" in forced.stdout
    np.testing.assert_array_equal(np.asarray(Image.open(target)), a)


@pytest.mark.fault
def test_disk_full_while_saving_is_one_line_and_keeps_the_previous_output(tmp_path, rng, monkeypatch):
    Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a_x2.png").write_bytes(b"previous result")

    def full_disk(self, fp, *args, **kwargs):
        with open(fp, "wb") as f:
            f.write(b"\x89PNG half")  # a partial temporary file, as a full disk leaves it
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    result = invoke("upscale", "bicubic", tmp_path / "a.png", "--scale", 2, "--out", out, "--overwrite")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: cannot write {out / 'a_x2.png'}: No space left on device; any previous a_x2.png is unchanged"
    )
    assert (out / "a_x2.png").read_bytes() == b"previous result"
    assert sorted(p.name for p in out.iterdir()) == ["a_x2.png"]  # the temporary file is gone


def test_a_grey_image_upscales_to_the_grey_its_rgb_output_stands_for(tmp_path):
    from pipelines.upscale import upscale_image
    from tfsr.metrics import grey_from_rgb, quantize_image

    class Tinted:  # an x2 model whose output is not grey: the grey saved is the value its RGB stands for
        scale = 2

        def __call__(self, lr):
            return np.repeat(np.repeat(lr.astype(np.float64), 2, axis=0), 2, axis=1) + np.array([20.0, -10.0, 40.0])

    grey = (np.arange(48).reshape(6, 8) * 5).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    sr, alpha, is_grey = upscale_image(Tinted(), tmp_path / "grey.png")
    rgb_output = quantize_image(Tinted()(np.repeat(grey[..., None], 3, axis=2)))  # as saved: clipped, rounded
    expected = quantize_image(grey_from_rgb(rgb_output))
    assert is_grey and alpha is None and sr.shape == (12, 16, 3)
    for channel in range(3):
        np.testing.assert_array_equal(sr[..., channel], expected)  # about +4.7 (unclipped), not red's +20


def test_each_input_is_upscaled_once_and_one_output_name_is_never_shared(tmp_path, rng):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.fromarray(rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)).save(tmp_path / folder / "x.png")
    repeated = invoke("upscale", "bicubic", tmp_path / "a" / "x.png", tmp_path / "a", "--scale", 2, "--out", tmp_path / "o1")
    assert repeated.exit_code == 0 and repeated.stdout.strip().startswith("1 written, 0 skipped")  # a file and its folder
    clash = invoke("upscale", "bicubic", tmp_path / "a" / "x.png", tmp_path / "b" / "x.png", "--scale", 2, "--out",
                   tmp_path / "o2")  # fmt: skip
    assert clash.exit_code == 1 and clash.stdout.strip().endswith("1 written, 0 skipped (output exists; --overwrite "
                                                                  "replaces), 1 failed")  # fmt: skip
    assert f"skipped {tmp_path / 'b' / 'x.png'}: its output x_x2.png is also {tmp_path / 'a' / 'x.png'}'s" in clash.stderr
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o2" / "x_x2.png")),
                                  imresize(np.asarray(Image.open(tmp_path / "a" / "x.png")), 2))  # the first one's


def test_large_images_are_tiled_unless_told_otherwise(tmp_path, rng, monkeypatch):
    import pipelines.upscale
    from tfsr.predictors import BicubicPredictor

    class Recording(BicubicPredictor):
        shapes: list = []

        def __call__(self, lr):
            self.shapes.append(lr.shape[:2])
            return super().__call__(lr)

    monkeypatch.setattr(pipelines.upscale, "AUTO_TILE", 8)
    monkeypatch.setattr(pipelines.upscale, "make_predictor", lambda spec, scale: Recording(2))
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    assert invoke("upscale", "bicubic", tmp_path / "big.png", "--overlap", 2, "--out", tmp_path / "o").exit_code == 0
    assert Recording.shapes == [(12, 12)] * 9  # 3 x 3 tiles of 8 (the last 4) with 2 pixels of context
    Recording.shapes.clear()
    assert invoke("upscale", "bicubic", tmp_path / "big.png", "--tile", 32, "--out", tmp_path / "o2").exit_code == 0
    assert Recording.shapes == [(20, 20)]
