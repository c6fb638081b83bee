"""`cli.py upscale`: a trained model applied to the user's own images, files or folders, in any format Pillow reads.

Grey images stay grey, RGBA stays RGBA (alpha upscaled with bicubic on its own), EXIF orientation is applied,
big images and fixed-shape models go tile by tile. Unreadable files are reported and skipped; an existing
output is never replaced without ``overwrite``. Outputs are PNG (lossless, keeps alpha): ``<stem>_x<scale>.png``.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.report import reported_write_errors
from tfsr.errors import TfsrError
from tfsr.images import read_image, write_image
from tfsr.imresize import imresize
from tfsr.metrics import grey_from_rgb, quantize_image
from tfsr.predictors import Predictor, make_predictor
from tfsr.tiling import with_tiling

AUTO_TILE = 256  # LR pixels: larger images are tiled unless --tile says otherwise
BAR_WIDTH = 24


@dataclass
class UpscaleConfig:
    model: str
    inputs: list[str]
    out: str
    scale: int | None = None
    tile: int | None = None  # None: tile images larger than AUTO_TILE
    overlap: int | None = None  # None: 16, less for small fixed-shape models
    overwrite: bool = False


@dataclass
class UpscaleSummary:
    written: list[Path] = field(default_factory=list)
    skipped_existing: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (input, reason)

    def line(self) -> str:
        return (f"{len(self.written)} written, {len(self.skipped_existing)} skipped (output exists; --overwrite "
                f"replaces), {len(self.failed)} failed")  # fmt: skip


def collect_inputs(inputs: list[str], log) -> list[Path]:
    """Files as given (whatever their suffix) and the images in folders; a missing path is a user error."""
    pillow_suffixes = set(Image.registered_extensions())
    files: list[Path] = []
    for arg in inputs:
        path = Path(arg)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in pillow_suffixes)
            if not found:
                log(f"warning: folder {path} holds no image files Pillow knows; nothing to do there")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise TfsrError(f"input {arg!r} is neither a file nor a folder")
    if not files:
        raise TfsrError("no images to upscale in " + ", ".join(inputs))
    return list(dict.fromkeys(files))


def upscale_image(predict: Predictor, path: Path) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """(SR uint8 HxWx3, upscaled alpha or None, is_grey) of the image file at ``path``."""
    image = read_image(path)
    sr = predict(image.rgb)
    sr = sr if sr.dtype == np.uint8 else quantize_image(sr)  # tiled outputs are uint8 already
    if image.is_grey:
        sr = np.repeat(quantize_image(grey_from_rgb(sr))[..., None], 3, axis=2)
    alpha = None if image.alpha is None else imresize(image.alpha, predict.scale)
    return sr, alpha, image.is_grey


def _bar(done: int, total: int) -> str:
    filled = BAR_WIDTH * done // total
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total}"


def run(config: UpscaleConfig, log=lambda msg: print(msg, file=sys.stderr)) -> UpscaleSummary:
    files = collect_inputs(config.inputs, log)
    model = make_predictor(config.model, config.scale)
    tile = config.tile if config.tile is not None else AUTO_TILE
    predict = with_tiling(model, tile, config.overlap)
    out_dir = Path(config.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise TfsrError(f"--out {out_dir} exists and is not a folder")
    summary = UpscaleSummary()
    planned: dict[Path, Path] = {}
    for i, path in enumerate(files, 1):
        target = out_dir / f"{path.stem}_x{model.scale}.png"
        if target in planned:
            summary.failed.append((path, f"same output name as {planned[target]}"))
            log(f"{_bar(i, len(files))} skipped {path}: its output {target.name} is also {planned[target]}'s")
            continue
        planned[target] = path
        if target.exists() and not config.overwrite:
            summary.skipped_existing.append(target)
            log(f"{_bar(i, len(files))} skipped {path}: {target} exists (--overwrite replaces it)")
            continue
        start = time.perf_counter()
        try:
            sr, alpha, grey = upscale_image(predict, path)
        except TfsrError as exc:
            summary.failed.append((path, str(exc)))
            log(f"{_bar(i, len(files))} warning: skipped {path}: {exc}")
            continue
        with reported_write_errors(target):
            write_image(target, sr, alpha, grey)
        summary.written.append(target)
        log(f"{_bar(i, len(files))} {path.name} -> {target} ({sr.shape[1]}x{sr.shape[0]}, {time.perf_counter() - start:.1f} s)")
    return summary
