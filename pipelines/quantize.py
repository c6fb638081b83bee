"""`cli.py quantize`: a trained Keras model -> an int8 .tflite, its op audit and its measured quality drop.

Writes ``FILE.tflite`` atomically (a temporary file renamed into place: a killed run leaves the previous output
intact and no partial file) and next to it ``FILE.json`` and ``FILE.txt``: sizes (raw, gzip), ops, and
Y-PSNR / Y-SSIM of the float Keras model, the float TFLite model and the int8 TFLite model on the benchmark sets.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path


from pipelines.report import format_table, parse_size, write_json, write_text_atomic
from tfsr.atomic import atomic_path
from tfsr.data.benchmark import load_benchmark
from tfsr.errors import TfsrError
from tfsr.evaluation import evaluate_set
from tfsr.predictors import RUN_MODEL_FILE, KerasPredictor, load_keras_model, model_scale
from tfsr.tiling import with_tiling

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
DEFAULT_SETS = ("Set5", "Set14")
METHODS = ("ptq", "qat", "ptq16x8")  # ptq16x8: int16 activations, int8 weights (CPU/DSP)
TARGETS = ("generic", "edgetpu", "nnapi")
RANGES = ("mse", "mean-batch", "minmax")
CONCAT_SCALES = ("own", "shared")
QAT_TARGETS = ("float", "hr")
LR_SCHEDULES = ("constant", "cosine")
WEIGHT_ROUNDINGS = ("nearest", "reconstruct")
# LR pixels of PTQ's default calibration set, 200 patches of 48x48 (fewer of larger patches): what the
# reconstruction takes, holding all their im2col rows at once (E-RFDN: about 0.8 GB for a 50-channel 3x3 conv), and
# what QAT's equalization and activation ranges take of its larger fine-tuning set (`quantize erfdn --method qat
# --split-sums`: 32.0321 / 28.4312 dB on Set5 / Set14 in 10.6 minutes, against 32.0163 / 28.4352 in 13.8 on all 1,000).
CALIBRATION_PIXELS = 200 * 48 * 48
BEFORE_FINE_TUNING = "float keras, before fine-tuning"
QAT_KERAS = "qat keras (fake-quantized)"
EDGETPU_DEFAULT_HW = (64, 64)


@dataclass
class QuantizeConfig:
    model: str | None = None  # a .keras file or a run folder; None: the newest run under runs_dir
    method: str = "ptq"
    prune: float | None = None
    target: str = "generic"
    input_size: str | None = None  # "HxW": a fixed-shape export
    io: str = "int8"
    calib_data: str | None = None
    calib_count: int | None = None  # None: method_defaults
    patch: int = 48  # LR patch size for calibration and fine-tuning
    epochs: int = 1
    steps: int | None = None  # fine-tuning steps per epoch (QAT, pruning); None: method_defaults
    batch: int = 16
    out: str | None = None
    strict: bool = False
    data: list[str] = field(default_factory=list)  # benchmark folders; default Set5 + Set14 from ../shared/data
    runs_dir: str = "saved_models"
    threads: int = 2
    per_channel: bool = True
    fold_residuals: bool = True  # PTQ/QAT: conv(x) + x as one conv (tfsr.quantization.fold), before equalizing
    split_sums: bool = False  # PTQ/QAT: conv(a + b) as conv(a) + conv(b) (tfsr.quantization.split), before equalizing
    equalize: float = 1.0  # channel-equalization strength before PTQ or QAT (0: off); see tfsr.quantization.equalize
    # Activation ranges. PTQ: "mse", "mean-batch" (see tfsr.quantization.ranges), "minmax" (stock). QAT: "mse"
    # (MSE-optimal, kept while fine-tuning) or "mean-batch" (tfmot's moving averages of per-batch min/max).
    ranges: str = "mse"
    qat_target: str = "float"  # QAT fine-tuning targets: the float model's outputs (distillation) or "hr" patches
    learning_rate: float = 5e-5  # QAT fine-tuning: Adam's initial learning rate
    lr_schedule: str = "constant"  # QAT fine-tuning: "constant" or "cosine" (decays to 0 over --epochs x --steps)
    concat_scales: str = "own"  # PTQ: "own" (see tfsr.quantization.concat_scales) or "shared" (the converter's)
    calib_seed: int = 0  # which patches are drawn (E-RFDN PTQ: 0.264-0.295 dB over three draws)
    train_data: str | None = None  # QAT/pruning: fine-tune on the training pipeline's stream of this --data source
    # "reconstruct": int8 weights chosen layer by layer (tfsr.quantization.reconstruct); PTQ converts them, QAT
    # starts fine-tuning from them
    weight_rounding: str = "nearest"


def latest_run(runs_dir: str | Path) -> Path:
    runs = Path(runs_dir)
    candidates = [p for p in runs.glob("*/") if (p / RUN_MODEL_FILE).is_file()] if runs.is_dir() else []
    if not candidates:
        raise TfsrError(f"no MODEL given and no run folder holding {RUN_MODEL_FILE} under {runs}/: train one or name a .keras file")
    return max(candidates, key=lambda p: (p / RUN_MODEL_FILE).stat().st_mtime)


def resolve_model(config: QuantizeConfig) -> Path:
    path = Path(config.model) if config.model else latest_run(config.runs_dir)
    if path.is_dir():
        if not (path / RUN_MODEL_FILE).is_file():
            raise TfsrError(f"run folder {path} holds no {RUN_MODEL_FILE}")
        return path / RUN_MODEL_FILE
    if path.suffix != ".keras":
        raise TfsrError(f"MODEL {path} must be a .keras file or a run folder holding {RUN_MODEL_FILE}")
    return path


def default_out(model_path: Path, config: QuantizeConfig) -> Path:
    stem = "model" if model_path.name == RUN_MODEL_FILE else model_path.stem
    prune = f"_p{round(config.prune * 100)}" if config.prune else ""
    return model_path.parent / f"{stem}_{config.method}{prune}_{config.target}_int8.tflite"


def method_defaults(config: QuantizeConfig) -> QuantizeConfig:
    """Patches and steps the user left unset. PTQ calibrates better on 200 patches than on more (E-RFDN: 31.8653 dB
    against 31.7868 on 600: the ranges widen with outliers); QAT was measured with 1,000 patches and 1,000 steps
    (fewer steps leave int8 quality behind, more stop paying); pruning alone fine-tunes 200 steps."""
    qat = config.method == "qat"
    return replace(config, calib_count=config.calib_count if config.calib_count is not None else 1000 if qat else 200,
                   steps=config.steps if config.steps is not None else 1000 if qat else 200)  # fmt: skip


def validate(config: QuantizeConfig) -> tuple[int, int] | None:
    """Every option checked before any slow work starts; returns the fixed input size, if any."""
    from tfsr.tflite import IO_TYPES

    for name, value, allowed in (("--method", config.method, METHODS), ("--target", config.target, TARGETS),
                                 ("--io", config.io, IO_TYPES), ("--ranges", config.ranges, RANGES),
                                 ("--concat-scales", config.concat_scales, CONCAT_SCALES),
                                 ("--qat-target", config.qat_target, QAT_TARGETS),
                                 ("--lr-schedule", config.lr_schedule, LR_SCHEDULES),
                                 ("--weight-rounding", config.weight_rounding, WEIGHT_ROUNDINGS)):  # fmt: skip
        if value not in allowed:
            raise TfsrError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    if config.prune is not None:
        from tfsr.quantization.pruning import check_sparsity

        check_sparsity(config.prune)
    for name, value in (("--epochs", config.epochs), ("--steps", config.steps), ("--batch-size", config.batch),
                        ("--calib-count", config.calib_count), ("--patch", config.patch)):  # fmt: skip
        if value < 1:
            raise TfsrError(f"{name} must be at least 1, not {value}")
    if config.calib_seed < 0:
        raise TfsrError(f"--calib-seed must be at least 0, not {config.calib_seed}")
    if not 0.0 < config.learning_rate < 1.0:
        raise TfsrError(f"--lr must be between 0 and 1 (exclusive), not {config.learning_rate}")
    if not 0.0 <= config.equalize <= 1.0:
        raise TfsrError(f"--equalize must be between 0 (off) and 1, not {config.equalize}")
    if config.method == "qat" and config.ranges == "minmax":
        raise TfsrError("--ranges minmax is the stock PTQ converter's; with --method qat use mse or mean-batch")
    if config.method == "ptq16x8" and config.target == "edgetpu":
        raise TfsrError("--method ptq16x8 makes int16 activations, which the Edge TPU does not run: use ptq or qat")
    if config.weight_rounding != "nearest" and config.method == "ptq16x8":
        raise TfsrError(f"--weight-rounding {config.weight_rounding} chooses int8 weights for int8 activations: "
                        f"use --method ptq or qat")  # fmt: skip
    if config.lr_schedule != "constant" and config.method != "qat":
        raise TfsrError(f"--lr-schedule {config.lr_schedule} schedules QAT's fine-tuning: add --method qat")
    if config.train_data and config.method != "qat" and not config.prune:
        raise TfsrError("--train-data is what QAT and pruning fine-tune on: add --method qat or --prune SPARSITY")
    hw = parse_size(config.input_size) if config.input_size else None
    if config.target == "edgetpu" and hw is None:
        hw = EDGETPU_DEFAULT_HW  # the Edge TPU needs a static shape
    if config.train_data and hw and hw[0] != hw[1]:
        raise TfsrError(f"--train-data streams square patches, which a {hw[0]}x{hw[1]} model cannot take: "
                        f"use a square --input-size, or fine-tune on --calib-data patches")  # fmt: skip
    return hw


@dataclass
class Int8Preparation:
    model: object  # the same function in float, ready for int8
    folded: list[str] | None  # the Adds folded into their convs (None: not asked)
    split: dict[str, str] | None  # {conv: the Add it was split over} (None: not asked)
    equalization: dict | None  # the equalization's summary (None: off)


def prepared_for_int8(model, patches, fold: bool = True, split: bool = False, strength: float = 1.0,
                      log=lambda msg: None) -> Int8Preparation:  # fmt: skip
    """``model`` as the int8 conversions take it, the same function in float: identity residuals folded into
    their convs (``tfsr.quantization.fold``), convs split over the sums they read (``tfsr.quantization.split``),
    then channels equalized on ``patches`` (strength 0: not), each where asked."""
    folded = splits = equalization = None
    if fold:
        from tfsr.quantization.fold import fold_identity_residuals

        model, folded = fold_identity_residuals(model)
        log(f"folded {len(folded)} identity residuals into their convs")
    if split:
        from tfsr.quantization.split import split_summed_inputs

        model, splits = split_summed_inputs(model)
        log(f"split {len(splits)} convs over the sums they read" + "".join(f"; {c} over {a}" for c, a in splits.items()))
    if strength:
        from tfsr.quantization.equalize import equalize

        model, plan = equalize(model, patches, strength)
        equalization = {"strength": strength, "channel_classes": plan.classes, "largest_gain": plan.largest_gain}
        log(f"equalized {plan.classes} channel classes over {len(plan.gains)} convs on {len(patches)} patches (largest "
            f"gain {plan.largest_gain:.1f})")
    return Int8Preparation(model, folded, splits, equalization)


def calibration_patches(lr: np.ndarray) -> np.ndarray:
    """The first patches, up to ``CALIBRATION_PIXELS`` LR pixels (at least one patch)."""
    return lr[: max(1, CALIBRATION_PIXELS // (lr.shape[1] * lr.shape[2]))]


def fine_tuning_stream(config: QuantizeConfig, scale: int, lr_patch: int, log, start_step: int = 0):
    """The training pipeline's patch stream of ``--train-data`` (random crops, flips and rotations of decoded,
    cached images), in batches of ``--batch-size``, seeded by ``--calib-seed`` and, for a resumed fine-tuning,
    its ``start_step`` (as a resumed training run: no replay of the first steps' patches); and its description."""
    from pipelines.train import training_pairs
    from tfsr.data.patches import PatchConfig, patch_dataset
    from tfsr.data.sources import SkipLog

    decoded, described = training_pairs(config.train_data, scale, lr_patch, SkipLog(warn=log), log)
    log(f"fine-tuning on patches streamed from {described}")
    patches = PatchConfig(lr_patch, config.batch, seed=config.calib_seed, start_step=start_step)
    return patch_dataset(decoded, scale, patches), described


FINE_TUNING_OPTIONS_FILE = "options.json"
NOT_FINE_TUNING = ("data", "io", "strict", "threads", "concat_scales")  # options that do not change fine-tuning


@dataclass
class FineTuningBackups:
    """The backup folder of each fine-tuning a run does ("prune", "qat"), next to its output."""

    folders: dict[str, Path]
    options: dict
    resumed_step: int  # the step a killed run of the same options left a backup at (0: none)

    @contextlib.contextmanager
    def kept_while(self, kind: str):
        """The folder for the ``kind`` fine-tuning done inside the block: kept when the run is interrupted (killed,
        Ctrl-C) to be resumed, removed when the block ends or fails with a TfsrError (a diverged fine-tuning
        has no state worth resuming)."""
        folder = self.folders[kind]
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / FINE_TUNING_OPTIONS_FILE, self.options)
        try:
            yield folder
        except TfsrError:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        shutil.rmtree(folder, ignore_errors=True)


