"""Bad inputs on purpose: each gives a clear one-line error or a warned skip naming the file, never a traceback.

Counted by the plugin in conftest.py (markers ``bad_input`` and ``fault``).
"""
import errno
import io
import struct
import time
import zipfile
import zlib

import click
import numpy as np
import pytest
from PIL import Image

import tfsr
from cli import cli
from tests.test_cli_foundation import invoke
from tfsr.errors import TfsrError
from tfsr.images import read_image, write_image
from tfsr.imresize import imresize
from tfsr.predictors import load_keras_model

pytestmark = pytest.mark.bad_input


def assert_one_line_error(result, pattern):
    """Exit 2 and one ``error:`` line, the last on stderr (progress lines may come before it); no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and pattern in lines[-1], result.stderr
    assert sum(line.startswith("error: ") for line in lines) == 1 and "Traceback" not in result.output


def png_bytes(array: np.ndarray, **params) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", **params)
    return buf.getvalue()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels, with a few bytes of pixel data: a cheap bomb."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(bytes(64))) + _chunk(b"IEND", b"")


SMOOTH = imresize(np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8), 4)  # 32x32
BROKEN_IMAGES = {
    "empty.png": (b"", "is an empty file"),
    "truncated.png": (png_bytes(SMOOTH)[:200], "is damaged or truncated"),
    "text.png": (b"just some notes, not pixels\n", "is not an image Pillow can read"),
    "bomb.png": (png_claiming(100_000, 100_000), "is too large to decode safely"),
}


@pytest.mark.parametrize("name", sorted(BROKEN_IMAGES))
def test_broken_image_is_named_by_reader_evaluate_and_upscale(tmp_path, name):
    data, message = BROKEN_IMAGES[name]
    folder = tmp_path / "set"
    folder.mkdir()
    (folder / name).write_bytes(data)
    Image.fromarray(SMOOTH).save(folder / "good.png")
    with pytest.raises(TfsrError, match=message):
        read_image(folder / name)
    assert_one_line_error(invoke("evaluate", "bicubic", "--scale", 2, "--data", folder), f"{folder / name}")
    result = invoke("upscale", "bicubic", folder, "--scale", 2, "--out", tmp_path / "out")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"warning: skipped {folder / name}: " in result.stderr and message in result.stderr
    assert result.stdout.strip().endswith("1 written, 0 skipped (output exists; --overwrite replaces), 1 failed")
    assert (tmp_path / "out" / "good_x2.png").is_file()


ODD_BUT_VALID = {  # file name -> (image, mode expected after x2 upscaling)
    "grey.png": (Image.fromarray(SMOOTH[..., 0]), "L"),
    "grey alpha.png": (Image.merge("LA", [Image.fromarray(SMOOTH[..., 0]), Image.fromarray(SMOOTH[..., 1])]), "LA"),
    "rgba.png": (Image.fromarray(np.dstack([SMOOTH, SMOOTH[..., :1]])), "RGBA"),
    "palette.png": (Image.fromarray(SMOOTH).convert("P"), "RGB"),
    "palette transparent.png": (Image.fromarray(SMOOTH).convert("P"), "RGBA"),
    "sixteen bit.png": (Image.fromarray(SMOOTH[..., 0].astype(np.uint16) * 257), "L"),
    "one pixel.png": (Image.fromarray(SMOOTH[:1, :1]), "RGB"),
    "smaller than a patch.png": (Image.fromarray(SMOOTH[:7, :9]), "RGB"),
    "ünïcødé 名前.png": (Image.fromarray(SMOOTH), "RGB"),
}


@pytest.mark.parametrize("name", sorted(ODD_BUT_VALID))
def test_odd_but_valid_images_upscale_keeping_their_kind(tmp_path, name):
    image, mode = ODD_BUT_VALID[name]
    params = {"transparency": 0} if "transparent" in name else {}
    image.save(tmp_path / name, **params)
    result = invoke("upscale", "bicubic", tmp_path / name, "--scale", 2, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    out = Image.open(tmp_path / "out" / name.replace(".png", "_x2.png"))
    assert out.mode == mode and out.size == (image.width * 2, image.height * 2)


def test_deep_and_float_images_read_as_the_8_bit_values_they_hold(tmp_path):
    from tfsr.images import read_image

    grey = SMOOTH[..., 0]
    dark = np.floor(grey * 255.0 / 65535.0 + 0.5).astype(np.uint8)  # a 16-bit file's 0..255 is near black
    kinds = {
        "sixteen bit.png": (Image.fromarray(grey.astype(np.uint16) * 257), grey),  # 0..65535 onto 0..255
        "dark sixteen bit.png": (Image.fromarray(grey.astype(np.uint16)), dark),
        "thirty-two bit.tif": (Image.fromarray(grey.astype(np.int32)), grey),  # mode I holding 0..255: as it is
        "float.tif": (Image.fromarray(grey.astype(np.float32) / 255.0), grey),  # mode F in 0..1
    }
    for name, (image, expected) in kinds.items():
        image.save(tmp_path / name)
        read = read_image(tmp_path / name)
        assert read.is_grey, name
        np.testing.assert_array_equal(read.rgb, np.repeat(expected[..., None], 3, axis=2), err_msg=name)


def test_images_are_written_in_the_format_their_suffix_names(tmp_path, rng):
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    for suffix, kind in ((".png", "PNG"), (".bmp", "BMP"), (".TIFF", "TIFF"), (".unknown", "PNG")):
        write_image(tmp_path / f"out{suffix}", rgb)
        assert Image.open(tmp_path / f"out{suffix}").format == kind
        np.testing.assert_array_equal(read_image(tmp_path / f"out{suffix}").rgb, rgb)


def test_small_grey_and_non_ascii_images_evaluate(tmp_path):
    folder = tmp_path / "my set ü"
    folder.mkdir()
    Image.fromarray(SMOOTH[:16, :16, 0]).save(folder / "grey small ü.png")  # 16x16: the smallest scorable at x2
    Image.fromarray(np.dstack([SMOOTH, SMOOTH[..., :1]])).save(folder / "rgba é.png")
    result = invoke("evaluate", "bicubic", "--scale", 2, "--data", folder, "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    assert "my set ü x2" in result.stdout


def test_images_too_small_to_score_are_named(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    Image.fromarray(SMOOTH[:1, :1]).save(folder / "dot.png")
    assert_one_line_error(invoke("evaluate", "bicubic", "--scale", 2, "--data", folder), "dot.png (1x1) is smaller than the scale 2")
    Image.fromarray(SMOOTH[:8, :8]).save(folder / "dot.png")
    assert_one_line_error(invoke("evaluate", "bicubic", "--scale", 2, "--data", folder),
                          "tiny/dot.png is 8x8: too small to score at x2 (SSIM needs at least 15x15 HR pixels)")


def test_lr_hr_size_mismatch_and_empty_folders(tiny_set, tmp_path):
    lr_file = tiny_set / "LR_bicubic" / "X4" / "img1x4.png"
    Image.fromarray(SMOOTH[:5, :7]).save(lr_file)
    assert_one_line_error(invoke("evaluate", "bicubic", "--scale", 4, "--data", tiny_set),
                          f"LR image {lr_file} is 7x5 but HR img1.png at x4 needs 10x12")  # fmt: skip
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    assert_one_line_error(invoke("evaluate", "bicubic", "--scale", 2, "--data", tmp_path / "empty"), "holds no images")
    result = invoke("upscale", "bicubic", tmp_path / "empty", "--scale", 2, "--out", tmp_path / "out")
    assert_one_line_error(result, f"no images to upscale in {tmp_path / 'empty'}")
    assert "warning: folder" in result.stderr and "holds no image files" in result.stderr
    assert_one_line_error(invoke("upscale", "bicubic", tmp_path / "nowhere", "--scale", 2, "--out", tmp_path / "o"),
                          "is neither a file nor a folder")  # fmt: skip


# ---------------------------------------------------------------------------------------------------- models


def test_keras_file_with_a_lambda_is_refused_without_running_its_code(tmp_path, tiny_set):
    from tfsr.keras import keras

    marker = tmp_path / "code_ran"
    touch = f"lambda x: (open({str(marker)!r}, 'w').close(), x)[1]"
    inputs = keras.Input((None, None, 3))
    upscaled = keras.layers.UpSampling2D(2)(keras.layers.Lambda(eval(touch))(inputs))  # noqa: S307  (our own code)
    keras.Model(inputs, upscaled).save(tmp_path / "evil.keras")
    marker.unlink()  # building the model ran the lambda once; loading must not run it again
    assert_one_line_error(invoke("evaluate", tmp_path / "evil.keras", "--data", tiny_set), "contains a Lambda layer")
    assert_one_line_error(invoke("upscale", tmp_path / "evil.keras", tiny_set / "HR", "--out", tmp_path / "o"),
                          "contains a Lambda layer")  # fmt: skip
    assert not marker.exists()
    # the test can fail: an unsafe load of the same file does run the code
    keras.models.load_model(tmp_path / "evil.keras", safe_mode=False)
    assert marker.exists()


def test_truncated_keras_and_non_flatbuffer_tflite_are_named(tmp_path, tiny_set):
    tfsr.build_model("slwsr16", 2).save(tmp_path / "good.keras")
    data = (tmp_path / "good.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    assert_one_line_error(invoke("evaluate", tmp_path / "cut.keras", "--data", tiny_set),
                          f"model file {tmp_path / 'cut.keras'} is not a .keras archive")  # fmt: skip
    (tmp_path / "notes.tflite").write_text("not a flatbuffer")
    assert_one_line_error(invoke("upscale", tmp_path / "notes.tflite", tiny_set / "HR", "--out", tmp_path / "o"),
                          "is not a TFLite flatbuffer")  # fmt: skip
    assert_one_line_error(invoke("benchmark", tmp_path / "notes.tflite"), "is not a TFLite flatbuffer")
    # a model of another scale than asked
    assert_one_line_error(invoke("upscale", tmp_path / "good.keras", tiny_set / "HR", "--scale", 4, "--out",
                                 tmp_path / "o"), "upscales x2, not x4")  # fmt: skip
    assert_one_line_error(invoke("benchmark", tmp_path / "good.keras", "--scale", 3), "upscales x2, not x3")


def test_unknown_model_names(tmp_path, tiny_set):
    assert_one_line_error(invoke("upscale", "edsr9000", tiny_set / "HR", "--out", tmp_path / "o"), "'edsr9000' is not")
    assert_one_line_error(invoke("benchmark", "edsr9000"), "'edsr9000' is not a registered name")
    assert_one_line_error(invoke("evaluate", "bicubic", "edsr9000", "--scale", 2, "--data", tiny_set), "'edsr9000' is not")


# ------------------------------------------------------------------------------------------ out-of-range options


def _out_of_range_cases():
    """For every option of every command with a bounded type: a value just outside the bounds, and a bad choice."""
    cases = []
    for name, command in sorted(cli.commands.items()):
        for param in command.params:
            if not isinstance(param, click.Option):
                continue
            flag = param.opts[0]
            kind = param.type
            if isinstance(kind, (click.IntRange, click.FloatRange)):
                step = 1 if isinstance(kind, click.IntRange) else 0.5
                if kind.min is not None:
                    cases.append((name, flag, str(kind.min - step)))
                if kind.max is not None:
                    cases.append((name, flag, str(kind.max + step)))
            elif isinstance(kind, click.Choice):
                cases.append((name, flag, "no-such-choice"))
    return cases


OUT_OF_RANGE = _out_of_range_cases()


def test_every_bounded_option_is_covered():
    commands = {c for c, _, _ in OUT_OF_RANGE}
    assert {"evaluate", "upscale", "benchmark", "models"} <= commands
    assert ("evaluate", "--scale", "5") in OUT_OF_RANGE and ("upscale", "--tile", "0") in OUT_OF_RANGE


@pytest.mark.parametrize("command,flag,value", OUT_OF_RANGE, ids=[f"{c}{f}={v}" for c, f, v in OUT_OF_RANGE])
def test_out_of_range_option_is_a_usage_error(command, flag, value):
    needs_argument = any(isinstance(p, click.Argument) and p.required for p in cli.commands[command].params)
    result = invoke(command, *(["x"] if needs_argument else []), flag, value)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "Invalid value for" in result.output and value in result.output


@pytest.mark.parametrize("args,message", [
    (("benchmark", "slwsr16", "--input-size", "0x0"), "--input-size must be at least 1x1 LR pixels, not '0x0'"),
    (("benchmark", "slwsr16", "--input-size", "320x0"), "--input-size must be at least 1x1 LR pixels, not '320x0'"),
    (("benchmark", "slwsr16", "--input-size", "wide"), "--input-size must be WxH in LR pixels (e.g. 320x180)"),
])  # fmt: skip
def test_free_form_values_are_checked(args, message):
    assert_one_line_error(invoke(*args), message)


# Plain int/float options of the training and quantization commands, checked by their pipelines: each bad value
# must be refused before any work starts, naming its option.
UNCHECKED_TYPE_CASES = [
    ("train", "--steps", "-1"), ("train", "--epochs", "-2"), ("train", "--batch-size", "0"),
    ("train", "--patch-size", "0"), ("train", "--lr", "-1"), ("train", "--crops-per-image", "0"),
    ("train", "--backup-every", "0"),
    ("quantize", "--prune", "1.5"), ("quantize", "--input-size", "0x0"), ("quantize", "--calib-count", "0"),
    ("quantize", "--steps", "-1"), ("quantize", "--epochs", "0"), ("quantize", "--equalize", "-0.5"),
    ("quantize", "--lr", "0"), ("quantize", "--batch-size", "0"), ("quantize", "--calib-seed", "-1"),
]  # fmt: skip


@pytest.mark.parametrize("command,flag,value", UNCHECKED_TYPE_CASES, ids=[f"{c}{f}={v}" for c, f, v in UNCHECKED_TYPE_CASES])
def test_training_and_quantization_values_are_checked(command, flag, value, tmp_path):
    if command == "train":
        # No training images: a value checked up front is named; one that is not fails on the data instead,
        # quickly, rather than training with it.
        (tmp_path / "no images").mkdir()
        args = ["train", "slwsr16", "--scale", "2", "--data", tmp_path / "no images", "--val-data", "none", "--fresh",
                "--out", tmp_path / "run"]  # fmt: skip
    else:
        Image.fromarray(imresize(SMOOTH, 4)).save(tmp_path / "one.png")
        tfsr.build_model("slwsr16", 2).save(tmp_path / "m.keras")
        method = ["--method", "qat"] if flag in ("--steps", "--epochs", "--lr") else []
        args = ["quantize", tmp_path / "m.keras", "--calib-data", tmp_path, "--out", tmp_path / "m.tflite", *method]
    assert_one_line_error(invoke(*args, flag, value), flag)
    assert not (tmp_path / "run" / "model.keras").exists() and not (tmp_path / "m.tflite").exists()


# ------------------------------------------------------------------------------------------------------- fuzz

FUZZ_SECONDS = 20


def _mutations(seed_bytes: bytes, rng: np.random.Generator, count: int):
    """Random bytes, and copies of a valid file with random bytes overwritten, cut or appended."""
    for i in range(count):
        if i % 3 == 0:
            yield rng.integers(0, 256, int(rng.integers(1, 2000)), dtype=np.uint8).tobytes()
            continue
        data = bytearray(seed_bytes)
        for _ in range(int(rng.integers(1, 8))):
            data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        if i % 3 == 2:
            data = data[: int(rng.integers(1, len(data)))]
        yield bytes(data)


def _fuzz(tmp_path, suffix, seed_bytes, load, count):
    rng = np.random.default_rng(2024)
    path = tmp_path / f"fuzz{suffix}"
    outcomes = {"loaded": 0, "refused": 0}
    deadline = time.monotonic() + FUZZ_SECONDS
    for i, data in enumerate(_mutations(seed_bytes, rng, count)):
        path.write_bytes(data)
        try:
            load(path)
            outcomes["loaded"] += 1
        except TfsrError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc), str(exc)
            outcomes["refused"] += 1
        if time.monotonic() > deadline:
            break
    assert outcomes["refused"] > 0 and sum(outcomes.values()) >= min(count, 50)
    return outcomes


def test_fuzz_image_reader(tmp_path):
    outcomes = _fuzz(tmp_path, ".png", png_bytes(SMOOTH), read_image, 300)
    assert outcomes["loaded"] > 0  # a flipped byte in pixel data may still decode: both paths are exercised


def test_fuzz_keras_loader(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:  # a small archive in the .keras layout, without weights
        z.writestr("metadata.json", '{"keras_version": "2.21.0"}')
        z.writestr("config.json", '{"class_name": "Functional", "config": {}}')
    _fuzz(tmp_path, ".keras", buf.getvalue(), load_keras_model, 150)


def test_fuzz_tflite_loader(tmp_path):
    from tfsr.tflite import tflite_predictor

    header = b"\x1c\x00\x00\x00TFL3" + bytes(64)
    _fuzz(tmp_path, ".tflite", header, tflite_predictor, 100)


# ------------------------------------------------------------------------------------------------------ faults


@pytest.mark.fault
def test_disk_full_while_writing_results_keeps_the_previous_file(tiny_set, tmp_path, monkeypatch):
    import tfsr.atomic

    previous = tmp_path / "r.json"
    previous.write_text('{"previous": true}\n')

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tfsr.atomic.os, "replace", full_disk)
    result = invoke("evaluate", "bicubic", "--scale", 2, "--data", tiny_set, "--json", previous)
    assert_one_line_error(result, f"cannot write {previous}: No space left on device; any previous r.json is unchanged")
    assert previous.read_text() == '{"previous": true}\n'
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".r.json.")] == []  # no temporary left
