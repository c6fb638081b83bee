"""The CLI contract of the foundation: `models`, `evaluate`, and one-line errors with exit code 2."""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import tfsr
from cli import cli
from tests.conftest import DATA, needs_shared


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_one_line_error(result, pattern):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert pattern in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_models_lists_every_registered_model_with_params():
    result = invoke("models", "--scale", "4", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["model"]: r for r in json.loads(result.stdout)["models"]}
    assert set(rows) == set(tfsr.list_models())
    assert rows["slwsr16"]["params"] == 143_755
    assert rows["slwsr32"]["macs"] == 39_901_190_400


@needs_shared
def test_evaluate_bicubic_writes_json_with_per_image_scores(tmp_path):
    out = tmp_path / "r.json"
    result = invoke("evaluate", "bicubic", "--data", DATA / "Set5", "--data", DATA / "Set14", "--scale", 4, "--json", out)
    assert result.exit_code == 0, result.output
    assert "28.43 / 0.8111" in result.stdout and "26.00 / 0.7029" in result.stdout
    assert "grey images: as-is" in result.stdout
    data = json.loads(out.read_text())["results"]["bicubic"]
    assert data["Set5"]["psnr_y"] == pytest.approx(28.4302, abs=0.002)
    assert set(data["Set5"]["per_image"]) == {"baby", "bird", "butterfly", "head", "woman"}
    assert data["Set14"]["grey"] == "as-is"


def test_evaluate_keras_file_and_run_folder_side_by_side(tiny_set, tmp_path):
    model = tfsr.build_model("slwsr16", 2)
    model.save(tmp_path / "m.keras")
    run = tmp_path / "saved_models" / "slwsr16_x2"
    run.mkdir(parents=True)
    model.save(run / "model.keras")
    result = invoke("evaluate", "bicubic", tmp_path / "m.keras", run, "--data", tiny_set, "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "r.json").read_text())["results"]
    assert set(results) == {"bicubic", "m", "slwsr16_x2"}
    # same weights, same score: the .keras file and the run folder are the same model
    assert results["m"]["Tiny"]["psnr_y"] == results["slwsr16_x2"]["Tiny"]["psnr_y"]
    assert results["bicubic"]["Tiny"]["psnr_y"] > results["m"]["Tiny"]["psnr_y"]  # untrained model


def test_unknown_model_name_lists_the_known_ones(tiny_set):
    assert_one_line_error(invoke("evaluate", "srcnn", "--data", tiny_set), "registered architectures: ")
    assert_one_line_error(invoke("evaluate", "slwsr16", "--data", tiny_set), "without trained weights")


def test_missing_and_empty_folders_are_named(tmp_path):
    assert_one_line_error(invoke("evaluate", "bicubic", "--scale", 2, "--data", tmp_path / "nowhere"), "nowhere")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(invoke("evaluate", "bicubic", "--scale", 2, "--data", tmp_path / "empty"), "holds no images")


def test_lr_of_wrong_size_is_named(tiny_set):
    lr_file = tiny_set / "LR_bicubic" / "X2" / "img0x2.png"
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(lr_file)
    result = invoke("evaluate", "bicubic", "--scale", 2, "--data", tiny_set)
    assert_one_line_error(result, f"LR image {lr_file} is 5x5 but HR img0.png at x2 needs 20x24")


def test_non_image_file_is_named(tiny_set):
    bad = tiny_set / "HR" / "notes.png"
    bad.write_text("not an image")
    assert_one_line_error(invoke("evaluate", "bicubic", "--scale", 2, "--data", tiny_set), f"{bad} is not an image")


def test_model_of_another_scale_than_asked(tiny_set, tmp_path):
    tfsr.build_model("slwsr16", 2).save(tmp_path / "x2.keras")
    result = invoke("evaluate", tmp_path / "x2.keras", "--scale", 3, "--data", tiny_set)
    assert_one_line_error(result, "upscales x2, not x3")


def test_scale_out_of_range_is_a_usage_error(tiny_set):
    result = invoke("evaluate", "bicubic", "--scale", 5, "--data", tiny_set)
    assert result.exit_code == 2 and "5 is not in the range 2<=x<=4" in result.output
