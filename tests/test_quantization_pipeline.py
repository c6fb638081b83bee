"""`cli.py quantize` end to end on a tiny model: outputs, report, option errors, and SIGKILL safety."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import ROOT
from test_tflite import smooth_image, tiny_sr


@pytest.fixture
def workspace(tmp_path, tiny_set):
    """A tiny x2 model, a calibration folder of real-looking images, and the tiny benchmark set."""
    tiny_sr(2).save(tmp_path / "tiny.keras")
    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(3)
    for i in range(4):
        Image.fromarray(smooth_image(rng, 80, 96)).save(calib / f"c{i}.png")
    return tmp_path, calib, tiny_set


def quantize_args(tmp_path, calib, data, *extra):
    return [str(tmp_path / "tiny.keras"), "--calib-data", str(calib), "--calib-count", "8", "--patch", "16", "--data", str(data),
            "--out", str(tmp_path / "tiny_int8.tflite"), *extra]  # fmt: skip


def per_channel_kernels(tflite: bytes) -> list[np.ndarray]:
    """The int8 conv kernels of a .tflite (the int8 tensors with one scale per channel), in graph order."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=tflite)
    return [interpreter.get_tensor(d["index"]) for d in interpreter.get_tensor_details()
            if d["dtype"] == np.int8 and len(d["quantization_parameters"]["scales"]) > 1]  # fmt: skip


def test_quantize_ptq_writes_tflite_and_report(workspace):
    from cli import cli

    tmp_path, calib, data = workspace
    result = CliRunner().invoke(cli, ["quantize", *quantize_args(tmp_path, calib, data, "--io", "uint8")])
    assert result.exit_code == 0, result.output
    out = tmp_path / "tiny_int8.tflite"
    assert out.read_bytes()[4:8] == b"TFL3"
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["audit"]["input"]["types"] == ["UINT8"] and report["audit"]["problems"] == []
    assert set(report["scores"]) == {"float keras", "float tflite", "float16 tflite", "int8 tflite"}  # no fine-tuning
    for mode in ("float32", "float16"):  # float exports of the same model, for comparison
        export = tmp_path / f"tiny_{mode}.tflite"
        assert report["float_exports"][mode] == str(export) and export.read_bytes()[4:8] == b"TFL3"
        assert report["sizes"][f"{mode} tflite"]["raw"] == export.stat().st_size
    assert report["sizes"]["float16 tflite"]["raw"] < report["sizes"]["float32 tflite"]["raw"]  # weights in half the bytes
    float_db = report["scores"]["float keras"]["Tiny"]["psnr_y"]
    assert abs(report["scores"]["float tflite"]["Tiny"]["psnr_y"] - float_db) < 0.01
    assert abs(report["scores"]["float16 tflite"]["Tiny"]["psnr_y"] - float_db) < 0.1
    assert report["drop_from_model_before_fine_tuning_db"] is None
    int8_db = report["scores"]["int8 tflite"]["Tiny"]["psnr_y"]
    assert report["drop_db"]["Tiny"] == pytest.approx(float_db - int8_db) and abs(float_db - int8_db) < 0.2
    assert report["equalization"]["strength"] == 1.0 and report["equalization"]["channel_classes"] > 0  # the default
    assert report["concat_inputs_requantized"] == []  # its concat reads the graph input and a tensor only it reads
    assert report["sizes"]["int8 tflite"]["raw"] < report["sizes"]["float32 tflite"]["raw"]
    assert "drop (float keras - int8)" in out.with_suffix(".txt").read_text()
    assert [p.name for p in tmp_path.glob("*.tmp")] == []


