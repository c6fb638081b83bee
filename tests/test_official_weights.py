"""The authors' own weights, imported, reproduce the official PyTorch models' outputs and Set5 scores."""
import json

import numpy as np
import pytest

import tfsr
from pipelines.import_weights import ImportWeightsConfig, run
from tests.conftest import DATA, WEIGHTS, needs_shared, needs_weights
from tfsr.data.benchmark import load_benchmark
from tfsr.evaluation import evaluate_set
from tfsr.predictors import KerasPredictor, load_keras_model
from tfsr.weights import assign_state_dict, load_state_dict

pytestmark = [needs_shared, needs_weights, pytest.mark.shared]


def _reference(model_key):
    return json.loads((WEIGHTS / "reference_scores.json").read_text())[model_key]["Set5_x4"]


def _check(model, model_key, psnr_tol=0.002, ssim_tol=0.0002):
    bench = load_benchmark(DATA / "Set5", 4)
    outputs = {}
    score = evaluate_set(KerasPredictor(model, 4, model_key), bench, on_image=outputs.__setitem__)
    bird = np.load(WEIGHTS / f"{model_key}_bird_sr_float.npy")
    assert np.abs(outputs["bird"] - bird).max() < 0.01
    reference = _reference(model_key)
    assert score.psnr_y == pytest.approx(reference["mean_psnr_y"], abs=psnr_tol)
    for image in score.images:
        ref_psnr, ref_ssim = reference["per_image"][image.name]
        assert image.psnr_y == pytest.approx(ref_psnr, abs=psnr_tol), image.name
        assert image.ssim_y == pytest.approx(ref_ssim, abs=ssim_tol), image.name
    return score


def test_erfdn_official_weights_reproduce_the_official_model(tmp_path):
    out = tmp_path / "erfdn_x4.keras"
    result = run(ImportWeightsConfig("erfdn", str(WEIGHTS / "erfdn_x4_official.npz"), str(out), 4))
    assert result.params == 433_448 and result.tensors == 128
    score = _check(load_keras_model(out), "erfdn_x4_official")
    assert score.psnr_y == pytest.approx(32.1606, abs=0.002)
    assert score.ssim_y == pytest.approx(0.89459, abs=0.0002)


def test_slwsr32_epoch1_checkpoint_reproduces_the_official_model():
    model = tfsr.build_model("slwsr32", 4)
    assign_state_dict(model, load_state_dict(WEIGHTS / "slwsr32_x4_epoch1_official.npz"))
    assert model.count_params() == 571_131
    score = _check(model, "slwsr32_x4_epoch1_official")
    assert score.psnr_y == pytest.approx(28.9625, abs=0.002)
