"""tf.distribute strategies by name. MultiWorkerMirrored reads the cluster from TF_CONFIG and, as TensorFlow
requires, must be created before the process runs any TensorFlow op: create it before importing tfsr.keras."""
from __future__ import annotations

import json
import os

from tfsr.errors import TfsrError, first_line

STRATEGIES = ("default", "mirrored", "multiworker", "tpu")


def make_strategy(name: str):
    if name == "multiworker":
        return _multiworker()
    from tfsr.keras import tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        # Every GPU; without one, every logical CPU (one unless the process split its CPU into several, as a
        # test does to run the replicated code path without a GPU).
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as exc:
            raise TfsrError(f"--strategy tpu: no TPU found ({first_line(exc)})") from None
        return tf.distribute.TPUStrategy(resolver)
    raise TfsrError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def is_chief() -> bool:
    """True except on non-chief workers of a TF_CONFIG cluster (worker 0 is chief when there is no 'chief')."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task", {})
    if not task:
        return True
    if "chief" in config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0


def _multiworker():
    if "TF_CONFIG" not in os.environ:
        raise TfsrError("--strategy multiworker needs TF_CONFIG (the cluster and this worker's task) in the environment")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # as tfsr.keras does: TensorFlow loads here first
    import tensorflow as tf  # not through tfsr.keras, whose import runs an op

    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as exc:
        raise TfsrError(f"cannot start MultiWorkerMirroredStrategy: {exc} (start the training in a fresh process)") from None