def test_quantize_edgetpu_strict(workspace, monkeypatch):
    from cli import cli
    from test_quantization import fake_edgetpu_compiler

    tmp_path, calib, data = workspace
    fake_edgetpu_compiler(tmp_path, monkeypatch)
    args = quantize_args(tmp_path, calib, data, "--target", "edgetpu", "--input-size", "16x16", "--io", "uint8", "--strict")
    result = CliRunner().invoke(cli, ["quantize", *args])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "tiny_int8.json").read_text())
    compiled = tmp_path / "tiny_int8_edgetpu.tflite"
    assert report["edgetpu_compiler"]["ok"] and compiled.read_bytes() == (tmp_path / "tiny_int8.tflite").read_bytes()
    assert f"edgetpu_compiler: compiled to {compiled}" in (tmp_path / "tiny_int8.txt").read_text()
    assert report["audit"]["input"]["shape"] == [1, 16, 16, 3]
    assert "DEPTH_TO_SPACE" not in report["audit"]["op_counts"]
    assert report["audit"]["op_counts"]["TRANSPOSE_CONV"] == 1
    # Float I/O puts a DEQUANTIZE at the output, which the Edge TPU does not run: --strict refuses it.
    bad = quantize_args(tmp_path, calib, data, "--target", "edgetpu", "--input-size", "16x16", "--io", "float32", "--strict")
    result = CliRunner().invoke(cli, ["quantize", *bad])
    assert result.exit_code == 2
    assert "--strict" in result.output and "DEQUANTIZE" in result.output


def test_quantize_prune_then_qat_keeps_sparsity(workspace):
    from cli import cli

    tmp_path, calib, data = workspace
    tiny_sr(2, width=16).save(tmp_path / "tiny.keras")  # a body conv big enough to prune
    args = quantize_args(tmp_path, calib, data, "--method", "qat", "--prune", "0.5", "--steps", "6")
    result = CliRunner().invoke(cli, ["quantize", *args])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "tiny_int8.json").read_text())
    assert abs(report["kernel_sparsity"] - 0.5) < 0.02  # measured after pruning-preserving QAT
    assert report["audit"]["problems"] == []
    assert abs(report["drop_db"]["Tiny"]) < 0.2  # float and int8 scores are of the same fine-tuned weights
    # The fake-quantized model QAT trained is scored too, and its int8 export agrees with it (measured 0.002 dB),
    # closer than either is to the float weights (0.03 dB).
    tiny = {label: per["Tiny"]["psnr_y"] for label, per in report["scores"].items()}
    qat = tiny["qat keras (fake-quantized)"]
    assert abs(qat - tiny["int8 tflite"]) < 0.01 < abs(qat - tiny["float keras"])
    # The model as given is scored too; pruning's fine-tuning on HR patches moved this untrained model (measured
    # 21.10 -> 22.58 dB), so the two drops differ.
    before = report["scores"]["float keras, before fine-tuning"]["Tiny"]["psnr_y"]
    assert report["drop_from_model_before_fine_tuning_db"]["Tiny"] == pytest.approx(
        before - report["scores"]["int8 tflite"]["Tiny"]["psnr_y"])
    assert abs(before - report["scores"]["float keras"]["Tiny"]["psnr_y"]) > 0.5
    assert "drop from before fine-tuning" in (tmp_path / "tiny_int8.txt").read_text()


