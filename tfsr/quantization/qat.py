"""Quantization-aware fine-tuning: calibrate the fake-quant ranges first, then train with Adam.

tfmot's activation ranges start at [-6, 6] and follow the data with an EMA of decay 0.999, so a few hundred
steps leave them far from the real ranges (a QAT model exported after 200 steps agrees with its Keras self at
only ~31 dB). :func:`calibrate_ranges` runs forward passes in training mode with a fast EMA instead, until the
ranges stop moving or a cap of passes (each range also depends on the fake-quantized tensors upstream, so some
keep moving by a few per cent), before any weight is updated. :func:`mse_ranges` then replaces them with PTQ's
MSE-optimal ranges (``tfsr.quantization.ranges``), which fine-tuning keeps (``fine_tune(freeze_ranges=True)``):
E-RFDN with the official weights exports at 31.83 dB on Set5 x4 with no training at all, against 31.00 with
the moving-average ranges (float 32.16).
"""
from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from tensorflow_model_optimization.python.core.quantization.keras import quant_ops

from tfsr.errors import TfsrError
from tfsr.keras import keras, tf
from tfsr.quantization.data import PatchPairs

RANGE_SUFFIXES = ("_min:0", "_max:0")


@contextlib.contextmanager
def fast_range_ema(decay: float, record: Callable[[object, np.ndarray], None] | None = None):
    """Make tfmot's moving-average quantizers use ``decay`` (they hard-code 0.999) while the block runs; with
    ``record``, also call ``record(min_var, values)`` with every tensor they see in training mode (eager passes)."""
    original = quant_ops.MovingAvgQuantize

    def patched(inputs, min_var, max_var, *args, **kwargs):
        if record is not None and kwargs.get("is_training", True):
            record(min_var, inputs.numpy())
        kwargs["ema_decay"] = decay
        return original(inputs, min_var, max_var, *args, **kwargs)

    quant_ops.MovingAvgQuantize = patched
    try:
        yield
    finally:
        quant_ops.MovingAvgQuantize = original


def range_variables(qmodel) -> list:
    """Every activation-range variable of a QAT model (weight ranges are recomputed from the weights)."""
    return [v for v in qmodel.non_trainable_weights if v.name.endswith(RANGE_SUFFIXES) and "kernel" not in v.name
            and "depthwise" not in v.name]  # fmt: skip


@dataclass
class RangeCalibration:
    passes: int
    final_change: float  # largest relative change of any range in the last pass


def calibrate_ranges(qmodel, lr_patches: np.ndarray, batch: int = 8, passes: int = 30, decay: float = 0.8,
                     tolerance: float = 1e-3) -> RangeCalibration:  # fmt: skip
    """Set the activation ranges from the data: the first pass takes each batch's range as is (decay 0), later
    passes average with ``decay`` until no range moves more than ``tolerance`` (relative)."""
    variables = range_variables(qmodel)
    change = float("inf")
    for p in range(passes):
        before = [v.numpy().copy() for v in variables]
        with fast_range_ema(0.0 if p == 0 else decay):
            for start in range(0, len(lr_patches), batch):
                qmodel(tf.constant(lr_patches[start : start + batch]), training=True)
        after = [v.numpy() for v in variables]
        change = max(float(np.max(np.abs(a - b) / (np.abs(b) + 1.0))) for a, b in zip(after, before))
        if p > 0 and change < tolerance:
            return RangeCalibration(p + 1, change)
    return RangeCalibration(passes, change)


def mse_ranges(qmodel, lr_patches: np.ndarray, batch: int = 8) -> int:
    """Set each activation range of ``qmodel`` to the MSE-optimal one of PTQ (``tfsr.quantization.ranges``)
    over ``lr_patches``: one pass for each tensor's min/max, one for its histogram. The model input's range
    (tfmot's QuantizeLayer, not a moving average) stays as calibrated. Returns the number of ranges set."""
    from tfsr.quantization.ranges import BINS, mse_range

    extremes: dict[str, list] = {}
    hists: dict[str, np.ndarray] = {}

    def track(min_var, values):
        lo, hi = float(values.min()), float(values.max())
        seen = extremes.setdefault(min_var.name, [lo, hi])
        seen[0], seen[1] = min(seen[0], lo), max(seen[1], hi)

    def count(min_var, values):
        lo, hi = extremes[min_var.name]
        if hi > lo:
            hists.setdefault(min_var.name, np.zeros(BINS, np.int64))
            hists[min_var.name] += np.histogram(values, BINS, (lo, hi))[0]

    for record in (track, count):
        with fast_range_ema(1.0, record):  # decay 1: the ranges stay as they are while recorded
            for start in range(0, len(lr_patches), batch):
                qmodel(tf.constant(lr_patches[start : start + batch]), training=True)
    by_name = {v.name: v for v in range_variables(qmodel)}
    for name, (lo, hi) in extremes.items():
        new_lo, new_hi = mse_range(hists[name], lo, hi) if name in hists else (min(lo, 0.0), max(hi, 0.0))
        by_name[name].assign(new_lo)
        by_name[name[: -len("_min:0")] + "_max:0"].assign(new_hi)
    return len(extremes)


def distillation_pairs(model, lr_patches: np.ndarray, batch: int = 16) -> PatchPairs:
    """(LR, the float ``model``'s own output) pairs: fine-tuning on them teaches the fake-quantized model to match
    its float self, where HR targets would also retrain the float weights on the (small) fine-tuning set."""
    return PatchPairs(lr_patches, model.predict(lr_patches, batch_size=batch, verbose=0))


