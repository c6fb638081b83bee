"""The bicubic baselines the issue fixes: an exact pipeline must reproduce them to 0.002 dB / 0.0002."""
import pytest

from tests.conftest import DATA, needs_shared
from tfsr.data.benchmark import load_benchmark
from tfsr.evaluation import ScoreOptions, evaluate_set
from tfsr.predictors import BicubicPredictor

EXPECTED = {
    ("Set5", "as-is"): {2: (33.6741, 0.93029), 3: (30.4047, 0.86891), 4: (28.4302, 0.81114)},
    ("Set14", "as-is"): {2: (30.2319, 0.86905), 3: (27.5391, 0.77447), 4: (25.9970, 0.70292)},
    ("Set14", "rgb"): {2: (30.3263, 0.86985), 3: (27.6336, 0.77588), 4: (26.0914, 0.70480)},
}
CASES = [(s, g, k) for (s, g), per in EXPECTED.items() for k in per]


@needs_shared
@pytest.mark.parametrize("set_name,grey,scale", CASES)
def test_bicubic_matches_exact_baseline(set_name, grey, scale):
    bench = load_benchmark(DATA / set_name, scale)
    assert bench.lr_source == "files"
    score = evaluate_set(BicubicPredictor(scale), bench, ScoreOptions(grey_mode=grey))
    want_psnr, want_ssim = EXPECTED[(set_name, grey)][scale]
    assert score.psnr_y == pytest.approx(want_psnr, abs=0.002)
    assert score.ssim_y == pytest.approx(want_ssim, abs=0.0002)


@needs_shared
@pytest.mark.parametrize("scale,want", [(2, 33.6404), (3, 30.3864), (4, 28.4177)])
def test_rounded_y_option(scale, want):
    score = evaluate_set(BicubicPredictor(scale), load_benchmark(DATA / "Set5", scale), ScoreOptions(rounded_y=True))
    assert score.psnr_y == pytest.approx(want, abs=0.002)


@needs_shared
def test_hr_only_folder_makes_the_same_lr(tmp_path):
    # An HR-only folder gets LR from the MATLAB-exact bicubic: identical scores to the LR files.
    import shutil

    shutil.copytree(DATA / "Set5" / "HR", tmp_path / "Set5HR")
    bench = load_benchmark(tmp_path / "Set5HR", 4)
    assert bench.lr_source == "bicubic"
    assert evaluate_set(BicubicPredictor(4), bench).psnr_y == pytest.approx(28.4302, abs=0.002)