def test_quantize_requantizes_concat_inputs_and_strict_names_the_option(workspace):
    from cli import cli
    from test_concat_scales import skip_concat_sr

    tmp_path, calib, data = workspace
    skip_concat_sr().save(tmp_path / "tiny.keras")
    result = CliRunner().invoke(cli, ["quantize", *quantize_args(tmp_path, calib, data, "--strict")])
    assert result.exit_code == 2
    assert "QUANTIZE inside the graph" in result.output and "--concat-scales shared avoids" in result.output
    result = CliRunner().invoke(cli, ["quantize", *quantize_args(tmp_path, calib, data, "--strict", "--concat-scales", "shared")])
    assert result.exit_code == 0, result.output
    shared = json.loads((tmp_path / "tiny_int8.json").read_text())
    result = CliRunner().invoke(cli, ["quantize", *quantize_args(tmp_path, calib, data)])
    assert result.exit_code == 0, result.output
    own = json.loads((tmp_path / "tiny_int8.json").read_text())
    [requantized] = own["concat_inputs_requantized"]
    assert requantized["tensor"].startswith("skip_concat_sr/head/BiasAdd") and requantized["own_scale"] < requantized["concat_scale"] / 5
    assert shared["concat_inputs_requantized"] == []
    assert own["drop_db"]["Tiny"] < shared["drop_db"]["Tiny"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--prune", "1.5"], "--prune takes a target sparsity between 0 and 1"),
        (["--input-size", "0x0"], "--input-size must be at least 1x1"),
        (["--input-size", "big"], "--input-size must be HxW"),
        (["--steps", "0"], "--steps must be at least 1"),
        (["--batch-size", "0"], "--batch-size must be at least 1, not 0"),
        (["--calib-seed", "-1"], "--calib-seed must be at least 0, not -1"),
        (["--train-data", "imgs"], "--train-data is what QAT and pruning fine-tune on: add --method qat or --prune SPARSITY"),
        (["--method", "qat", "--train-data", "imgs", "--input-size", "16x24"], "--train-data streams square patches"),
        (["--prune", "0.5", "--lr-schedule", "cosine"], "--lr-schedule cosine schedules QAT's fine-tuning: add --method qat"),
        (["--equalize", "2"], "--equalize must be between 0 (off) and 1, not 2.0"),
        (["--concat-scales", "mixed"], "Invalid value for '--concat-scales'"),
        (["--method", "qat", "--ranges", "minmax"], "--ranges minmax is the stock PTQ converter's; with --method qat use mse or mean-batch"),
        (["--method", "ptq16x8", "--weight-rounding", "reconstruct"], "--weight-rounding reconstruct chooses int8 weights for int8 activations: use --method ptq or qat"),
        (["--weight-rounding", "adaround"], "Invalid value for '--weight-rounding'"),
    ],
)
def test_quantize_bad_options(tmp_path, args, message):
    from cli import cli

    result = CliRunner().invoke(cli, ["quantize", str(tmp_path / "missing.keras"), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_quantize_without_model_or_runs(tmp_path, monkeypatch):
    from cli import cli

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["quantize"])
    assert result.exit_code == 2
    assert "no MODEL given and no run folder" in result.output


@pytest.mark.fault
def test_sigkill_during_quantize_keeps_previous_output(workspace):
    tmp_path, calib, data = workspace
    out = tmp_path / "tiny_int8.tflite"
    out.write_bytes(b"previous good model")
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "quantize", *quantize_args(tmp_path, calib, data)],
                            cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)  # fmt: skip
    deadline = time.time() + 120
    for line in proc.stderr:  # kill it in the middle of the conversion
        if line.startswith("converting to int8") or time.time() > deadline:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert out.read_bytes() == b"previous good model"
    assert sorted(p.name for p in tmp_path.glob("*.tflite")) == ["tiny_int8.tflite"]
    assert not (tmp_path / "tiny_int8.json").exists()


def test_quantize_16x8_keeps_int16_activations(workspace):
    from cli import cli

    tmp_path, calib, data = workspace
    result = CliRunner().invoke(cli, ["quantize", *quantize_args(tmp_path, calib, data, "--method", "ptq16x8", "--io", "float32")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "tiny_int8.tflite").with_suffix(".json").read_text())
    assert report["config"]["method"] == "ptq16x8"
    assert "INT16" in json.dumps(report["audit"])
    assert abs(report["drop_db"]["Tiny"]) < 0.2
    refused = CliRunner().invoke(cli, ["quantize", *quantize_args(tmp_path, calib, data, "--method", "ptq16x8", "--target", "edgetpu")])
    assert refused.exit_code == 2 and "the Edge TPU does not run" in refused.stderr


