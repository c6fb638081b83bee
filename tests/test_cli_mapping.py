"""cli.py only maps options to config dataclasses: every option of every command reaches its own field."""
import importlib

import click
import pytest

from cli import cli
from tests.test_cli_foundation import invoke
from tfsr.errors import TfsrError

# command: (its pipeline, positional arguments, [(option, value or None for a flag, config field, expected)],
#           {field: expected} for the positional arguments)
CASES = {
    "models": ("pipelines.models", [], [
        ("--scale", "3", "scale", 3), ("--json", None, "as_json", True), ("--markdown", None, "markdown", True),
    ], {}),
    "evaluate": ("pipelines.evaluate", ["m1", "m2"], [
        ("--data", ["A", "B"], "data", ["A", "B"]), ("--data-root", "R", "data_root", "R"), ("--scale", "3", "scale", 3),
        ("--grey", "rgb", "grey_mode", "rgb"), ("--rounded-y", None, "rounded_y", True),
        ("--json", "j.json", "json_path", "j.json"), ("--csv", "c.csv", "csv_path", "c.csv"),
        ("--markdown", None, "markdown", True), ("--self-ensemble", None, "self_ensemble", True),
        ("--save-images", "D", "save_images", "D"), ("--tile", "7", "tile", 7), ("--overlap", "5", "overlap", 5),
    ], {"models": ["m1", "m2"]}),
    "upscale": ("pipelines.upscale", ["M", "a.png", "b.png"], [
        ("--out", "O", "out", "O"), ("--scale", "3", "scale", 3), ("--tile", "7", "tile", 7),
        ("--overlap", "5", "overlap", 5), ("--overwrite", None, "overwrite", True),
    ], {"model": "M", "inputs": ["a.png", "b.png"]}),
    "import-weights": ("pipelines.import_weights", ["erfdn", "ck.npz"], [
        ("--scale", "3", "scale", 3), ("--out", "o.keras", "out", "o.keras"),
    ], {"model": "erfdn", "checkpoint": "ck.npz"}),
    "benchmark": ("pipelines.benchmark", ["m1"], [
        ("--input-size", "40x30", "input_hw", (30, 40)), ("--scale", "3", "scale", 3), ("--threads", "3", "threads", 3),
        ("--kind", ["int8", "keras"], "kinds", ("int8", "keras")), ("--repeats", "4", "repeats", 4),
        ("--warmup", "1", "warmup", 1), ("--data", "D", "data", "D"), ("--data-root", "R", "data_root", "R"),
        ("--json", "j.json", "json_path", "j.json"), ("--plot", "p.png", "plot_path", "p.png"),
        ("--markdown", None, "markdown", True),
    ], {"models": ["m1"]}),
    "train": ("pipelines.train", ["slwsr16"], [
        ("--scale", "3", "scale", 3), ("--data", "D", "data", "D"), ("--data-root", "R", "data_root", "R"),
        ("--steps", "11", "steps", 11), ("--epochs", "12", "epochs", 12), ("--steps-per-epoch", "13", "steps_per_epoch", 13),
        ("--batch-size", "14", "batch_size", 14), ("--patch-size", "15", "patch_size", 15), ("--lr", "0.5", "lr", 0.5),
        ("--loss", "charbonnier", "loss", "charbonnier"), ("--fresh", None, "resume", False), ("--out", "O", "out", "O"),
        ("--mixed-precision", None, "mixed_precision", True), ("--xla", None, "xla", True),
        ("--strategy", "mirrored", "strategy", "mirrored"), ("--val-data", "V", "val_data", "V"), ("--seed", "7", "seed", 7),
        ("--crops-per-image", "9", "crops_per_image", 9), ("--cache", "none", "cache", "none"),
        ("--backup-every", "17", "backup_every", 17),
    ], {"model": "slwsr16"}),
    "quantize": ("pipelines.quantize", ["m.keras"], [
        ("--method", "qat", "method", "qat"), ("--prune", "0.3", "prune", 0.3), ("--target", "nnapi", "target", "nnapi"),
        ("--input-size", "20x30", "input_size", "20x30"), ("--io", "uint8", "io", "uint8"),
        ("--calib-data", "C", "calib_data", "C"), ("--calib-count", "33", "calib_count", 33),
        ("--train-data", "T", "train_data", "T"), ("--calib-seed", "4", "calib_seed", 4), ("--patch", "21", "patch", 21),
        ("--epochs", "2", "epochs", 2), ("--steps", "44", "steps", 44), ("--batch-size", "5", "batch", 5),
        ("--data", ["D1", "D2"], "data", ["D1", "D2"]), ("--out", "o.tflite", "out", "o.tflite"),
        ("--strict", None, "strict", True), ("--ranges", "mean-batch", "ranges", "mean-batch"),
        ("--concat-scales", "shared", "concat_scales", "shared"), ("--qat-target", "hr", "qat_target", "hr"),
        ("--lr", "0.001", "learning_rate", 0.001), ("--lr-schedule", "cosine", "lr_schedule", "cosine"),
        ("--no-fold-residuals", None, "fold_residuals", False), ("--split-sums", None, "split_sums", True),
        ("--equalize", "0.5", "equalize", 0.5), ("--weight-rounding", "reconstruct", "weight_rounding", "reconstruct"),
    ], {"model": "m.keras"}),
}  # fmt: skip


def test_every_command_is_covered():
    assert sorted(CASES) == sorted(cli.commands)


@pytest.mark.parametrize("command", sorted(CASES))
def test_every_option_reaches_its_own_config_field(command, monkeypatch):
    module, arguments, options, positional = CASES[command]
    captured = []

    def run(config, *args, **kwargs):
        captured.append(config)
        raise TfsrError("captured")

    monkeypatch.setattr(importlib.import_module(module), "run", run)
    line = list(arguments)
    for option, value, _field, _expected in options:
        for one in value if isinstance(value, list) else [value]:
            line += [option] if one is None else [option, one]
    result = invoke(command, *line)
    assert result.exit_code == 2 and "error: captured" in result.output, result.output
    config = captured[0]
    for option, _value, field, expected in options:
        assert getattr(config, field) == expected, f"{option} -> {field}"
    for field, expected in positional.items():
        assert getattr(config, field) == expected, field
    exercised = {option for option, *_ in options}
    declared = [p for p in cli.commands[command].params if isinstance(p, click.Option)]
    untested = [p.opts[0] for p in declared if not exercised & set(p.opts + p.secondary_opts)]
    assert untested == [], f"{command}: options without a mapping case"