def fine_tuning_backups(out: Path, config: QuantizeConfig, log) -> FineTuningBackups:
    """Checked before any slow work: a backup left by a killed run of the same options is resumed, one of other
    options is refused (its steps would not fit)."""
    from tfsr.training.callbacks import backed_up_step

    kinds = [kind for kind, used in (("prune", bool(config.prune)), ("qat", config.method == "qat")) if used]
    folders = {kind: out.with_name(f"{out.stem}_{kind}_backup") for kind in kinds}
    options = {k: v for k, v in asdict(config).items() if k not in NOT_FINE_TUNING}
    resumed_step = 0
    for kind, folder in folders.items():
        step = backed_up_step(folder)
        if step is None:
            continue
        try:
            before = json.loads((folder / FINE_TUNING_OPTIONS_FILE).read_text())
        except (OSError, ValueError):
            before = {}
        changed = [k for k in options if before.get(k) != options[k]]
        if changed:
            raise TfsrError(f"{folder} holds the backup of a fine-tuning with other options ({', '.join(changed)}): "
                            f"rerun with the same options to resume it, or delete that folder to start over")  # fmt: skip
        log(f"resuming {kind} fine-tuning from the backup at step {step} ({folder})")
        resumed_step = max(resumed_step, step)
    return FineTuningBackups(folders, options, resumed_step)


