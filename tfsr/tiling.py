"""Upscaling large images tile by tile, for any predictor, so memory stays bounded.

Each tile is predicted with ``overlap`` LR pixels of real context on every side that has a neighbour, and only
its core is kept, so seams see the same context as the untiled model up to ``overlap`` pixels away. Windows are
shifted inside the image rather than padded, which keeps every window the same size (what fixed-shape models
need) and gives border tiles the image's own border. A model with a fixed input shape (``input_hw`` on the
predictor, e.g. a static-shape TFLite file) is always tiled with windows of exactly that shape.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfsr.errors import TfsrError
from tfsr.metrics import quantize_image
from tfsr.predictors import Predictor

DEFAULT_OVERLAP = 16


def _windows(length: int, tile: int, window: int):
    """(core_start, core_end, window_start) along one axis; windows of ``window`` pixels cover every core."""
    window = min(window, length)
    overlap = (window - tile) // 2
    for start in range(0, length, tile):
        end = min(start + tile, length)
        yield start, end, min(max(0, start - overlap), length - window)


def predict_tiled(predict, lr: np.ndarray, scale: int, tile: int, overlap: int,
                  window_hw: tuple[int, int] | None = None) -> np.ndarray:
    """SR of ``lr`` assembled from tiles of ``tile`` LR pixels, each predicted with ``overlap`` pixels of context.

    Tiles are rounded to uint8 as they are placed (what scoring and saving do next): a quarter of the memory of
    a float output, which is what dominates for large images. ``window_hw`` forces every window to that exact shape (fixed-shape models); smaller images are edge-padded.
    """
    h, w = lr.shape[:2]
    if window_hw is None:
        window_hw = (tile + 2 * overlap, tile + 2 * overlap)
        padded = lr
    else:
        padded = np.pad(lr, ((0, max(0, window_hw[0] - h)), (0, max(0, window_hw[1] - w)), (0, 0)), mode="edge")
    out = None
    for y0, y1, wy in _windows(padded.shape[0], tile, window_hw[0]):
        if y0 >= h:
            break
        y1 = min(y1, h)
        for x0, x1, wx in _windows(padded.shape[1], tile, window_hw[1]):
            if x0 >= w:
                break
            x1 = min(x1, w)
            window = padded[wy : wy + window_hw[0], wx : wx + window_hw[1]]
            sr = predict(np.ascontiguousarray(window))
            if out is None:
                out = np.empty((h * scale, w * scale, sr.shape[2]), dtype=np.uint8)
            out[y0 * scale : y1 * scale, x0 * scale : x1 * scale] = quantize_image(
                sr[(y0 - wy) * scale : (y1 - wy) * scale, (x0 - wx) * scale : (x1 - wx) * scale]
            )
    return out


@dataclass
class TiledPredictor:
    """A predictor run tile by tile; same label and scale as the one it wraps."""

    inner: Predictor
    tile: int
    overlap: int
    window_hw: tuple[int, int] | None = None

    @property
    def label(self) -> str:
        return self.inner.label

    @property
    def scale(self) -> int:
        return self.inner.scale

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        if self.window_hw is None and lr.shape[0] <= self.tile and lr.shape[1] <= self.tile:
            return self.inner(lr)
        return predict_tiled(self.inner, lr, self.scale, self.tile, self.overlap, self.window_hw)


def with_tiling(predictor: Predictor, tile: int | None, overlap: int | None = None) -> Predictor:
    """``predictor`` tiled when ``tile`` is given or it only takes one input shape; unchanged otherwise.

    ``overlap`` None: DEFAULT_OVERLAP, or a quarter of a small fixed input shape (so tiles keep half of it).
    """
    if tile is not None and tile < 1:
        raise TfsrError(f"--tile must be at least 1 LR pixel, not {tile}")
    if overlap is not None and overlap < 0:
        raise TfsrError(f"--overlap must be 0 or more LR pixels, not {overlap}")
    if isinstance(predictor, TiledPredictor):
        if tile is None:
            return predictor
        predictor = predictor.inner  # re-tile the model itself, not tiles of tiles
    window_hw = getattr(predictor, "input_hw", None)
    if window_hw is not None:
        overlap = min(DEFAULT_OVERLAP, min(window_hw) // 4) if overlap is None else overlap  # cores >= half
        core = min(window_hw) - 2 * overlap
        if core < 1:
            raise TfsrError(
                f"model {predictor.label} takes fixed {window_hw[1]}x{window_hw[0]} inputs: an overlap of {overlap} "
                f"leaves no tile; use --overlap {max(0, (min(window_hw) - 1) // 2)} or less"
            )
        return TiledPredictor(predictor, min(core, tile) if tile else core, overlap, tuple(window_hw))
    if tile is None:
        return predictor
    return TiledPredictor(predictor, tile, DEFAULT_OVERLAP if overlap is None else overlap)
