"""DIV2K through tensorflow-datasets, used only when that package is installed (no hard dependency)."""
from __future__ import annotations

from tfsr.errors import TfsrError
from tfsr.keras import tf


def tfds_pairs(name: str, scale: int, lr_patch: int):
    """(LR, HR) uint8 pairs of tfds ``div2k/bicubic_x{scale}`` (train split), and a description."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise TfsrError("--data tfds:... needs tensorflow-datasets (pip install tensorflow-datasets), "
                        "or use --data div2k / a folder") from None  # fmt: skip
    if name != "div2k":
        raise TfsrError(f"tensorflow-datasets source {name!r} is not supported; use tfds:div2k")
    config_name = f"div2k/bicubic_x{scale}"
    ds = tfds.load(config_name, split="train", shuffle_files=False)

    def aligned(example):
        lr = example["lr"]
        return lr, example["hr"][: scale * tf.shape(lr)[0], : scale * tf.shape(lr)[1]]

    pairs = ds.map(aligned).filter(lambda lr, hr: tf.reduce_min(tf.shape(lr)[:2]) >= lr_patch)
    return pairs, f"tensorflow-datasets {config_name} (train)"