def test_method_defaults_give_qat_more_patches_and_steps_and_keep_what_the_user_set():
    from pipelines.quantize import QuantizeConfig, TfsrError, method_defaults, validate

    ptq, qat = method_defaults(QuantizeConfig()), method_defaults(QuantizeConfig(method="qat"))
    assert (ptq.calib_count, ptq.steps) == (200, 200)
    assert (qat.calib_count, qat.steps) == (1000, 1000)
    assert method_defaults(QuantizeConfig(method="qat", calib_count=8, steps=6)).steps == 6
    with pytest.raises(TfsrError, match="--calib-count must be at least 1, not 0"):
        validate(method_defaults(QuantizeConfig(method="qat", calib_count=0)))


@pytest.mark.parametrize("method", ["ptq", "qat"])
def test_quantize_folds_identity_residuals_unless_told_not_to(workspace, method):
    from cli import cli
    from test_fold import mixed_residuals

    tmp_path, calib, data = workspace
    mixed_residuals().save(tmp_path / "tiny.keras")
    extra = ["--method", method, "--steps", "2", "--batch-size", "4"] if method == "qat" else []
    report_path = tmp_path / "tiny_int8.json"
    result = CliRunner().invoke(cli, ["quantize", *quantize_args(tmp_path, calib, data, *extra)])
    assert result.exit_code == 0, result.output
    folded = json.loads(report_path.read_text())
    assert folded["folded_residuals"] == ["r1.add", "r6.add"] and folded["audit"]["op_counts"]["ADD"] == 5
    result = CliRunner().invoke(cli, ["quantize", *quantize_args(tmp_path, calib, data, *extra, "--no-fold-residuals")])
    assert result.exit_code == 0, result.output
    as_given = json.loads(report_path.read_text())
    assert as_given["folded_residuals"] is None and as_given["audit"]["op_counts"]["ADD"] == 7


@pytest.mark.parametrize("method", ["ptq", "qat"])
def test_quantize_splits_convs_over_their_sums_when_asked(workspace, method):
    from cli import cli
    from test_split import mixed_sums

    tmp_path, calib, data = workspace
    mixed_sums().save(tmp_path / "tiny.keras")
    extra = ["--method", method, "--steps", "2", "--batch-size", "4", "--lr", "1e-9"] if method == "qat" else []
    report_path = tmp_path / "tiny_int8.json"
    reports = {}
    for flag in ("--no-split-sums", "--split-sums"):
        result = CliRunner().invoke(cli, ["quantize", *quantize_args(tmp_path, calib, data, *extra, flag)])
        assert result.exit_code == 0, result.output
        reports[flag] = json.loads(report_path.read_text())
    as_given, split = reports["--no-split-sums"], reports["--split-sums"]
    # Folded first, c3 + s3 became the conv s4 on s3 alone, which it then splits too.
    assert as_given["split_convs"] is None and split["split_convs"] == {"c1": "s1", "s4": "s3", "up": "s6"}
    assert split["audit"]["op_counts"]["CONV_2D"] == as_given["audit"]["op_counts"]["CONV_2D"] + 4  # c1 in 3, s4, up in 2
    assert split["audit"]["problems"] == []  # QAT: the sum before the shuffle takes the output clip's range
    assert split["scores"]["float tflite"]["Tiny"]["psnr_y"] == pytest.approx(as_given["scores"]["float tflite"]["Tiny"]["psnr_y"], abs=0.01)


def test_calib_seed_draws_other_patches_and_the_same_seed_the_same_model(workspace):
    from cli import cli

    tmp_path, calib, data = workspace
    out = tmp_path / "tiny_int8.tflite"
    models = {}
    for run, seed in enumerate(["0", "0", "1"]):
        result = CliRunner().invoke(cli, ["quantize", *quantize_args(tmp_path, calib, data, "--calib-seed", seed)])
        assert result.exit_code == 0, result.output
        assert json.loads(out.with_suffix(".json").read_text())["config"]["calib_seed"] == int(seed)
        models[run] = out.read_bytes()
    assert models[0] == models[1]  # one seed, one int8 model: a quantization run is reproducible
    assert models[2] != models[0]  # another draw calibrates other ranges


