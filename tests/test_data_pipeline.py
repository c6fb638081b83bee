"""The training input pipeline: sources, aligned crops, augmentation, determinism, LR cache, bad files."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tfsr.errors import TfsrError
from tfsr.imresize import imresize

SCALE = 2
PATCH = 8


def _save(path, array, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def _nearest_pair(rng, h, w):
    """An LR image and its nearest-neighbour x2 HR: every aligned HR crop is the LR crop with pixels doubled."""
    lr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return lr, np.repeat(np.repeat(lr, SCALE, axis=0), SCALE, axis=1)


def _batches(source, config, count, skips=None):
    from tfsr.data.patches import decoded_pairs, patch_dataset
    from tfsr.data.sources import SkipLog

    skips = skips if skips is not None else SkipLog(warn=lambda msg: None)
    dataset = patch_dataset(decoded_pairs(source, config.lr_patch, skips), source.scale, config)
    return [tuple(t.numpy() for t in b) for b in dataset.take(count)], skips


@pytest.fixture
def div2k_root(tmp_path, rng):
    root = tmp_path / "DIV2K"
    for i in range(3):
        lr, hr = _nearest_pair(rng, 20 + 4 * i, 24)
        _save(root / "DIV2K_train_HR" / f"{i + 1:04d}.png", hr)
        _save(root / "DIV2K_train_LR_bicubic" / f"X{SCALE}" / f"{i + 1:04d}x{SCALE}.png", lr)
    return root


def test_div2k_layout_pairs_lr_files_and_crops_stay_aligned_through_augmentation(div2k_root):
    from tfsr.data.patches import PatchConfig
    from tfsr.data.sources import find_source

    source = find_source(div2k_root, SCALE)
    assert source.kind == "div2k" and len(source.images) == 3 and source.lr_cache is None
    assert source.images[0].lr.name == "0001x2.png"
    batches, skips = _batches(source, PatchConfig(PATCH, 4, crops_per_image=4, seed=3), 12)
    assert not skips.skipped
    for lr, hr in batches:
        assert lr.shape == (4, PATCH, PATCH, 3) and hr.shape == (4, 2 * PATCH, 2 * PATCH, 3)
        assert lr.dtype == hr.dtype == np.float32
        np.testing.assert_array_equal(np.repeat(np.repeat(lr, 2, axis=1), 2, axis=2), hr)


@pytest.mark.parametrize("augment, symmetries_seen", [("flip+rot90", 8), ("flip+transpose", 8), ("flip", 4),
                                                     ("none", 1)])  # fmt: skip
def test_crops_show_the_symmetries_of_their_augmentation_on_real_windows(augment, symmetries_seen):
    from tfsr.data.patches import PatchConfig, _random_crops
    from tfsr.keras import tf

    # Each LR pixel holds its own (row, column): a crop tells exactly which window it is and how it is turned.
    rows, cols = np.meshgrid(np.arange(20), np.arange(24), indexing="ij")
    lr = np.stack([rows, cols, np.zeros_like(rows)], axis=-1).astype(np.uint8)
    hr = np.repeat(np.repeat(lr, SCALE, axis=0), SCALE, axis=1)
    config = PatchConfig(PATCH, 4, crops_per_image=4, augment=augment)
    symmetries = set()
    for visit in range(16):
        lr_crops, hr_crops = _random_crops(tf.constant(lr), tf.constant(hr), tf.constant([visit, 7]), config, SCALE)
        for crop, hr_crop in zip(lr_crops.numpy(), hr_crops.numpy()):
            np.testing.assert_array_equal(np.repeat(np.repeat(crop, SCALE, axis=0), SCALE, axis=1), hr_crop)
            transposed = crop[1, 0, 1] != crop[0, 0, 1]  # the column index changes down the crop
            upright = crop.transpose(1, 0, 2) if transposed else crop
            row_flip, col_flip = upright[-1, 0, 0] < upright[0, 0, 0], upright[0, -1, 1] < upright[0, 0, 1]
            upright = upright[::-1 if row_flip else 1, ::-1 if col_flip else 1]
            top, left = upright[0, 0, :2]
            np.testing.assert_array_equal(upright, lr[top : top + PATCH, left : left + PATCH])
            symmetries.add((transposed, row_flip, col_flip))
    assert len(symmetries) == symmetries_seen
    assert augment != "flip" or not any(transposed for transposed, _, _ in symmetries)  # h/v flips only


def test_same_seed_same_stream_other_seed_other_stream(div2k_root):
    from tfsr.data.patches import PatchConfig
    from tfsr.data.sources import find_source

    source = find_source(div2k_root, SCALE)
    first, _ = _batches(source, PatchConfig(PATCH, 2, crops_per_image=3, seed=7), 6)
    again, _ = _batches(source, PatchConfig(PATCH, 2, crops_per_image=3, seed=7), 6)
    other, _ = _batches(source, PatchConfig(PATCH, 2, crops_per_image=3, seed=8), 6)
    for (a_lr, a_hr), (b_lr, b_hr) in zip(first, again):
        np.testing.assert_array_equal(a_lr, b_lr)
        np.testing.assert_array_equal(a_hr, b_hr)
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other))
    # A run resumed at step 100 continues with its own deterministic stream instead of replaying the first one.
    resumed = [_batches(source, PatchConfig(PATCH, 2, crops_per_image=3, seed=7, start_step=100), 6)[0] for _ in range(2)]
    for (a_lr, _), (b_lr, _) in zip(*resumed):
        np.testing.assert_array_equal(a_lr, b_lr)
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, resumed[0]))


def test_hr_folder_lr_is_matlab_bicubic_cached_once(tmp_path, rng, monkeypatch):
    from tfsr.data import sources
    from tfsr.data.patches import PatchConfig

    hr = imresize(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8), 4)  # 36 x 44, smooth
    _save(tmp_path / "imgs" / "sub" / "a.png", hr)
    source = sources.find_source(tmp_path / "imgs", SCALE, lr_cache=tmp_path / "cache")
    assert source.kind == "folder" and source.lr_cache == tmp_path / "cache"
    lr, hr_out = sources.load_pair(source.images[0], source, PATCH)
    np.testing.assert_array_equal(lr, imresize(hr, 0.5))
    cached = tmp_path / "cache" / "sub" / "ax2.png"
    np.testing.assert_array_equal(np.asarray(Image.open(cached)), lr)

    def no_resize(*args, **kwargs):
        raise AssertionError("LR recomputed despite the cache")

    monkeypatch.setattr(sources, "imresize", no_resize)
    batches, _ = _batches(source, PatchConfig(PATCH, 2, crops_per_image=2), 2)
    assert batches[0][0].shape == (2, PATCH, PATCH, 3)


def test_a_stale_lr_cache_is_recomputed_and_the_smallest_usable_image_is_one_patch(tmp_path, rng):
    from tfsr.data import sources

    hr = imresize(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8), 4)
    path = _save(tmp_path / "imgs" / "a.png", hr)
    source = sources.find_source(tmp_path / "imgs", SCALE, lr_cache=tmp_path / "cache")
    sources.load_pair(source.images[0], source, PATCH)
    cached = tmp_path / "cache" / "ax2.png"
    edited = 255 - hr  # the HR file changes after its LR was cached: the cache is stale
    _save(path, edited)
    os.utime(path, (cached.stat().st_mtime + 10,) * 2)
    np.testing.assert_array_equal(sources.load_pair(source.images[0], source, PATCH)[0], imresize(edited, 0.5))
    smallest = 2 * PATCH  # an HR image exactly one HR patch wide is used; smaller is skipped
    _save(path, edited[:smallest, :smallest])
    assert sources.load_pair(source.images[0], source, PATCH)[1].shape == (smallest, smallest, 3)
    _save(path, edited[: smallest - 2, :smallest])  # (modcrop keeps x2 sizes even)
    with pytest.raises(sources.BadTrainingImage, match="16x14, smaller than an HR patch of 16x16"):
        sources.load_pair(source.images[0], source, PATCH)


def test_default_lr_cache_lives_outside_the_data(tmp_path, monkeypatch):
    from tfsr.data.sources import default_lr_cache

    monkeypatch.setenv("TFSR_CACHE", str(tmp_path / "c"))
    path = default_lr_cache(tmp_path / "data", 4)
    assert path.parent.parent == tmp_path / "c" / "lr" and path.name == "X4"
    assert default_lr_cache(tmp_path / "other" / "data", 4) != path  # same folder name, other data


def test_paired_folders_and_unknown_layouts(tmp_path, rng):
    from tfsr.data.sources import find_source

    lr, hr = _nearest_pair(rng, 16, 16)
    _save(tmp_path / "p" / "HR" / "x.png", hr)
    _save(tmp_path / "p" / "LR" / f"X{SCALE}" / "x.png", lr)
    source = find_source(tmp_path / "p", SCALE)
    assert source.kind == "paired" and source.images[0].lr == tmp_path / "p" / "LR" / "X2" / "x.png"
    with pytest.raises(TfsrError, match="does not exist"):
        find_source(tmp_path / "missing", SCALE)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TfsrError, match="holds no images"):
        find_source(tmp_path / "empty", SCALE)


def test_skip_log_lists_the_first_files_then_warns_once_for_the_rest():
    from tfsr.data.sources import SkipLog

    warnings = []
    skips = SkipLog(warn=warnings.append, listed=3)
    for i in range(4):
        skips.add(Path(f"t{i}.png"), "20x20, smaller than an HR patch of 192x192")
    assert len(warnings) == 4  # the fourth file brings the one warning about the rest
    for i in [*range(4, 8), 2]:
        skips.add(Path(f"t{i}.png"), "20x20, smaller than an HR patch of 192x192")
    assert len(skips.skipped) == 8
    assert warnings[:3] == [f"warning: skipping t{i}.png: 20x20, smaller than an HR patch of 192x192" for i in range(3)]
    assert warnings[3:] == ["warning: skipping more files than the 3 above; the rest are not listed here"]


@pytest.mark.bad_input
def test_bad_files_are_skipped_by_name_and_odd_formats_are_used(tmp_path, rng):
    from tfsr.data.patches import PatchConfig
    from tfsr.data.sources import SkipLog, find_source

    root = tmp_path / "set"
    lr, hr = _nearest_pair(rng, 16, 16)
    _save(root / "HR" / "good.png", hr)
    _save(root / "LR" / "good.png", lr)
    _save(root / "HR" / "grey.png", hr[..., 0])
    _save(root / "LR" / "grey.png", lr[..., 0])
    _save(root / "HR" / "rgba.png", np.dstack([hr, np.full(hr.shape[:2], 128, np.uint8)]))
    _save(root / "LR" / "rgba.png", lr)
    Image.fromarray(hr[..., 0].astype(np.uint16) * 257).save(root / "HR" / "deep16.png")
    _save(root / "LR" / "deep16.png", lr[..., 0])
    _save(root / "HR" / "small.png", hr[:10, :10])
    _save(root / "LR" / "small.png", lr[:5, :5])
    _save(root / "HR" / "mismatch.png", hr)
    _save(root / "LR" / "mismatch.png", lr[:, :12])
    (root / "HR" / "empty.png").write_bytes(b"")
    (root / "HR" / "text.png").write_text("not an image")
    full = (root / "HR" / "good.png").read_bytes()
    (root / "HR" / "truncated.png").write_bytes(full[: len(full) // 2])

    warnings = []
    skips = SkipLog(warn=warnings.append)
    source = find_source(root, SCALE)
    batches, skips = _batches(source, PatchConfig(PATCH, 4, crops_per_image=2, seed=1), 10, skips)
    skipped = {p.split("/")[-1]: reason for p, reason in skips.skipped.items()}
    assert set(skipped) == {"small.png", "mismatch.png", "empty.png", "text.png", "truncated.png"}
    assert "smaller than an HR patch of 16x16" in skipped["small.png"]
    assert "12x16 but mismatch.png at x2 needs 16x16" in skipped["mismatch.png"]
    assert "empty file" in skipped["empty.png"] and "damaged or truncated" in skipped["truncated.png"]
    assert len(warnings) == 5 and all(w.startswith("warning: skipping ") for w in warnings)
    assert len(batches) == 10  # training data keeps flowing from the 4 usable files
    for lr_b, hr_b in batches:
        np.testing.assert_array_equal(np.repeat(np.repeat(lr_b, 2, axis=1), 2, axis=2), hr_b)


@pytest.mark.bad_input
def test_no_usable_image_is_one_clear_error(tmp_path):
    from pipelines.train import TrainConfig, run

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(TfsrError, match=r"no usable training image .* 1 skipped"):
        run(TrainConfig("slwsr16", 2, data=str(tmp_path / "d"), steps=1, batch_size=1, patch_size=8,
                        out=str(tmp_path / "run"), val_data="none", lr_cache=str(tmp_path / "c")), log=lambda m: None)
    assert not (tmp_path / "run").exists()  # a failed start leaves no run folder behind
