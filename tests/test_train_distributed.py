"""Two MultiWorkerMirrored workers on 127.0.0.1 (subprocesses with TF_CONFIG) train a few steps together."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tfsr.imresize import imresize

from conftest import ROOT


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _train_args(tmp_path, rng, tiny_set, out, strategy: str) -> list[str]:
    """`train` arguments for 3 steps of slwsr16 x2 on two tiny images, validated on ``tiny_set``."""
    data = tmp_path / "train"
    data.mkdir()
    for i in range(2):
        Image.fromarray(imresize(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8), 4)).save(data / f"t{i}.png")
    return ["train", "slwsr16", "--scale", "2", "--data", str(data), "--steps", "3", "--steps-per-epoch", "3",
            "--batch-size", "4", "--patch-size", "12", "--crops-per-image", "4", "--strategy", strategy,
            "--val-data", str(tiny_set), "--out", str(out)]  # fmt: skip


@pytest.mark.slow
def test_two_multiworker_workers_train_and_only_the_chief_writes(tmp_path, rng, tiny_set):
    out = tmp_path / "run"
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    cmd = [sys.executable, "cli.py", *_train_args(tmp_path, rng, tiny_set, out, "multiworker")]
    workers = []
    for index in range(2):
        task = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(task), "TFSR_CACHE": str(tmp_path / "cache")}
        workers.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        results = [w.communicate(timeout=240) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    for w, (_, err) in zip(workers, results):
        assert w.returncode == 0, err[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["finished"] and metrics["best"]["psnr_y"] > 0
    assert sorted(p.name for p in (out / "backup").iterdir()) == ["chief"]  # worker 1's temporary backup is gone
    assert all("validation: Tiny (2 images)" in err for _, err in results)


@pytest.mark.slow
def test_mirrored_training_splits_each_batch_over_two_cpu_replicas(tmp_path, rng, tiny_set):
    out = tmp_path / "run"
    # Two logical CPUs stand in for two GPUs: they must exist before TensorFlow starts, hence a wrapper script.
    script = ("import os, sys; os.environ['TF_USE_LEGACY_KERAS'] = '1'; import tensorflow as tf; "
              "cpu = tf.config.list_physical_devices('CPU')[0]; "
              "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2); "
              "import cli; cli.cli(sys.argv[1:])")  # fmt: skip
    cmd = [sys.executable, "-c", script, *_train_args(tmp_path, rng, tiny_set, out, "mirrored")]
    env = {**os.environ, "TFSR_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "strategy mirrored: each batch of 4 split over 2 replicas" in done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["finished"] and metrics["best"]["psnr_y"] > 0
    assert (out / "model.keras").exists()