def quantization_aware(model, config: QuantizeConfig, pairs, calibration, stream, backups: FineTuningBackups,
                       csv_log: Path, log, start=None):  # fmt: skip
    """The QAT model of ``model`` (or of ``start``, its weights chosen for int8, fine-tuned towards ``model``):
    ranges calibrated (then MSE-optimal on the LR patches ``calibration``), fine-tuned ``config.steps x epochs``
    steps on ``stream`` (or all of the fixed ``pairs``); its float weights are copied back into ``model``."""
    from tfsr.keras import keras
    from tfsr.quantization.configs import quantize_model
    from tfsr.quantization.qat import (TARGET_LOSSES, calibrate_ranges, copy_float_weights, distillation_pairs,
                                       fine_tune, mse_ranges)  # fmt: skip

    qmodel = quantize_model(model if start is None else start, preserve_sparsity=bool(config.prune))
    calibrated = calibrate_ranges(qmodel, pairs.lr[:32])
    log(f"activation ranges calibrated in {calibrated.passes} passes (last change {calibrated.final_change:.1e})")
    if config.ranges == "mse":
        log(f"MSE-optimal ranges for {mse_ranges(qmodel, calibration)} activations on {len(calibration)} patches, "
            f"kept while fine-tuning")
    towards_float = config.qat_target == "float"
    if stream is not None:  # streamed: the float model's outputs are computed batch by batch
        data, teacher = stream, model if towards_float else None
    else:  # a fixed set of patches: the float model's outputs are computed once
        data, teacher = distillation_pairs(model, pairs.lr) if towards_float else pairs, None
    loss = TARGET_LOSSES[config.qat_target]
    log(f"fine-tuning towards the {'float model' if towards_float else 'HR patches'} ({loss.upper()})")
    with backups.kept_while("qat") as backup:
        fine_tune(qmodel, data, config.epochs * config.steps, config.batch, config.learning_rate, log=log, teacher=teacher,
                  freeze_ranges=config.ranges == "mse", loss=loss, cosine=config.lr_schedule == "cosine", backup_dir=backup,
                  callbacks=[keras.callbacks.CSVLogger(str(csv_log), append=True)])  # fmt: skip
    copy_float_weights(qmodel, model)  # float scores are of the fine-tuned weights
    return qmodel


