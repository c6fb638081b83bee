"""A training run SIGKILLed at random points resumes from its last backup with its step count and optimizer state."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from tfsr.imresize import imresize

from conftest import ROOT

TOTAL_STEPS = 40
STEPS_PER_EPOCH = 10


def _wait_for_backup_after(backup, step, proc, timeout=180):
    from tfsr.training.callbacks import backed_up_step

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = backed_up_step(backup)
        if current is not None and current > step:
            return current
        if proc.poll() is not None:
            pytest.fail(f"training exited ({proc.returncode}) before a new backup: {proc.stderr.read()[-2000:]}")
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"no backup after step {step} within {timeout} s")


@pytest.mark.fault
@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_finishes_with_state_intact(tmp_path, rng):
    from tfsr.keras import keras, tf
    from tfsr.predictors import load_keras_model
    from tfsr.registry import build_model
    from tfsr.training.callbacks import GuardedBackupAndRestore, backed_up_step
    from tfsr.training.losses import l1

    data = tmp_path / "train"
    data.mkdir()
    for i in range(2):
        Image.fromarray(imresize(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8), 4)).save(data / f"t{i}.png")
    out, backup = tmp_path / "run", tmp_path / "run" / "backup"
    cmd = [sys.executable, "cli.py", "train", "slwsr16", "--scale", "2", "--data", str(data), "--steps", str(TOTAL_STEPS),
           "--steps-per-epoch", str(STEPS_PER_EPOCH), "--batch-size", "2", "--patch-size", "12", "--backup-every", "1",
           "--crops-per-image", "4", "--val-data", "none", "--out", str(out)]  # fmt: skip
    env = {**os.environ, "TFSR_CACHE": str(tmp_path / "cache")}
    seed = random.randrange(1 << 30)
    pick = random.Random(seed)
    steps = [0]
    for _ in range(2):
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _wait_for_backup_after(backup, steps[-1], proc)
        time.sleep(pick.uniform(0.0, 0.6))  # a random point in the stream of steps and backups
        assert proc.poll() is None, f"run finished before its SIGKILL (seed {seed})"
        proc.kill()  # SIGKILL: no cleanup code runs
        proc.wait()
        steps.append(backed_up_step(backup))
        assert steps[-1] > steps[-2], f"no progress between kills (seed {seed}): {steps}"
    assert steps[-1] < TOTAL_STEPS

    # What a resume restores: the step count and Adam's moments as backed up, not a fresh optimizer.
    model = build_model("slwsr16", 2)
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(1e-4, 200_000, 0.5, staircase=True)), loss=l1)
    restore = GuardedBackupAndRestore(str(backup), save_freq=1, delete_checkpoint=False)
    restore.set_model(model)
    restore.on_train_begin()
    assert int(model.optimizer.iterations.numpy()) == steps[-1]
    reader = tf.train.load_checkpoint(str(backup / "chief"))
    moments = [v for v in model.optimizer.variables if "/m/" in v.name or v.name.startswith("m/")]
    assert moments and all(np.abs(v.numpy()).sum() > 0 for v in moments)
    saved = {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if k.startswith("model/optimizer/_variables/")}
    matched = sum(any(t.shape == v.shape and np.array_equal(t, v.numpy()) for t in saved.values()) for v in moments)
    assert matched == len(moments)

    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resuming from the backup at step {steps[-1]}" in done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == TOTAL_STEPS and metrics["resumed_from_step"] == steps[-1] and metrics["finished"]
    final = load_keras_model(out / "model.keras")
    assert all(np.isfinite(w).all() for w in final.get_weights())