def test_reconstructed_weights_are_what_the_int8_model_holds_and_the_float_model_stays(workspace):
    from cli import cli

    tmp_path, calib, data = workspace
    out = tmp_path / "tiny_int8.tflite"
    kernels, reports = {}, {}
    for rounding in ("nearest", "reconstruct"):
        result = CliRunner().invoke(cli, ["quantize", *quantize_args(tmp_path, calib, data, "--weight-rounding", rounding)])
        assert result.exit_code == 0, result.output
        reports[rounding] = json.loads(out.with_suffix(".json").read_text())
        kernels[rounding] = per_channel_kernels(out.read_bytes())
    assert reports["nearest"]["weight_reconstruction"] is None
    reconstruction = reports["reconstruct"]["weight_reconstruction"]
    assert reconstruction["layers"] == 3 and set(reconstruction["output_error"]) == {"head", "body", "up"}
    assert "reconstructed body (2/3): output RMSE" in result.output
    assert len(kernels["reconstruct"]) == 3 and any(  # other int8 weights ...
        not np.array_equal(a, b) for a, b in zip(kernels["nearest"], kernels["reconstruct"]))
    for key in ("float keras", "float tflite"):  # ... of the same float model
        assert reports["reconstruct"]["scores"][key] == reports["nearest"]["scores"][key]


def test_calibration_takes_the_first_patches_within_its_pixel_budget():
    from pipelines.quantize import calibration_patches

    def kept(count, size):
        lr = np.empty((count, size, size, 3), np.uint8)
        chosen = calibration_patches(lr)
        assert chosen.base is lr  # the first ones, a view
        return len(chosen)

    assert [kept(1000, 48), kept(1000, 96), kept(8, 16), kept(2, 1024)] == [200, 50, 8, 1]


def test_qat_calibrates_on_ptqs_default_pixels_and_fine_tunes_on_every_patch(workspace):
    from cli import cli

    tmp_path, calib, data = workspace
    budget = 200 * 48 * 48 // (40 * 40)  # PTQ's default 200 patches of 48x48, in 40x40 patches
    for method, calibrated in (("ptq", 300), ("qat", budget)):  # PTQ calibrates on every patch it is given
        extra = ["--method", method, "--calib-count", "300", "--patch", "40", "--steps", "1", "--batch-size", "2"]
        result = CliRunner().invoke(cli, ["quantize", *quantize_args(tmp_path, calib, data, *extra)])
        assert result.exit_code == 0, result.output
        assert "sampling 300 LR/HR patch pairs" in result.output
        assert f"convs on {calibrated} patches" in result.output  # equalization
    assert f"activations on {budget} patches, kept while fine-tuning" in result.output


def tiny_fine_tuning(workspace, *extra) -> tuple[str, dict, list[dict]]:
    """A tiny fine-tuning run (QAT or pruning, as ``extra`` asks) through the CLI, batches of 4: its output, its
    report and the rows of its fine-tuning log."""
    from cli import cli

    tmp_path, calib, data = workspace
    args = quantize_args(tmp_path, calib, data, "--batch-size", "4", *extra)
    result = CliRunner().invoke(cli, ["quantize", *args])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "tiny_int8.json").read_text())
    with open(report["fine_tuning"]["log"]) as log:
        return result.output, report, list(csv.DictReader(log))


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_qat_learning_rate_follows_the_schedule_into_the_log(workspace, schedule):
    output, report, rows = tiny_fine_tuning(workspace, "--method", "qat", "--steps", "4", "--lr", "1e-3", "--lr-schedule", schedule)
    assert report["config"]["lr_schedule"] == schedule
    # Logged after each of the 4 steps: the rate that step took, the cosine's value for steps 0-3 of 4.
    expected = [1e-3] * 4 if schedule == "constant" else [1e-3 * (1 + np.cos(np.pi * k / 4)) / 2 for k in range(4)]
    np.testing.assert_allclose([float(row["lr"]) for row in rows], expected, rtol=1e-5, atol=1e-12)
    assert "fine-tuning step 4/4: L2" in output and f"lr {expected[-1]:.2g}" in output