FLOAT_EXPORTS = ("float32", "float16")


def float_export_path(out: Path, mode: str) -> Path:
    """``model_ptq_generic_int8.tflite`` -> ``model_ptq_generic_float16.tflite``: the same weights in float."""
    stem = out.stem[: -len("_int8")] if out.stem.endswith("_int8") else out.stem
    return out.with_name(f"{stem}_{mode}.tflite")


def with_output_clip(model):
    """The model with its output clipped to [0, 255] inside the graph (unless it already ends with that clip)."""
    from tfsr.keras import keras

    last = model.layers[-1]
    if isinstance(last, keras.layers.ReLU) and last.max_value is not None and float(last.max_value) == 255.0:
        return model
    clipped = keras.layers.ReLU(max_value=255.0, name="clip_output")(model.output)
    return keras.Model(model.input, clipped, name=model.name)


def benchmark_folders(config: QuantizeConfig) -> list[Path]:
    if config.data:
        return [Path(d) for d in config.data]
    if not SHARED_DATA.is_dir():
        raise TfsrError(f"no default benchmark data ({SHARED_DATA} is absent): pass --data FOLDER")
    return [SHARED_DATA / s for s in DEFAULT_SETS]


def calibration_folder(config: QuantizeConfig) -> Path:
    if config.calib_data:
        return Path(config.calib_data)
    default = SHARED_DATA / "train291"
    if not default.is_dir():
        raise TfsrError(f"no default calibration images ({default} is absent): pass --calib-data FOLDER")
    return default


