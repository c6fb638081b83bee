"""`cli.py train`: a registered model trained with its paper's recipe on streamed patches, resumable.

Run folder (``saved_models/MODEL_xS`` or --out): ``model.keras`` (best by validation Y-PSNR, written atomically),
``config.json`` (the resolved settings), ``metrics.json`` (steps, best and last scores, skipped files),
``logs/`` (CSV log, TensorBoard), ``backup/`` (BackupAndRestore: weights, optimizer state, epoch and step).
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipelines.report import write_json
from tfsr.errors import TfsrError

DEFAULT_STEPS_PER_EPOCH = 1000  # the papers' "epoch" of 1000 iterations
DEFAULT_VAL = ("../shared/data/Set5", "Set5")  # a folder, then a set name under the data root


@dataclass
class TrainConfig:
    model: str
    scale: int = 4
    data: str = "div2k"  # a folder (DIV2K layout, HR/ + LR/, or any images), "div2k", or "tfds:div2k"
    data_root: str | None = None  # where "div2k" and set names live (default $TFSR_DATA or ./data)
    steps: int | None = None  # total iterations (default: the recipe's)
    epochs: int | None = None
    steps_per_epoch: int | None = None
    batch_size: int | None = None
    patch_size: int | None = None  # LR patch side
    lr: float | None = None
    loss: str | None = None
    resume: bool = True
    out: str | None = None
    mixed_precision: bool = False
    xla: bool = False
    strategy: str = "default"
    val_data: str | None = None  # "none" disables validation
    seed: int = 0
    crops_per_image: int = 16
    cache: str = "memory"
    lr_cache: str | None = None
    backup_every: int = 100
    time_budget: float | None = None  # seconds of wall-clock training, then stop (benchmarks)
    model_options: dict = field(default_factory=dict)
    verbose: int = 1  # Keras progress bar (0: none)


@dataclass
class TrainResult:
    out: Path
    metrics: dict


def _resolved(config: TrainConfig, recipe) -> dict:
    given = (("--steps", config.steps), ("--epochs", config.epochs), ("--steps-per-epoch", config.steps_per_epoch),
             ("--batch-size", config.batch_size), ("--patch-size", config.patch_size),
             ("--crops-per-image", config.crops_per_image), ("--backup-every", config.backup_every))  # fmt: skip
    for name, value in given:
        if value is not None and value < 1:
            raise TfsrError(f"{name} must be at least 1, not {value}")
    if config.lr is not None and not config.lr > 0:
        raise TfsrError(f"--lr must be positive, not {config.lr}")
    if config.steps is not None and config.epochs is not None:
        raise TfsrError("pass --steps or --epochs, not both")
    batch = config.batch_size or recipe.batch_size
    patch = config.patch_size or recipe.lr_patch
    per_epoch = config.steps_per_epoch or DEFAULT_STEPS_PER_EPOCH
    if config.epochs is not None:
        total = config.epochs * per_epoch
    else:
        total = config.steps or recipe.iterations
        per_epoch = min(per_epoch, total)
    return {
        "batch_size": batch,
        "lr_patch": patch,
        "hr_patch": patch * config.scale,
        "learning_rate": config.lr or recipe.learning_rate,
        "loss": config.loss or recipe.loss,
        "steps_per_epoch": per_epoch,
        "epochs": math.ceil(total / per_epoch),
        "total_steps": math.ceil(total / per_epoch) * per_epoch,
        "halve_every": recipe.halve_every,
        "augment": recipe.augment,
        "adam_betas": list(recipe.adam_betas),
        "adam_epsilon": recipe.adam_epsilon,
    }


def _data_root(data_root: str | None) -> Path:
    from tfsr.data.benchmark import DEFAULT_DATA_ROOT_ENV

    return Path(data_root or os.environ.get(DEFAULT_DATA_ROOT_ENV) or "data")


def training_pairs(data: str, scale: int, lr_patch: int, skips, log, data_root: str | None = None,
                   lr_cache: str | None = None):  # fmt: skip
    """(decoded pairs dataset, description) for a ``--data`` value: "div2k" (downloaded when absent), a folder,
    or "tfds:NAME". Also what ``quantize --train-data`` fine-tunes on."""
    from tfsr.data.patches import decoded_pairs
    from tfsr.data.sources import find_source
    from tfsr.keras import tf

    if data.startswith("tfds:"):
        from tfsr.data.tfds_source import tfds_pairs

        pairs, described = tfds_pairs(data[len("tfds:"):], scale, lr_patch)
    else:
        if data == "div2k":
            from tfsr.data.download import ensure_div2k

            root = ensure_div2k(_data_root(data_root) / "DIV2K", scale, log=log)
        else:
            root = Path(data)
        source = find_source(root, scale, lr_cache=lr_cache)
        pairs, described = decoded_pairs(source, lr_patch, skips), source.describe()
    try:
        next(iter(pairs.take(1)))  # fails fast when no file is usable (not through the cache: it would warn)
    except (StopIteration, tf.errors.OutOfRangeError):
        raise TfsrError(f"no usable training image in {described}: {len(skips.skipped)} skipped "
                        f"(each needs an HR side of at least {lr_patch * scale} pixels)") from None  # fmt: skip
    return pairs, described


def _validation_set(config: TrainConfig):
    from tfsr.data.benchmark import load_benchmark, resolve_data

    if config.val_data == "none":
        return None
    if config.val_data:
        return load_benchmark(resolve_data(config.val_data, config.data_root), config.scale)
    folder = Path(DEFAULT_VAL[0]) if Path(DEFAULT_VAL[0]).is_dir() else _data_root(config.data_root) / DEFAULT_VAL[1]
    return load_benchmark(folder, config.scale) if folder.is_dir() else None


def _prepare_out(config: TrainConfig) -> Path:
    out = Path(config.out or Path("saved_models") / f"{config.model}_x{config.scale}")
    if not config.resume and out.exists():
        for name in ("backup", "logs", "model.keras", "metrics.json", "config.json"):
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _previous_best(out: Path) -> dict | None:
    try:
        return json.loads((out / "metrics.json").read_text()).get("best")
    except (OSError, ValueError):
        return None


def _compile_model(config: TrainConfig, spec, settings: dict, strategy):
    """The compiled training model and a function giving the inference model with its current weights.

    Models with a ``training_outputs`` option (HFDN's multi-supervision) train every SR output (Keras applies
    the loss to each); the saved model is the plain build, its weights copied by layer name.
    """
    from tfsr.keras import keras
    from tfsr.registry import build_model
    from tfsr.training.losses import get_loss

    multi_output = "training_outputs" in spec.options()
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        with strategy.scope():
            options = dict(config.model_options)
            model = build_model(config.model, config.scale, **options, **({"training_outputs": True} if multi_output else {}))
            inference = build_model(config.model, config.scale, **options) if multi_output else model
            schedule = (
                keras.optimizers.schedules.ExponentialDecay(settings["learning_rate"], settings["halve_every"], 0.5, staircase=True)
                if settings["halve_every"] else settings["learning_rate"]
            )  # fmt: skip
            optimizer = keras.optimizers.Adam(schedule, *settings["adam_betas"], epsilon=settings["adam_epsilon"])
            model.compile(optimizer=optimizer, loss=get_loss(settings["loss"]), jit_compile=config.xla)
    finally:
        keras.mixed_precision.set_global_policy("float32")

    def inference_model():
        if inference is not model:
            for layer in inference.layers:
                if layer.weights:
                    layer.set_weights(model.get_layer(layer.name).get_weights())
        return inference

    return model, inference_model


def _check_resumable(out: Path, settings: dict) -> None:
    """A backup maps steps to (epoch, batch): resuming needs the same steps per epoch and batch size."""
    try:
        before = json.loads((out / "config.json").read_text())["resolved"]
    except (OSError, ValueError, KeyError):
        return
    for key, option in (("steps_per_epoch", "--steps-per-epoch"), ("batch_size", "--batch-size")):
        if before.get(key) != settings[key]:
            raise TfsrError(f"{out} was trained with {option} {before.get(key)}, not {settings[key]}: "
                            f"resume with the same value, or pass --fresh to start over")  # fmt: skip


def run(config: TrainConfig, log=lambda msg: print(msg, file=sys.stderr)) -> TrainResult:
    from tfsr.training.distribute import is_chief, make_strategy

    strategy = make_strategy(config.strategy)  # before any TensorFlow op (MultiWorkerMirrored requires it)

    from tfsr.data.patches import PatchConfig, patch_dataset
    from tfsr.data.sources import SkipLog
    from tfsr.keras import keras, tf
    from tfsr.registry import get_spec
    from tfsr.training import callbacks as cb
    from tfsr.training.losses import check_loss

    spec = get_spec(config.model)
    settings = _resolved(config, spec.recipe)
    check_loss(settings["loss"])
    chief = is_chief()
    skips = SkipLog(warn=log)
    pairs, described = training_pairs(config.data, config.scale, settings["lr_patch"], skips, log, config.data_root,
                                       config.lr_cache)  # fmt: skip
    bench = _validation_set(config)
    out = _prepare_out(config)  # only once the data is known to be usable: a failed start leaves no folder
    if cb.backed_up_step(out / "backup") is not None:
        _check_resumable(out, settings)
    # Under MultiWorkerMirrored every worker must validate and save (saving runs collective ops); non-chief
    # workers write into a temporary folder that is removed at the end. The backup folder must be shared.
    work = out if chief else Path(tempfile.mkdtemp(prefix="tfsr-worker-"))
    log(f"training {config.model} x{config.scale} on {described}")
    if strategy.num_replicas_in_sync > 1:
        log(f"strategy {config.strategy}: each batch of {settings['batch_size']} split over {strategy.num_replicas_in_sync} replicas")
    log(f"validation: {f'{bench.name} ({len(bench.images)} images)' if bench else 'none (the last model is kept)'}")

    model, inference_model = _compile_model(config, spec, settings, strategy)
    resumed_from = cb.backed_up_step(out / "backup")
    patch_config = PatchConfig(settings["lr_patch"], settings["batch_size"], config.crops_per_image, config.seed,
                               settings["augment"], cache=config.cache, num_outputs=len(model.outputs),
                               start_step=resumed_from or 0)  # fmt: skip
    dataset = patch_dataset(pairs, config.scale, patch_config)
    sharding = tf.data.Options()
    sharding.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = dataset.with_options(sharding)

    resolved = {"config": asdict(config), "resolved": settings, "data": described,
                "validation": bench.name if bench else None, "recipe_source": spec.recipe.source}  # fmt: skip
    if chief:
        write_json(out / "config.json", resolved)
    best_before = _previous_best(out)
    best_record: dict = dict(best_before or {})

    def on_best(epoch, logs):
        best_record.update(epoch=epoch + 1, step=int(model.optimizer.iterations.numpy()),
                           psnr_y=logs.get("val_psnr_y"), ssim_y=logs.get("val_ssim_y"))  # fmt: skip

    tensorboard = importlib.util.find_spec("tensorboard") is not None  # TF does not require it
    if chief and not tensorboard:
        log("TensorBoard is not installed: no TensorBoard logs (pip install tensorboard); the CSV log is kept")
    if resumed_from is not None:
        log(f"resuming from the backup at step {resumed_from} (--fresh starts over)")
    nan_stop = cb.StopOnNonFiniteLoss()
    callbacks = [nan_stop]
    if bench is not None:
        callbacks.append(cb.Validation(bench, inference_model, work / "logs" / "validation" if tensorboard else None, log=log))
    best_value = (best_before or {}).get("psnr_y") or -math.inf
    callbacks.append(cb.BestModelSaver(work / "model.keras", inference_model, best_value, on_best))
    callbacks.append(cb.GuardedBackupAndRestore(str(out / "backup"), save_freq=config.backup_every, delete_checkpoint=False))
    if chief:
        callbacks.append(keras.callbacks.CSVLogger(str(out / "logs" / "train.csv"), append=True))
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(str(work / "logs"), update_freq=min(100, settings["steps_per_epoch"])))
    if config.time_budget:
        callbacks.append(cb.TimeBudget(config.time_budget))
    callbacks.append(cb.Progress(settings["total_steps"], log=log, time_budget=config.time_budget))
    (out / "logs").mkdir(parents=True, exist_ok=True)

    started = time.monotonic()
    history = model.fit(dataset, epochs=settings["epochs"], steps_per_epoch=settings["steps_per_epoch"],
                        callbacks=callbacks, verbose=config.verbose)  # fmt: skip
    elapsed = time.monotonic() - started
    steps = int(model.optimizer.iterations.numpy())
    epochs_run = len(history.epoch)
    metrics = {
        "model": config.model,
        "scale": config.scale,
        "steps": steps,
        "total_steps": settings["total_steps"],
        "finished": steps >= settings["total_steps"] and nan_stop.stopped_at_step is None,
        "resumed_from_step": resumed_from,
        "seconds_this_run": round(elapsed, 1),
        "epochs_this_run": epochs_run,
        "best": best_record or None,
        "last": {k: float(v[-1]) for k, v in history.history.items() if v},
        "validation": bench.name if bench else None,
        "skipped_files": dict(skips.skipped),
        "stopped_on_non_finite_loss_at_step": nan_stop.stopped_at_step,
    }
    if chief:
        write_json(out / "metrics.json", metrics)
    else:
        shutil.rmtree(work, ignore_errors=True)
    log(f"{steps} steps done ({epochs_run} epochs in this run, {elapsed:.0f} s); {len(skips.skipped)} files skipped")
    if nan_stop.stopped_at_step is not None:
        kept = (f"kept {out / 'model.keras'} from step {best_record.get('step')}" if (out / "model.keras").is_file()
                else "no model had been saved yet")  # fmt: skip
        raise TfsrError(
            f"training stopped: the loss became NaN or infinite at step {nan_stop.stopped_at_step}; {kept}; "
            f"lower --lr or check the data, then resume (the backup holds the last finite state)"
        )
    if chief and best_record:
        score = f", {best_record['psnr_y']:.2f} dB" if best_record.get("psnr_y") is not None else ""
        log(f"best model: {out / 'model.keras'} (epoch {best_record['epoch']}{score})")
    return TrainResult(out, metrics)
