"""Training image sources: the official DIV2K layout, paired HR/LR folders, any folder of HR images.

Every source resolves to a list of ``TrainImage`` (an HR file and, where one exists on disk, its LR file).
``load_pair`` decodes one of them into aligned uint8 arrays, making the LR of an HR-only image with the
MATLAB-exact bicubic and caching it on disk (computed once). A file that cannot serve as training data raises
``BadTrainingImage`` naming the file; the input pipeline skips it and counts it (``SkipLog``).
"""
from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tfsr.data.benchmark import find_lr_file
from tfsr.errors import TfsrError
from tfsr.images import IMAGE_SUFFIXES, list_images, read_image, write_image
from tfsr.imresize import imresize, modcrop

CACHE_ENV = "TFSR_CACHE"
DIV2K_SPLITS = ("train", "valid")


class BadTrainingImage(TfsrError):
    """One file that cannot be used for training; the pipeline skips it with a warning."""


@dataclass(frozen=True)
class TrainImage:
    hr: Path
    lr: Path | None = None  # None: LR made by bicubic (cached)


@dataclass
class ImageSource:
    kind: str  # "div2k", "paired" or "folder"
    root: Path
    scale: int
    images: list[TrainImage]
    lr_cache: Path | None = None  # where bicubic LR images of HR-only sources are cached

    def describe(self) -> str:
        lr = f"LR cached in {self.lr_cache}" if self.lr_cache else "LR from files"
        return f"{len(self.images)} {self.kind} images in {self.root} (x{self.scale}, {lr})"


@dataclass
class SkipLog:
    """Files skipped by the pipeline, thread-safe (tf.data decodes in parallel). The first ``listed`` get a
    warning each, the rest one warning together: at x4 with LR patch 48, 51 images of train291 are too small."""

    warn: object = print
    listed: int = 5
    skipped: dict[str, str] = field(default_factory=dict)  # path -> reason
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, path: Path, reason: str) -> None:
        with self._lock:
            if str(path) in self.skipped:
                return
            self.skipped[str(path)] = reason
            count = len(self.skipped)
        if count <= self.listed:
            self.warn(f"warning: skipping {path}: {reason}")
        elif count == self.listed + 1:
            self.warn(f"warning: skipping more files than the {self.listed} above; the rest are not listed here")


def default_lr_cache(root: Path, scale: int) -> Path:
    """Per-source cache folder outside the data (which may be read-only): $TFSR_CACHE or ~/.cache/tfsr."""
    base = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tfsr")
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
    return base / "lr" / f"{root.name}-{digest}" / f"X{scale}"


def _paired(hr_dir: Path, lr_dir: Path | None, scale: int) -> list[TrainImage]:
    return [TrainImage(hr, find_lr_file(lr_dir, hr.stem, scale) if lr_dir else None) for hr in list_images(hr_dir)]


def find_source(root: str | Path, scale: int, split: str = "train", lr_cache: str | Path | None = None) -> ImageSource:
    """Recognise the layout of ``root``: DIV2K, ``HR/`` + ``LR/``-style pairs, or a plain folder of images."""
    root = Path(root)
    if not root.is_dir():
        raise TfsrError(f"training data folder {root} does not exist (pass --data FOLDER or --data div2k)")
    div2k_hr = root / f"DIV2K_{split}_HR"
    if div2k_hr.is_dir():
        lr_dir = root / f"DIV2K_{split}_LR_bicubic" / f"X{scale}"
        images = _paired(div2k_hr, lr_dir if lr_dir.is_dir() else None, scale)
        return _with_cache(ImageSource("div2k", root, scale, images), lr_cache)
    if (root / "HR").is_dir():
        lr_dir = next((root / n for n in (f"LR_bicubic/X{scale}", f"LR/X{scale}", "LR") if (root / n).is_dir()), None)
        images = _paired(root / "HR", lr_dir, scale)
        return _with_cache(ImageSource("paired" if lr_dir else "folder", root, scale, images), lr_cache)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise TfsrError(f"training data folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return _with_cache(ImageSource("folder", root, scale, [TrainImage(p) for p in files]), lr_cache)


def _with_cache(source: ImageSource, lr_cache: str | Path | None) -> ImageSource:
    if not source.images:
        raise TfsrError(f"training data folder {source.root} holds no HR images")
    if any(im.lr is None for im in source.images):
        source.lr_cache = Path(lr_cache) if lr_cache else default_lr_cache(source.root, source.scale)
    return source


def _cached_bicubic_lr(hr: np.ndarray, image: TrainImage, source: ImageSource) -> np.ndarray:
    rel = image.hr.relative_to(source.root) if image.hr.is_relative_to(source.root) else Path(image.hr.name)
    cached = source.lr_cache / rel.parent / f"{rel.stem}x{source.scale}.png"
    if cached.is_file() and cached.stat().st_mtime >= image.hr.stat().st_mtime:
        try:
            lr = read_image(cached).rgb
            if lr.shape[:2] == (hr.shape[0] // source.scale, hr.shape[1] // source.scale):
                return lr
        except TfsrError:
            pass  # a damaged cache entry is recomputed
    lr = imresize(hr, 1 / source.scale)
    write_image(cached, lr)
    return lr


def load_pair(image: TrainImage, source: ImageSource, lr_patch: int) -> tuple[np.ndarray, np.ndarray]:
    """Aligned (LR, HR) uint8 RGB arrays, HR = modcrop(HR, scale) = scale x LR size.

    Grey, RGBA and 16-bit files are normalised by ``read_image``; anything unusable raises BadTrainingImage.
    """
    scale = source.scale
    try:
        hr = modcrop(read_image(image.hr).rgb, scale)
    except TfsrError as exc:
        raise BadTrainingImage(str(exc)) from None
    need = lr_patch * scale
    if min(hr.shape[:2]) < need:
        raise BadTrainingImage(f"{hr.shape[1]}x{hr.shape[0]}, smaller than an HR patch of {need}x{need}")
    if image.lr is None:
        return _cached_bicubic_lr(hr, image, source), hr
    try:
        lr = read_image(image.lr).rgb
    except TfsrError as exc:
        raise BadTrainingImage(str(exc)) from None
    expected = (hr.shape[0] // scale, hr.shape[1] // scale)
    if lr.shape[:2] != expected:
        raise BadTrainingImage(
            f"LR image {image.lr} is {lr.shape[1]}x{lr.shape[0]} but {image.hr.name} at x{scale} needs "
            f"{expected[1]}x{expected[0]}"
        )
    return lr, hr