@dataclass
class QuantizeResult:
    out: Path
    summary: dict

    def table(self) -> str:
        s = self.summary
        rows = [[kind, f"{size['raw']:,}", f"{size['gzip']:,}"] for kind, size in s["sizes"].items()]
        text = [format_table(["file", "bytes", "gzip bytes"], rows)]
        sets = list(s["scores"]["int8 tflite"])
        headers = ["model"] + [f"{d} PSNR/SSIM" for d in sets]
        rows = [[m] + [f"{per[d]['psnr_y']:.3f} / {per[d]['ssim_y']:.4f}" for d in sets] for m, per in s["scores"].items()]
        rows.append(["drop (float keras - int8)"] + [f"{s['drop_db'][d]:.3f} dB" for d in sets])
        if s["drop_from_model_before_fine_tuning_db"]:
            rows.append(["drop from before fine-tuning"]
                        + [f"{s['drop_from_model_before_fine_tuning_db'][d]:.3f} dB" for d in sets])  # fmt: skip
        text += ["", format_table(headers, rows), "", f"ops: {s['audit']['summary']}"]
        if s.get("edgetpu_compiler"):
            text.append(f"edgetpu_compiler: {s['edgetpu_compiler']['summary']}")
        return "\n".join(text)


def run(config: QuantizeConfig, log=lambda msg: print(msg, file=sys.stderr)) -> QuantizeResult:
    config = method_defaults(config)
    input_hw = validate(config)
    model_path = resolve_model(config)
    benches_dirs = benchmark_folders(config)
    calib_dir = calibration_folder(config)
    out = Path(config.out) if config.out else default_out(model_path, config)
    if out.suffix != ".tflite":
        raise TfsrError(f"--out {out} must end in .tflite")
    backups = fine_tuning_backups(out, config, log)

    from tfsr import tflite
    from tfsr.quantization.data import patch_pairs

    started = time.time()
    model = with_output_clip(load_keras_model(model_path))
    scale = model_scale(model)
    benches = [load_benchmark(d, scale) for d in benches_dirs]
    if config.weight_rounding == "reconstruct":
        from tfsr.quantization.simulate import single_call_layers

        try:
            single_call_layers(model)
        except ValueError as error:
            raise TfsrError(f"--weight-rounding reconstruct: {error}: use --weight-rounding nearest") from None
    if config.target == "edgetpu":
        from tfsr.quantization.edgetpu import edgetpu_rewrite

        model = edgetpu_rewrite(model)
    patch = input_hw or (config.patch, config.patch)  # a fixed-shape graph calibrates on its own shape
    log(f"sampling {config.calib_count} LR/HR patch pairs ({patch[1]}x{patch[0]} LR) from {calib_dir}, seed {config.calib_seed}")
    pairs = patch_pairs(calib_dir, config.calib_count, patch, scale, seed=config.calib_seed)
    steps = config.epochs * config.steps
    stream = streamed_from = None
    if config.train_data and (config.method == "qat" or config.prune):
        stream, streamed_from = fine_tuning_stream(config, scale, patch[0], log, backups.resumed_step)
    fine_tuning_log = out.with_name(out.stem + "_fine_tuning.csv")
    if not backups.resumed_step:
        fine_tuning_log.unlink(missing_ok=True)  # a fresh run starts a fresh log, a resumed one continues it
    sparsity = None
    if config.prune:
        from tfsr.quantization.pruning import kernel_sparsity, prune

        with backups.kept_while("prune") as backup:
            model = prune(model, pairs if stream is None else stream, config.prune, steps, config.batch, log=log,
                          csv_log=fine_tuning_log, backup_dir=backup)  # fmt: skip
    # QAT's patches are for fine-tuning: it calibrates on as many as PTQ does by default
    calibration = calibration_patches(pairs.lr) if config.method == "qat" else pairs.lr
    preparation = None
    if config.method in ("ptq", "qat"):  # int8 only: 16x8 has range to spare
        preparation = prepared_for_int8(model, calibration, config.fold_residuals, config.split_sums, config.equalize, log)
        model = preparation.model
    reconstruction = start = None
    if config.weight_rounding == "reconstruct":
        from tfsr.quantization.reconstruct import reconstructed

        patches = calibration_patches(pairs.lr)
        log(f"choosing int8 weights layer by layer on {len(patches)} calibration patches")
        start, reconstruction = reconstructed(model, patches, log=log)
    if config.method == "qat":
        qmodel = quantization_aware(model, config, pairs, calibration, stream, backups, fine_tuning_log, log, start=start)
        int8_options = tflite.ConvertOptions("int8-qat", config.io, input_hw, config.per_channel)
        # The patches only calibrate tensors without a fake-quant node (e.g. inside Average): learned ranges stay.
        int8_model, representative = qmodel, list(pairs.lr)
    else:
        mode = "int16x8" if config.method == "ptq16x8" else "int8"  # 16x8 I/O: int16, or float32 with --io float32
        int8_options = tflite.ConvertOptions(mode, config.io, input_hw, config.per_channel)
        int8_model, representative = model if start is None else start, list(pairs.lr)
    ranges = config.ranges if config.method == "ptq" else f"QAT, {config.ranges}" if config.method == "qat" else "minmax"
    log(f"converting to int8 ({int8_options.mode}, {ranges} activation ranges, {config.io} I/O, input {input_hw or 'dynamic'})")
    requantized = []
    if config.method == "ptq" and (config.ranges != "minmax" or config.concat_scales == "own"):
        from tfsr.quantization.ranges import convert_with_ranges

        int8_bytes, requantized = convert_with_ranges(int8_model, int8_options, representative, config.ranges,
                                                      own_concat_scales=config.concat_scales == "own")  # fmt: skip
        for r in requantized:
            log(f"own scale for concatenation input {r.tensor}: step {r.own_scale:.3g} instead of {r.concat_scale:.3g}")
    else:
        int8_bytes = tflite.convert(int8_model, int8_options, representative)
    # float exports for comparison (of the fine-tuned weights after QAT or pruning), float I/O
    floats = {mode: tflite.convert(model, tflite.ConvertOptions(mode, "float32", input_hw)) for mode in FLOAT_EXPORTS}
    if config.prune:
        sparsity = kernel_sparsity(model)
    audit = tflite.audit_ops(int8_bytes, config.target)
    if config.strict and audit.problems:
        hint = " (--concat-scales shared avoids the int8 -> int8 QUANTIZE ops, at a cost in quality)" if requantized else ""
        raise TfsrError(f"--strict: the {config.target} op audit of {out.name} found: {'; '.join(audit.problems)}{hint}")
    float_paths = {mode: float_export_path(out, mode) for mode in FLOAT_EXPORTS}
    for path, data in [(out, int8_bytes)] + [(float_paths[mode], floats[mode]) for mode in FLOAT_EXPORTS]:
        with atomic_path(path, suffix=".tmp") as tmp:  # a killed run leaves no partial .tflite, the old one intact
            tmp.write_bytes(data)
        log(f"wrote {path} ({len(data):,} bytes)")

    compiler = None
    if config.target == "edgetpu":
        from tfsr.quantization.edgetpu import run_edgetpu_compiler

        compiler = run_edgetpu_compiler(out).to_json()
        log(f"edgetpu_compiler: {compiler['summary']}")

    fine_tuned = config.method == "qat" or bool(config.prune)
    predictors = {}
    if fine_tuned:  # the targets compare float and int8 of the same fine-tuned weights; users also want their model's
        predictors[BEFORE_FINE_TUNING] = KerasPredictor(with_output_clip(load_keras_model(model_path)), scale, BEFORE_FINE_TUNING)
    predictors |= {
        "float keras": KerasPredictor(model, scale, "float keras"),
        "float tflite": with_tiling(tflite.TFLitePredictor(floats["float32"], "float tflite", scale, config.threads), None),
        "float16 tflite": with_tiling(tflite.TFLitePredictor(floats["float16"], "float16 tflite", scale, config.threads), None),
    }
    if config.method == "qat":  # the fake-quantized model QAT trained: its int8 export should score the same
        predictors[QAT_KERAS] = KerasPredictor(int8_model, scale, QAT_KERAS)
    predictors["int8 tflite"] = with_tiling(tflite.TFLitePredictor(int8_bytes, "int8 tflite", scale, config.threads), None)
    scores = {}
    for label, predictor in predictors.items():
        for bench in benches:
            log(f"evaluating {label} on {bench.name} x{scale}")
            scores.setdefault(label, {})[bench.name] = evaluate_set(predictor, bench).to_json()

    def drops_from(reference: str) -> dict[str, float]:
        return {b.name: scores[reference][b.name]["psnr_y"] - scores["int8 tflite"][b.name]["psnr_y"] for b in benches}

    summary = {
        "model": str(model_path),
        "out": str(out),
        "config": asdict(config),
        "scale": scale,
        "input_hw": list(input_hw) if input_hw else None,
        "float_exports": {mode: str(path) for mode, path in float_paths.items()},
        "sizes": {f"{kind} tflite": {"raw": len(data), "gzip": tflite.gzip_size(data)}
                  for kind, data in [*floats.items(), ("int8", int8_bytes)]},  # fmt: skip
        "kernel_sparsity": sparsity,
        "fine_tuning": {"steps": steps, "batch": config.batch, "data": streamed_from or f"{len(pairs.lr)} patches of {calib_dir}",
                        "log": str(fine_tuning_log)} if fine_tuned else None,
        "folded_residuals": preparation and preparation.folded,
        "split_convs": preparation and preparation.split,
        "equalization": preparation and preparation.equalization,
        "weight_reconstruction": reconstruction and asdict(reconstruction),
        "activation_ranges": ranges,
        "concat_inputs_requantized": [asdict(r) for r in requantized],
        "audit": {**audit.to_json(), "summary": audit.summary()},
        "edgetpu_compiler": compiler,
        "scores": {m: {d: {k: v for k, v in s.items() if k != "per_image"} for d, s in per.items()} for m, per in scores.items()},
        "drop_db": drops_from("float keras"),
        "drop_from_model_before_fine_tuning_db": drops_from(BEFORE_FINE_TUNING) if fine_tuned else None,
        "seconds": round(time.time() - started, 1),
    }
    result = QuantizeResult(out, summary)
    write_json(out.with_suffix(".json"), summary)
    write_text_atomic(out.with_suffix(".txt"), result.table() + "\n")
    return result