def test_qat_fine_tunes_towards_the_target_asked(workspace):
    from pipelines.quantize import QAT_TARGETS

    first_loss, outputs = {}, {}
    for target in QAT_TARGETS:
        outputs[target], report, rows = tiny_fine_tuning(workspace, "--method", "qat", "--steps", "1", "--lr", "1e-9",
                                                         "--qat-target", target)  # fmt: skip
        assert report["config"]["qat_target"] == target
        first_loss[target] = float(rows[0]["loss"])
    assert "fine-tuning towards the float model (L2)" in outputs["float"]
    assert "fine-tuning towards the HR patches (L1)" in outputs["hr"]
    # Before any step the fake-quantized model is its float self up to rounding (measured L2 0.23), while this
    # untrained model is far from the HR patches (L1 25.0).
    assert first_loss["hr"] > 10 * first_loss["float"]


def test_qat_starts_from_the_reconstructed_weights(workspace):
    from cli import cli

    tmp_path, calib, data = workspace
    out = tmp_path / "tiny_int8.tflite"
    kernels = {}
    for method in ("ptq", "qat"):  # the same 8 calibration patches: the same prepared model and reconstruction
        extra = ["--weight-rounding", "reconstruct", "--method", method, "--steps", "1", "--batch-size", "2", "--lr", "1e-9"]
        result = CliRunner().invoke(cli, ["quantize", *quantize_args(tmp_path, calib, data, *extra)])
        assert result.exit_code == 0, result.output
        kernels[method] = per_channel_kernels(out.read_bytes())
        assert json.loads(out.with_suffix(".json").read_text())["weight_reconstruction"]["layers"] == 3
    by_shape = {method: {k.shape: k for k in found} for method, found in kernels.items()}  # the graphs' orders differ
    assert len(by_shape["qat"]) == 3 and by_shape["qat"].keys() == by_shape["ptq"].keys()
    for shape, kernel in by_shape["ptq"].items():  # one step at lr 1e-9 moves no weight to another int8 level
        np.testing.assert_array_equal(by_shape["qat"][shape], kernel)


