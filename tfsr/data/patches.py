"""The training input pipeline: aligned random LR/HR patches streamed with tf.data.

Decoding a 2K PNG costs far more than a training step consumes, so each decoded pair is cached (in memory or in
a disk cache file) and serves ``crops_per_image`` crops per visit. Decoding runs in a parallel map; all
randomness (image order, crop positions, flips/rotations, patch order) derives from one seed (seeded shuffles,
stateless random ops keyed per image visit), so the stream is the same on every run with the same seed, whatever
the parallelism. A run resumed at step S streams a continuation seeded by (seed, S), so that it does not replay
the patches of its first steps (replaying the exact stream would need the cache and iterator in the backup).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfsr.data.sources import BadTrainingImage, ImageSource, SkipLog, load_pair
from tfsr.keras import tf

AUTOTUNE = tf.data.AUTOTUNE


# Recipe augmentation -> (random flips, random transpose). Flips plus a transpose give all 8 symmetries of the
# square, the same set as flips plus 90-degree rotations; LiteSRNet's recipe flips only (4 of them).
AUGMENTATIONS = {"flip+rot90": (True, True), "flip+transpose": (True, True), "flip": (True, False),
                 "none": (False, False)}  # fmt: skip


@dataclass(frozen=True)
class PatchConfig:
    lr_patch: int = 48
    batch_size: int = 16
    crops_per_image: int = 16
    seed: int = 0
    augment: str = "flip+rot90"  # a recipe's augmentation, one of AUGMENTATIONS
    cache: str = "memory"  # "memory", "none", or a file path prefix for tf.data's disk cache
    num_outputs: int = 1  # models trained on several SR outputs get the HR target once per output
    image_shuffle: int = 32  # decoded images held for shuffling (bounded: DIV2K images are 8 MB each)
    start_step: int = 0  # the step a resumed run starts at

    @property
    def stream_seed(self) -> int:
        if self.start_step == 0:
            return self.seed
        return int(np.random.SeedSequence([self.seed, self.start_step]).generate_state(1)[0])


def decoded_pairs(source: ImageSource, lr_patch: int, skips: SkipLog) -> tf.data.Dataset:
    """(LR, HR) uint8 images of ``source`` decoded in parallel; unusable files skipped and logged."""
    images = source.images

    def load(index):
        image = images[int(index)]
        try:
            return load_pair(image, source, lr_patch)
        except BadTrainingImage as exc:
            skips.add(image.hr, str(exc))
        except Exception as exc:  # noqa: BLE001  (one odd file must never kill a long run)
            skips.add(image.hr, f"{type(exc).__name__}: {exc}")
        empty = np.zeros((0, 0, 3), np.uint8)
        return empty, empty

    def load_op(index):
        lr, hr = tf.numpy_function(load, [index], [tf.uint8, tf.uint8], stateful=False)
        lr.set_shape([None, None, 3])
        hr.set_shape([None, None, 3])
        return lr, hr

    ds = tf.data.Dataset.range(len(images)).map(load_op, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.filter(lambda lr, hr: tf.size(lr) > 0)


def _random_crops(lr, hr, seed, config: PatchConfig, scale: int):
    """``crops_per_image`` aligned crops of one pair with random flips (per crop) and transpose (per visit).

    Flips are reversed gather indices (free); flips plus a transpose give all 8 flips/90-degree rotations.
    """
    k, p = config.crops_per_image, config.lr_patch
    seeds = tf.random.experimental.stateless_split(seed, 3)
    h, w = tf.shape(lr)[0], tf.shape(lr)[1]
    ys = tf.random.stateless_uniform([k], seeds[0], 0, h - p + 1, dtype=tf.int32)
    xs = tf.random.stateless_uniform([k], seeds[1], 0, w - p + 1, dtype=tf.int32)
    flips = tf.random.stateless_uniform([3, k], seeds[2], 0, 2, dtype=tf.int32) > 0
    flip, transpose = AUGMENTATIONS[config.augment]
    flips = flips & tf.constant([[flip], [flip], [transpose]])

    def crop(img, s):
        span = tf.range(p * s)
        row_span = tf.where(flips[0][:, None], span[::-1], span)  # k x ps
        col_span = tf.where(flips[1][:, None], span[::-1], span)
        rows = tf.gather(img, ys[:, None] * s + row_span)  # k x ps x W x 3
        crops = tf.gather(rows, xs[:, None] * s + col_span, axis=2, batch_dims=1)
        return tf.cond(flips[2][0], lambda: tf.transpose(crops, [0, 2, 1, 3]), lambda: crops)

    return crop(lr, 1), crop(hr, scale)


def patch_dataset(pairs: tf.data.Dataset, scale: int, config: PatchConfig) -> tf.data.Dataset:
    """Endless batches of (LR float32 [B,p,p,3], HR float32 [B,sp,sp,3]) in 0..255 from decoded pairs."""
    if config.cache == "memory":
        pairs = pairs.cache()
    elif config.cache != "none":
        pairs = pairs.cache(config.cache)
    seed = config.stream_seed
    pairs = pairs.repeat().shuffle(config.image_shuffle, seed=seed, reshuffle_each_iteration=True)
    crop_seeds = tf.data.Dataset.random(seed=seed).batch(2)
    patches = tf.data.Dataset.zip((pairs, crop_seeds)).map(
        lambda pair, seed: _random_crops(pair[0], pair[1], seed, config, scale),
        num_parallel_calls=AUTOTUNE, deterministic=True,
    ).unbatch()
    buffer = max(4 * config.crops_per_image, 8 * config.batch_size)
    patches = patches.shuffle(buffer, seed=seed + 1).batch(config.batch_size, drop_remainder=True)

    def to_float(lr, hr):
        hr = tf.cast(hr, tf.float32)
        return tf.cast(lr, tf.float32), hr if config.num_outputs == 1 else (hr,) * config.num_outputs

    return patches.map(to_float, num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE)
