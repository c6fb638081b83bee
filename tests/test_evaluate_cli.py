"""evaluate side by side: tiling, self-ensemble, CSV / Markdown / JSON output, saved images and figures."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

import tfsr
from tests.test_cli_foundation import invoke
from tests.conftest import DATA, make_benchmark, needs_shared
from tfsr.data.benchmark import load_benchmark, resolve_data
from tfsr.ensemble import TRANSFORMS, EnsemblePredictor, _forward, _inverse, self_ensemble
from tfsr.errors import TfsrError
from tfsr.figures import Panel, Point, comparison_figure, pareto_front, pick_crop, scatter_figure
from tfsr.imresize import imresize
from tfsr.metrics import quantize_image, score_image
from tfsr.predictors import BicubicPredictor, KerasPredictor, check_scale
from tfsr.tiling import TiledPredictor, predict_tiled, with_tiling


@pytest.fixture(scope="module")
def x2_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "s16.keras"
    tfsr.build_model("slwsr16", 2).save(path)
    return path


class NearestFixed:
    """A fixed-input-shape predictor (as a static TFLite file): nearest-neighbour x2, refusing other shapes."""

    label, scale, input_hw = "nearest", 2, (10, 12)

    def __init__(self):
        self.windows = []

    def __call__(self, lr):
        assert lr.shape[:2] == self.input_hw, lr.shape
        self.windows.append(lr.copy())
        return np.repeat(np.repeat(lr, 2, axis=0), 2, axis=1).astype(np.float32)


def smooth_image(rng, h, w):
    return imresize(rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8), 4)


def test_tiled_equals_untiled_within_a_hundredth_of_a_db(rng):
    model = tfsr.build_model("slwsr16", 2)
    predict = KerasPredictor(model, 2, "s16")
    lr = smooth_image(rng, 40, 48)
    hr = imresize(lr, 2)
    full = predict(lr)
    tiled = predict_tiled(predict, lr, 2, tile=16, overlap=12)  # 3x3 windows of 40x40 on a 40x48 image
    assert tiled.shape == full.shape
    assert abs(score_image(tiled, hr, 2)[0] - score_image(full, hr, 2)[0]) < 0.01
    assert tiled.dtype == np.uint8  # assembled as uint8: a quarter of a float output's memory
    # the seams see enough context to agree pixel by pixel too (up to the rounding of values near a half)
    assert np.abs(tiled.astype(int) - quantize_image(full)).max() <= 1
    # without context the seams show: the test would catch a tiler that drops the overlap
    assert np.abs(predict_tiled(predict, lr, 2, tile=16, overlap=0).astype(int) - quantize_image(full)).max() > 1


def test_fixed_shape_predictor_is_tiled_with_windows_of_its_shape(rng):
    fixed = NearestFixed()
    lr = rng.integers(0, 256, (25, 31, 3), dtype=np.uint8)
    tiled = with_tiling(fixed, None, overlap=2)
    assert isinstance(tiled, TiledPredictor) and tiled.tile == 6
    np.testing.assert_array_equal(tiled(lr), np.repeat(np.repeat(lr, 2, axis=0), 2, axis=1))
    small = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)  # smaller than the model's input: padded, then cropped
    np.testing.assert_array_equal(tiled(small), np.repeat(np.repeat(small, 2, axis=0), 2, axis=1))
    # padded with the image's own border (what a model sees at any border), not with black
    np.testing.assert_array_equal(fixed.windows[-1], np.pad(small, ((0, 4), (0, 7), (0, 0)), mode="edge"))
    with pytest.raises(TfsrError, match="fixed 12x10 inputs: an overlap of 5 leaves no tile"):
        with_tiling(fixed, None, overlap=5)
    default = with_tiling(fixed, None)  # a quarter of the smaller side overlaps: tiles keep half of it
    assert (default.overlap, default.tile) == (2, 6)
    assert with_tiling(fixed, 4, overlap=2).tile == 4  # --tile below the largest core is taken as asked
    assert with_tiling(default, 3).inner is fixed  # re-tiling tiles the model, not tiles of tiles


def test_a_model_of_another_scale_is_refused_both_ways():
    for actual, wanted in ((4, 2), (2, 4)):
        with pytest.raises(TfsrError, match=rf"model m upscales x{actual}, not x{wanted}: pass --scale {actual}"):
            check_scale("m", actual, wanted)
    assert check_scale("m", 3, None) == check_scale("m", 3, 3) == 3


def test_tiling_options_are_checked_and_bicubic_tiles_exactly(rng):
    with pytest.raises(TfsrError, match="--tile must be at least 1"):
        with_tiling(BicubicPredictor(2), 0)
    with pytest.raises(TfsrError, match="--overlap must be 0 or more"):
        with_tiling(BicubicPredictor(2), 8, overlap=-1)
    assert with_tiling(BicubicPredictor(2), None) == BicubicPredictor(2)
    lr = rng.integers(0, 256, (30, 26, 3), dtype=np.uint8)
    np.testing.assert_array_equal(with_tiling(BicubicPredictor(2), 7, overlap=4)(lr), imresize(lr, 2))


def test_self_ensemble_inverts_every_transform_and_averages(rng):
    img = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert len(set(TRANSFORMS)) == 8
    for turns, flip in TRANSFORMS:
        np.testing.assert_array_equal(_inverse(_forward(img, turns, flip), turns, flip), img)
    nearest = lambda lr: np.repeat(np.repeat(lr, 2, axis=0), 2, axis=1)  # noqa: E731  (equivariant: "+" changes nothing)
    np.testing.assert_array_equal(self_ensemble(nearest, img), nearest(img))
    shifted = lambda lr: nearest(lr).astype(np.float32) + np.arange(lr.shape[1] * 2)[None, :, None]  # noqa: E731
    # a position-dependent model: the 8 inverse-transformed outputs differ, their mean is the average offset
    out = self_ensemble(shifted, img)
    assert not np.allclose(out, shifted(img))
    assert out.mean() == pytest.approx(nearest(img).mean() + (img.shape[0] + img.shape[1] - 1) / 2, rel=1e-5)
    assert EnsemblePredictor(BicubicPredictor(3)).label == "bicubic+" and EnsemblePredictor(BicubicPredictor(3)).scale == 3


def test_pick_crop_finds_the_detailed_region_and_pareto_front(rng):
    for top, left in [(40, 60), (68, 88), (5, 80)]:  # inside, in the bottom-right corner, near the top
        img = np.full((100, 120, 3), 128, dtype=np.uint8)
        img[top : top + 32, left : left + 32] = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        assert pick_crop(img, 32) == (top, left, 32)
    img[:60, :80] = np.clip(128 + rng.integers(-40, 41, (60, 80, 1)), 0, 255)  # faint detail above-left of it
    assert pick_crop(img, 32) == (5, 80, 32)
    assert pick_crop(img[:20, :20], 32)[2] == 20  # never larger than the image
    points = [Point("a", 1, 30.0), Point("b", 2, 29.0), Point("c", 3, 31.0), Point("d", 4, 30.5), Point("e", 5, 31.0)]
    assert [p.label for p in pareto_front(points)] == ["a", "c"]  # e ties c's quality at a higher cost
    figure = scatter_figure("t", "PSNR", [("params", points), ("latency", points[:1])])
    assert figure.size == (60 + 2 * 420 + 90 + 40, 56 + 320 + 48)
    panels = [Panel(np.zeros((32, 32, 3), np.uint8), "x\n30.00 dB")] * 2
    assert comparison_figure(img, (40, 60, 32), panels, "title").size == (8 + 3 * 200, 28 + 192 + 40 + 8)


def test_evaluate_side_by_side_with_ensemble_csv_markdown_and_figures(tiny_set, x2_model, tmp_path):
    out = tmp_path / "out"
    result = invoke("evaluate", "bicubic", x2_model, "--data", tiny_set, "--scale", 2, "--self-ensemble",
                    "--markdown", "--csv", out / "r.csv", "--json", out / "r.json", "--save-images", out / "img")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("| model") and "| s16+" in result.stdout and "| bicubic+" not in result.stdout
    results = json.loads((out / "r.json").read_text())["results"]
    assert list(results) == ["bicubic", "s16", "s16+"]
    assert set(results["s16+"]["Tiny"]["per_image"]) == {"img0", "img1"}
    rows = list(csv.DictReader((out / "r.csv").open()))
    assert len(rows) == 3 * 3 and rows[0] == {"model": "bicubic", "dataset": "Tiny", "scale": "2", "image": "mean",
                                              "psnr_y": f"{results['bicubic']['Tiny']['psnr_y']:.4f}",
                                              "ssim_y": f"{results['bicubic']['Tiny']['ssim_y']:.5f}"}  # fmt: skip
    folder = out / "img" / "Tiny" / "x2"
    for label in ("bicubic", "s16", "s16+"):
        assert Image.open(folder / label / "img0.png").size == (40, 48)
    # HR overview, bicubic, s16, s16+, HR crop: five panels of 192 px with 8 px gaps
    assert Image.open(folder / "img1_compare.png").size == (8 + 5 * 200, 28 + 192 + 40 + 8)


def test_evaluate_names_several_sets_under_a_data_root_and_tiles(x2_model, tmp_path, rng):
    make_benchmark(tmp_path / "A", {"a": smooth_image(rng, 96, 80)}, scales=(2,))
    make_benchmark(tmp_path / "B", {"b": smooth_image(rng, 64, 64)}, scales=(2,), with_lr=False)
    plain = invoke("evaluate", x2_model, "--data", "A", "--data", "B", "--data-root", tmp_path, "--json", tmp_path / "p.json")
    assert plain.exit_code == 0, plain.output
    tiled = invoke("evaluate", x2_model, "--data", "A", "--data", "B", "--data-root", tmp_path, "--tile", 16,
                   "--overlap", 12, "--json", tmp_path / "t.json")  # fmt: skip
    assert tiled.exit_code == 0, tiled.output
    p, t = (json.loads((tmp_path / f).read_text())["results"]["s16"] for f in ("p.json", "t.json"))
    assert set(p) == {"A", "B"}
    for name in ("A", "B"):
        assert t[name]["psnr_y"] == pytest.approx(p[name]["psnr_y"], abs=0.01)
    twice = invoke("evaluate", x2_model, x2_model, "--data", "A", "--data-root", tmp_path, "--json", tmp_path / "2.json")
    results = json.loads((tmp_path / "2.json").read_text())["results"]  # a repeated label would overwrite its twin
    assert twice.exit_code == 0 and sorted(results) == ["s16", "s16#2"]
    assert results["s16#2"]["A"]["psnr_y"] == results["s16"]["A"]["psnr_y"] == p["A"]["psnr_y"]


def test_models_of_different_scales_are_refused_together(x2_model, tiny_set, tmp_path):
    tfsr.build_model("slwsr16", 4).save(tmp_path / "s16x4.keras")
    result = invoke("evaluate", x2_model, tmp_path / "s16x4.keras", "--data", tiny_set)
    assert result.exit_code == 2 and "models disagree on scale: s16x4 is x4, others x2; pass --scale" in result.output


def test_hr_only_sets_are_cropped_to_the_scale_before_their_lr_is_made(tmp_path, rng):
    hr = np.ascontiguousarray(smooth_image(rng, 56, 56)[:50, :54])  # 50x54: not a multiple of 4
    make_benchmark(tmp_path / "Odd", {"odd": hr}, with_lr=False)
    bench = load_benchmark(tmp_path / "Odd", 4)
    assert bench.lr_source == "bicubic" and bench.images[0].hr.shape == (48, 52, 3)
    np.testing.assert_array_equal(bench.images[0].lr, imresize(hr[:48, :52], 1 / 4))  # MATLAB's modcrop, then bicubic


def test_set_names_resolve_under_tfsr_data_unless_a_data_root_is_given(tmp_path, rng, monkeypatch):
    make_benchmark(tmp_path / "env" / "Mine", {"a": smooth_image(rng, 32, 32)}, with_lr=False)
    make_benchmark(tmp_path / "root" / "Mine", {"b": smooth_image(rng, 32, 32)}, with_lr=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TFSR_DATA", str(tmp_path / "env"))
    assert resolve_data("Mine") == tmp_path / "env" / "Mine"
    assert resolve_data("Mine", tmp_path / "root") == tmp_path / "root" / "Mine"
    monkeypatch.delenv("TFSR_DATA")
    with pytest.raises(TfsrError, match=r"data 'Mine' is neither a folder nor a set under the data root data \(set "
                                        r"--data-root or TFSR_DATA\)"):  # fmt: skip
        resolve_data("Mine")


@needs_shared
def test_evaluate_set_names_resolve_under_the_shared_data_root():
    result = invoke("evaluate", "bicubic", "--data", "Set5", "--data-root", DATA, "--scale", 3)
    assert result.exit_code == 0, result.output
    assert "30.40 / 0.8689" in result.stdout  # the published bicubic Set5 x3 (30.39 / 0.8682 in MATLAB tables)
