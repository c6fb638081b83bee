"""Benchmark sets for evaluation, in the EDSR/BasicSR layout or as plain HR-only folders.

- ``<set>/HR/<name>.png`` with ``<set>/LR_bicubic/X<k>/<name>x<k>.png``: LR read from disk.
- ``<set>/HR/`` without LR files, or a folder of images: LR = MATLAB bicubic of ``modcrop(HR, k)``.
The HR reference is cropped to ``k`` times the LR size, as the benchmark convention scores it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfsr.errors import TfsrError
from tfsr.images import IMAGE_SUFFIXES, list_images, read_image
from tfsr.imresize import imresize, modcrop
from tfsr.metrics import SSIM_WINDOW

DEFAULT_DATA_ROOT_ENV = "TFSR_DATA"


@dataclass
class BenchmarkImage:
    name: str
    lr: np.ndarray  # uint8 RGB
    hr: np.ndarray  # uint8 RGB, scale * LR size
    is_grey: bool


@dataclass
class BenchmarkSet:
    name: str
    scale: int
    images: list[BenchmarkImage]
    lr_source: str  # "files" or "bicubic"


def resolve_data(arg: str, data_root: str | Path | None = None) -> Path:
    """A folder path as given, or a set name (``Set5``) looked up under the data root."""
    path = Path(arg)
    if path.is_dir():
        return path
    root = Path(data_root or os.environ.get(DEFAULT_DATA_ROOT_ENV) or "data")
    if (root / arg).is_dir():
        return root / arg
    raise TfsrError(
        f"data {arg!r} is neither a folder nor a set under the data root {root} "
        f"(set --data-root or {DEFAULT_DATA_ROOT_ENV})"
    )


def find_lr_file(lr_dir: Path, stem: str, scale: int) -> Path | None:
    for candidate in (f"{stem}x{scale}", stem):
        for suffix in IMAGE_SUFFIXES:
            if (lr_dir / f"{candidate}{suffix}").is_file():
                return lr_dir / f"{candidate}{suffix}"
    return None


def load_benchmark(folder: str | Path, scale: int) -> BenchmarkSet:
    folder = Path(folder)
    if not folder.is_dir():
        raise TfsrError(f"data folder {folder} does not exist")
    hr_dir = folder / "HR" if (folder / "HR").is_dir() else folder
    hr_files = list_images(hr_dir)
    if not hr_files:
        raise TfsrError(f"data folder {hr_dir} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    lr_dir = folder / "LR_bicubic" / f"X{scale}"
    use_lr_files = hr_dir != folder and lr_dir.is_dir()
    images = []
    for hr_path in hr_files:
        hr_data = read_image(hr_path)
        hr = modcrop(hr_data.rgb, scale)
        if min(hr.shape[:2]) < scale:
            raise TfsrError(f"HR image {hr_path} ({hr_data.rgb.shape[1]}x{hr_data.rgb.shape[0]}) is smaller than the scale {scale}")
        if use_lr_files:
            lr_path = find_lr_file(lr_dir, hr_path.stem, scale)
            if lr_path is None:
                raise TfsrError(f"no LR image for {hr_path.name} in {lr_dir} (expected {hr_path.stem}x{scale}.png)")
            lr = read_image(lr_path).rgb
            expected = (hr.shape[0] // scale, hr.shape[1] // scale)
            if lr.shape[:2] != expected:
                raise TfsrError(
                    f"LR image {lr_path} is {lr.shape[1]}x{lr.shape[0]} but HR {hr_path.name} at x{scale} "
                    f"needs {expected[1]}x{expected[0]}: wrong scale folder or mismatched files"
                )
        else:
            lr = imresize(hr, 1 / scale)
        need = SSIM_WINDOW + 2 * scale  # the border of `scale` pixels is shaved before scoring
        if min(hr.shape[:2]) < need:
            raise TfsrError(
                f"HR image {hr_path} is {hr.shape[1]}x{hr.shape[0]}: too small to score at x{scale} (SSIM needs at "
                f"least {need}x{need} HR pixels); leave it out of the set"
            )
        images.append(BenchmarkImage(hr_path.stem, lr, hr, hr_data.is_grey))
    name = folder.name if hr_dir != folder else hr_dir.name
    return BenchmarkSet(name, scale, images, "files" if use_lr_files else "bicubic")
