"""Magnitude pruning with a polynomial sparsity schedule, stripped before quantization.

Only convolution kernels with at least MIN_PRUNED_WEIGHTS weights are pruned: the 3-channel mean-shift and
output convolutions hold almost nothing to save and everything to lose. Pruning-preserving QAT
(``configs.quantize_model(..., preserve_sparsity=True)``) then keeps the zeros through int8.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry
from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude

from tfsr.errors import TfsrError
from tfsr.keras import keras, tf
from tfsr.quantization.data import PatchPairs
from tfsr.quantization.qat import fine_tune

MIN_PRUNED_WEIGHTS = 1024


def check_sparsity(sparsity: float) -> float:
    if not 0.0 < sparsity < 1.0:
        raise TfsrError(f"--prune takes a target sparsity between 0 and 1 (e.g. 0.5), not {sparsity}")
    return sparsity


def _prunable(layer) -> bool:
    return PruneRegistry.supports(layer) and bool(layer.weights) and layer.weights[0].shape.num_elements() >= MIN_PRUNED_WEIGHTS


def prune(model: keras.Model, data: PatchPairs | tf.data.Dataset, sparsity: float, steps: int, batch: int = 16,
          log: Callable[[str], None] = lambda m: print(m, file=sys.stderr), csv_log: str | Path | None = None,
          backup_dir: str | Path | None = None) -> keras.Model:  # fmt: skip
    """Fine-tune ``steps`` Adam/L1 steps towards the HR patches of ``data`` while pruning to ``sparsity``, the
    loss of each logged step in ``csv_log``, backed up to (and resumed from) ``backup_dir`` (see
    ``qat.fine_tune``); returns the stripped (plain) model."""
    check_sparsity(sparsity)
    end = max(1, int(steps * 0.75))  # the last quarter trains at the final sparsity
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, sparsity, begin_step=0, end_step=end, frequency=max(1, end // 10))

    def clone(layer):
        copy = layer.__class__.from_config(layer.get_config())
        return tfmot.sparsity.keras.prune_low_magnitude(copy, pruning_schedule=schedule) if _prunable(layer) else copy

    pruned = keras.models.clone_model(model, clone_function=clone)
    for old, new in zip(model.layers, pruned.layers):
        (new.layer if isinstance(new, PruneLowMagnitude) else new).set_weights(old.get_weights())
    log(f"pruning to {sparsity:.0%} over {steps} steps ({sum(map(_prunable, model.layers))} conv layers)")
    callbacks = [tfmot.sparsity.keras.UpdatePruningStep()]
    callbacks += [keras.callbacks.CSVLogger(str(csv_log), append=True)] if csv_log else []
    fine_tune(pruned, data, steps, batch=batch, learning_rate=1e-4, callbacks=callbacks, log=log, backup_dir=backup_dir)
    return tfmot.sparsity.keras.strip_pruning(pruned)


def kernel_sparsity(model: keras.Model) -> float:
    """Fraction of zero weights over the kernels that pruning targets."""
    kernels = [layer.weights[0].numpy() for layer in model.layers if _prunable(layer)]
    if not kernels:
        return 0.0
    return float(sum((k == 0).sum() for k in kernels) / sum(k.size for k in kernels))
