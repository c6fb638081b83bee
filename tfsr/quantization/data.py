"""Real image patches for calibration and fine-tuning: HR crops and their MATLAB-bicubic LR.

Decoding is the slow part, so each decoded image yields several crops; the images are sampled evenly.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfsr.errors import TfsrError
from tfsr.images import list_images, read_image
from tfsr.imresize import imresize


@dataclass
class PatchPairs:
    lr: np.ndarray  # (n, h, w, 3) float32 in [0, 255]
    hr: np.ndarray  # (n, h * scale, w * scale, 3) float32


def image_files(folder: str | Path) -> list[Path]:
    """Images of ``folder`` and its subfolders (train291 keeps T91 and BSD200 apart)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TfsrError(f"patch folder {folder} does not exist (pass an image folder with --calib-data)")
    files = sorted(p for d in [folder, *sorted(q for q in folder.rglob("*") if q.is_dir())] for p in list_images(d))
    if not files:
        raise TfsrError(f"patch folder {folder} holds no images")
    return files


def patch_pairs(folder: str | Path, count: int, lr_size: int | tuple[int, int], scale: int, seed: int = 0,
                crops_per_image: int = 4) -> PatchPairs:  # fmt: skip
    """``count`` random (LR, HR) patch pairs from the images of ``folder``; LR = imresize(HR, 1/scale).

    ``lr_size``: an LR side, or (height, width) for fixed-shape models.
    """
    rng = np.random.default_rng(seed)
    files = image_files(folder)
    lr_h, lr_w = (lr_size, lr_size) if isinstance(lr_size, int) else lr_size
    hr_h, hr_w = lr_h * scale, lr_w * scale
    n_images = min(len(files), max(1, -(-count // crops_per_image)))
    chosen = rng.choice(len(files), n_images, replace=False)
    lrs, hrs = [], []
    for k, index in enumerate(chosen):
        image = read_image(files[index]).rgb
        if image.shape[0] < hr_h or image.shape[1] < hr_w:
            continue
        for _ in range(-(-(count - len(hrs)) // (n_images - k))):
            y = rng.integers(0, image.shape[0] - hr_h + 1)
            x = rng.integers(0, image.shape[1] - hr_w + 1)
            hr = image[y : y + hr_h, x : x + hr_w]
            hrs.append(hr.astype(np.float32))
            lrs.append(imresize(hr, 1 / scale).astype(np.float32))
    if not hrs:
        raise TfsrError(f"no image in {folder} is at least {hr_w}x{hr_h} pixels: use a smaller --patch or larger images")
    return PatchPairs(np.stack(lrs), np.stack(hrs))
