"""Callbacks that stock Keras lacks: validation in the papers' convention, an atomic best-model saver,
a backup that never stores a diverged state, and a NaN/Inf stop that reports where it happened."""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np

from tfsr.atomic import save_model_atomic
from tfsr.data.benchmark import BenchmarkSet
from tfsr.evaluation import evaluate_set
from tfsr.keras import keras, tf
from tfsr.predictors import KerasPredictor


def _finite(logs) -> bool:
    loss = (logs or {}).get("loss")
    return loss is None or math.isfinite(float(loss))


class Validation(keras.callbacks.Callback):
    """Y-PSNR / Y-SSIM of the inference model on full benchmark images, into ``logs`` as val_psnr_y/val_ssim_y.

    Uses tfsr.evaluation.evaluate_set, so the numbers are the papers' (uint8-rounded SR, Y, ``scale`` shaved).
    SR/HR pairs of the first ``image_count`` images go to TensorBoard.
    """

    def __init__(self, bench: BenchmarkSet, inference_model: Callable[[], object], log_dir: str | Path | None,
                 image_count: int = 2, log: Callable[[str], None] = print):  # fmt: skip
        super().__init__()
        self.bench, self.inference_model, self.image_count, self.log = bench, inference_model, image_count, log
        self.writer = tf.summary.create_file_writer(str(log_dir)) if log_dir else None

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or not _finite(logs):
            return
        predictor = KerasPredictor(self.inference_model(), self.bench.scale, "training")
        shown: dict[str, np.ndarray] = {}
        keep = {im.name for im in self.bench.images[: self.image_count]}
        score = evaluate_set(predictor, self.bench, on_image=lambda n, sr: shown.update({n: sr}) if n in keep else None)
        logs["val_psnr_y"], logs["val_ssim_y"] = score.psnr_y, score.ssim_y
        if self.writer is not None:
            step = int(self.model.optimizer.iterations.numpy())
            with self.writer.as_default(step=step):
                tf.summary.scalar("val_psnr_y", score.psnr_y)
                tf.summary.scalar("val_ssim_y", score.ssim_y)
                for image in self.bench.images[: self.image_count]:
                    sr = np.clip(np.round(shown[image.name]), 0, 255).astype(np.uint8)
                    tf.summary.image(f"{image.name}/sr_hr", np.concatenate([sr, image.hr], axis=1)[None])
            self.writer.flush()


class BestModelSaver(keras.callbacks.Callback):
    """Keeps the inference model with the highest ``monitor`` (atomically); remembers the best across resumes.

    Without validation (no ``monitor`` in the logs) it keeps the latest model whose loss is finite.
    """

    def __init__(self, path: str | Path, inference_model: Callable[[], object], best: float = -math.inf,
                 on_best: Callable[[int, dict], None] | None = None, monitor: str = "val_psnr_y"):  # fmt: skip
        super().__init__()
        self.path, self.inference_model, self.best, self.on_best, self.monitor = Path(path), inference_model, best, on_best, monitor

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if not _finite(logs) or (value is not None and value <= self.best):
            return
        self.best = self.best if value is None else value
        save_model_atomic(self.inference_model(), self.path)
        if self.on_best is not None:
            self.on_best(epoch, dict(logs))


class GuardedBackupAndRestore(keras.callbacks.BackupAndRestore):
    """BackupAndRestore (weights, optimizer state, epoch and step) every ``save_freq`` steps and at every epoch
    end (so a finished run can be extended), that never backs up a diverged state."""

    def on_train_batch_end(self, batch, logs=None):
        if _finite(logs):
            super().on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if _finite(logs):
            self._batches_count = 0
            self._backup(epoch=epoch)  # the saved batch is the epoch's last: a resume starts the next epoch


def backed_up_step(backup_dir: str | Path) -> int | None:
    """The optimizer step stored in a BackupAndRestore folder (None when there is no backup)."""
    folder = Path(backup_dir) / "chief"
    if tf.train.latest_checkpoint(str(folder)) is None:
        return None
    return int(tf.train.load_checkpoint(str(folder)).get_tensor("model/optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"))


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Like TerminateOnNaN (NaN or Inf), recording the step so the run summary can say what happened."""

    def __init__(self):
        super().__init__()
        self.stopped_at_step: int | None = None

    def on_train_batch_end(self, batch, logs=None):
        if not _finite(logs):
            self.stopped_at_step = int(self.model.optimizer.iterations.numpy())
            self.model.stop_training = True


class TimeBudget(keras.callbacks.Callback):
    """Stops training once ``seconds`` of wall-clock time have passed (fixed-budget benchmarks)."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds, self.deadline, self.stopped = seconds, None, False

    def on_train_begin(self, logs=None):
        self.deadline = time.monotonic() + self.seconds

    def on_train_batch_end(self, batch, logs=None):
        if time.monotonic() >= self.deadline:
            self.stopped = self.model.stop_training = True


class Progress(keras.callbacks.Callback):
    """One line per epoch with the validation score and the ETA of the whole run (Keras' bar covers the epoch)."""

    def __init__(self, total_steps: int, log: Callable[[str], None] = print, time_budget: float | None = None):
        super().__init__()
        self.total_steps, self.log, self.time_budget = total_steps, log, time_budget
        self.start_time = self.start_step = None

    def on_train_begin(self, logs=None):
        self.start_time, self.start_step = time.monotonic(), int(self.model.optimizer.iterations.numpy())

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        step = int(self.model.optimizer.iterations.numpy())
        rate = (step - self.start_step) / max(time.monotonic() - self.start_time, 1e-9)
        eta = (self.total_steps - step) / rate if rate > 0 else float("inf")
        if self.time_budget:
            eta = min(eta, max(0.0, self.start_time + self.time_budget - time.monotonic()))
        val = f", val {logs['val_psnr_y']:.2f} dB / {logs['val_ssim_y']:.4f}" if "val_psnr_y" in logs else ""
        self.log(f"epoch {epoch + 1}: step {step}/{self.total_steps}, loss {logs.get('loss', float('nan')):.5f}{val}, "
                 f"{rate:.2f} steps/s, ETA {_duration(eta)}")  # fmt: skip


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unknown"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