LOSSES = {"l1": "mean_absolute_error", "l2": "mean_squared_error"}
# The loss for each kind of target: towards its float self the int8 model is scored by PSNR, i.e. L2; towards HR
# patches L1 is the papers' training loss.
TARGET_LOSSES = {"float": "l2", "hr": "l1"}


def pairs_dataset(pairs: PatchPairs, batch: int, seed: int = 0) -> tf.data.Dataset:
    """Endless random batches of in-memory (LR, target) pairs."""
    return (
        tf.data.Dataset.from_tensor_slices((pairs.lr, pairs.hr))
        .shuffle(len(pairs.lr), seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(min(batch, len(pairs.lr)), drop_remainder=True)
    )


class Distillation(keras.Model):
    """Trains ``student`` towards ``teacher``'s outputs on the LR images of each batch (the batch's targets are
    ignored): distillation for streamed patches, whose float outputs cannot be computed ahead."""

    def __init__(self, student, teacher):
        super().__init__()
        self.student, self.teacher = student, teacher
        self.build(student.input_shape)  # BackupAndRestore warns about an unbuilt model

    @property
    def trainable_weights(self):  # the teacher stays as it is: no optimizer slots for its weights
        return self.student.trainable_weights

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    def train_step(self, data):
        lr = data[0]
        target = self.teacher(lr, training=False)
        with tf.GradientTape() as tape:
            loss = self.compiled_loss(target, self.student(lr, training=True), regularization_losses=self.student.losses)
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return {"loss": loss}


class FineTuningDiverged(TfsrError):
    def __init__(self, step: int):
        super().__init__(f"fine-tuning stopped: the loss became NaN or infinite at step {step}: lower --lr or check "
                         f"the fine-tuning images")  # fmt: skip
        self.step = step


def fine_tune(qmodel, data: PatchPairs | tf.data.Dataset, steps: int, batch: int = 16, learning_rate: float = 1e-5,
              seed: int = 0, callbacks=(), log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
              freeze_ranges: bool = False, loss: str = "l1", cosine: bool = False, teacher=None,
              backup_dir: str | Path | None = None, backup_every: int = 100) -> list[float]:  # fmt: skip
    """``steps`` Adam steps on ``loss`` (LOSSES); returns the loss per logged step. ``data``: in-memory pairs
    (random batches of ``batch``) or a dataset of (LR, target) batches, e.g. the training pipeline's stream;
    with ``teacher``, the targets are ``teacher``'s outputs instead. ``cosine``: the learning rate decays from
    ``learning_rate`` to 0 over the steps. ``freeze_ranges``: the activation ranges stay as they are (set by
    :func:`mse_ranges`) instead of following tfmot's moving averages of each batch's min/max, which drift
    towards ranges that clip nothing. ``backup_dir``: weights, optimizer state and step are backed up there
    every ``backup_every`` steps, and a call that finds a backup resumes from it (as training does); the backup
    is removed when the steps are done. Raises :class:`FineTuningDiverged` on a NaN or infinite loss."""
    from tfsr.training.callbacks import GuardedBackupAndRestore, StopOnNonFiniteLoss

    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {tuple(LOSSES)}, not {loss!r}")
    rate = keras.optimizers.schedules.CosineDecay(learning_rate, steps) if cosine else learning_rate
    trained = qmodel if teacher is None else Distillation(qmodel, teacher)
    trained.compile(optimizer=keras.optimizers.Adam(rate), loss=LOSSES[loss])
    dataset = pairs_dataset(data, batch, seed) if isinstance(data, PatchPairs) else data
    every = max(1, steps // 10)
    diverged = StopOnNonFiniteLoss()
    if backup_dir is not None:
        callbacks = [*callbacks, GuardedBackupAndRestore(str(backup_dir), save_freq=backup_every, delete_checkpoint=True)]
    callbacks = [_RecordLearningRate(), *callbacks, diverged, _ProgressLog(every, steps, loss.upper(), log)]
    with fast_range_ema(1.0) if freeze_ranges else contextlib.nullcontext():  # in effect when fit traces the step
        history = trained.fit(dataset, steps_per_epoch=every, epochs=-(-steps // every), verbose=0, callbacks=callbacks)
    if diverged.stopped_at_step is not None:
        raise FineTuningDiverged(diverged.stopped_at_step)
    return [float(v) for v in history.history["loss"]]


class _RecordLearningRate(keras.callbacks.Callback):
    """First of the callbacks, so that those after it (the CSV log, the progress log) see the learning rate of
    the step just taken (the optimizer keeps a schedule's value from its last update)."""

    def on_epoch_end(self, epoch, logs=None):
        logs["lr"] = float(self.model.optimizer.learning_rate)


class _ProgressLog(keras.callbacks.Callback):
    def __init__(self, every: int, steps: int, loss_name: str, log):
        super().__init__()
        self.every, self.steps, self.loss_name, self.log = every, steps, loss_name, log

    def on_epoch_end(self, epoch, logs=None):
        self.log(f"fine-tuning step {min((epoch + 1) * self.every, self.steps)}/{self.steps}: {self.loss_name} "
                 f"{logs['loss']:.3f}, lr {logs['lr']:.2g}")  # fmt: skip


def copy_float_weights(qmodel, model) -> None:
    """Put the QAT-trained float weights back into the float ``model`` (same architecture), so that float and
    int8 scores compare the same weights."""
    wrappers = {layer.layer.name: layer for layer in qmodel.layers if hasattr(layer, "layer")}
    for layer in model.layers:
        if layer.weights and layer.name in wrappers:
            # The wrapper owns the variables (the inner layer sees fake-quantized copies); match them by name.
            trained = {v.name.split("/")[-1]: v for v in wrappers[layer.name].weights}
            layer.set_weights([trained[w.name.split("/")[-1]].numpy() for w in layer.weights])