def test_reconstruction_of_a_recurrent_model_is_a_one_line_refusal(workspace):
    from cli import cli
    from tfsr.registry import build_model

    tmp_path, calib, data = workspace
    build_model("litesrnet", 2).save(tmp_path / "tiny.keras")
    result = CliRunner().invoke(cli, ["quantize", *quantize_args(tmp_path, calib, data, "--weight-rounding", "reconstruct")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--weight-rounding reconstruct: litesrnet_x2: the simulation needs one input and layers called once" in result.output
    assert "use --weight-rounding nearest" in result.output and not (tmp_path / "tiny_int8.tflite").exists()


@pytest.mark.parametrize("fine_tuning", [["--method", "qat"], ["--prune", "0.5"]])
def test_fine_tuning_streams_the_training_pipelines_patches(workspace, monkeypatch, fine_tuning):
    tmp_path, calib, _ = workspace
    monkeypatch.setenv("TFSR_CACHE", str(tmp_path / "lr_cache"))  # the folder's bicubic LR images land here
    tiny_sr(2, width=16).save(tmp_path / "tiny.keras")  # a body conv big enough to prune
    output, report, rows = tiny_fine_tuning(workspace, *fine_tuning, "--train-data", str(calib), "--steps", "4")
    assert "fine-tuning on patches streamed from" in output and str(calib) in output
    assert report["fine_tuning"]["steps"] == 4 and str(calib) in report["fine_tuning"]["data"]
    assert len(rows) == 4 and all(np.isfinite(float(row["loss"])) for row in rows)  # one row per logged step
    assert report["audit"]["problems"] == []


@pytest.mark.fault
@pytest.mark.parametrize("streamed", [False, True], ids=["fixed-patches", "train-data-stream"])
def test_killed_qat_resumes_from_its_backup_and_refuses_other_options(workspace, monkeypatch, streamed):
    from cli import cli
    from tfsr.training.callbacks import backed_up_step

    tmp_path, calib, data = workspace
    monkeypatch.setenv("TFSR_CACHE", str(tmp_path / "lr_cache"))  # the stream's bicubic LR images (inherited below)
    stream = ["--train-data", str(calib)] if streamed else []
    args = quantize_args(tmp_path, calib, data, "--method", "qat", "--steps", "1000", "--batch-size", "4", *stream)
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "quantize", *args],
                            cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)  # fmt: skip
    deadline = time.time() + 300
    for line in proc.stderr:  # kill it once a few hundred steps are backed up
        if line.startswith("fine-tuning step 300/1000") or time.time() > deadline:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    backup = tmp_path / "tiny_int8_qat_backup"
    step = backed_up_step(backup)
    assert step is not None and 300 <= step < 1000
    assert not (tmp_path / "tiny_int8.tflite").exists()

    other = CliRunner().invoke(cli, ["quantize", *quantize_args(tmp_path, calib, data, "--method", "qat", "--steps", "900",
                                                                "--batch-size", "4", *stream)])  # fmt: skip
    assert other.exit_code == 2
    assert f"{backup} holds the backup of a fine-tuning with other options (steps)" in other.output
    other_batch = CliRunner().invoke(cli, ["quantize", *quantize_args(tmp_path, calib, data, "--method", "qat", "--steps",
                                                                      "1000", "--batch-size", "8", *stream)])  # fmt: skip
    assert "other options (batch)" in other_batch.output and other_batch.exit_code == 2

    resumed = CliRunner().invoke(cli, ["quantize", *args])
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming qat fine-tuning from the backup at step {step}" in resumed.output
    assert ("fine-tuning on patches streamed from" in resumed.output) == streamed
    assert "fine-tuning step 1000/1000" in resumed.output and "fine-tuning step 100/1000" not in resumed.output
    assert not backup.exists()
    with open(tmp_path / "tiny_int8_fine_tuning.csv") as log:
        logged = [int(row["epoch"]) for row in csv.DictReader(log)]
    assert logged[-1] == 9 and set(logged) == set(range(10))  # the killed run's steps, then the resumed ones


@pytest.mark.fault
def test_diverged_fine_tuning_is_one_line_and_leaves_nothing(workspace, monkeypatch):
    from cli import cli
    from tfsr.quantization import qat

    def diverging(qmodel, data, steps, *args, backup_dir=None, **kwargs):
        assert (backup_dir / "options.json").is_file()  # the backup folder exists while fine-tuning runs
        raise qat.FineTuningDiverged(3)

    monkeypatch.setattr(qat, "fine_tune", diverging)
    tmp_path, calib, data = workspace
    result = CliRunner().invoke(cli, ["quantize", *quantize_args(tmp_path, calib, data, "--method", "qat", "--steps", "5")])
    assert result.exit_code == 2
    assert "error: fine-tuning stopped: the loss became NaN or infinite at step 3: lower --lr" in result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("tiny_int8")) == []  # no model, report or backup


def test_default_output_names_say_method_pruning_and_target(tmp_path):
    from pathlib import Path

    from pipelines.quantize import QuantizeConfig, default_out

    run = Path("saved_models/slwsr16_x4/model.keras")
    assert default_out(run, QuantizeConfig()) == run.with_name("model_ptq_generic_int8.tflite")
    assert default_out(run, QuantizeConfig(method="qat", prune=0.5)) == run.with_name("model_qat_p50_generic_int8.tflite")
    assert default_out(Path("e.keras"), QuantizeConfig(target="edgetpu")) == Path("e_ptq_edgetpu_int8.tflite")


def test_without_a_model_the_newest_run_is_quantized(tmp_path):
    from pipelines.quantize import latest_run

    for name, age in (("older", 200), ("newest", 10), ("oldest", 300)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.keras").write_bytes(b"")
        os.utime(tmp_path / name / "model.keras", (time.time() - age, time.time() - age))
    (tmp_path / "no_model").mkdir()  # a folder without model.keras is no run
    assert latest_run(tmp_path) == tmp_path / "newest"
