"""MATLAB-compatible bicubic ``imresize`` (antialiased when shrinking), in NumPy.

Reproduces MATLAB's ``imresize(img, s, 'bicubic')`` bit-exactly on uint8 images: cubic kernel a=-0.5,
kernel widened by 1/s when shrinking, edge pixels replicated, one pass per axis (the axis with the
smaller scale first), and a uint8 rounding at the end of each pass.
"""
from __future__ import annotations

import math

import numpy as np


def _cubic(x: np.ndarray) -> np.ndarray:
    absx = np.abs(x)
    absx2, absx3 = absx**2, absx**3
    return (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1) + (
        -0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2
    ) * ((absx > 1) & (absx <= 2))


def _contributions(in_length: int, out_length: int, scale: float):
    """Weights and source indices of each output sample along one axis (MATLAB's `contributions`)."""
    kernel_width = 4.0
    antialias = scale < 1
    if antialias:
        kernel_width /= scale
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps)[None, :]
    distance = u[:, None] - indices
    weights = scale * _cubic(distance * scale) if antialias else _cubic(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    # Replicate edge pixels (MATLAB pads symmetric; for bicubic only the first mirrored sample matters).
    indices = np.clip(indices, 1, in_length) - 1
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], indices[:, keep].astype(np.int64)


def _resize_axis(img: np.ndarray, axis: int, out_length: int, scale: float) -> np.ndarray:
    weights, indices = _contributions(img.shape[axis], out_length, scale)
    moved = np.moveaxis(img, axis, 0).astype(np.float64)
    gathered = moved[indices]  # (out, taps, ...)
    out = np.einsum("ot...,ot->o...", gathered, weights)
    return np.moveaxis(out, 0, axis)


def imresize(img: np.ndarray, scale: float | None = None, output_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Resize an HxW or HxWxC image like MATLAB's bicubic ``imresize``.

    uint8 input gives uint8 output (rounded after each axis pass, as MATLAB does); float input stays float64.
    Give either ``scale`` (e.g. 1/4 or 4) or ``output_shape`` (rows, cols).
    """
    if (scale is None) == (output_shape is None):
        raise ValueError("imresize needs exactly one of scale or output_shape")
    in_h, in_w = img.shape[:2]
    if output_shape is None:
        scales = (float(scale), float(scale))
        output_shape = (int(math.ceil(in_h * scale)), int(math.ceil(in_w * scale)))
    else:
        scales = (output_shape[0] / in_h, output_shape[1] / in_w)
    is_uint8 = img.dtype == np.uint8
    out = img
    for axis in sorted((0, 1), key=lambda a: scales[a]):
        out = _resize_axis(out, axis, output_shape[axis], scales[axis])
        if is_uint8:
            out = np.clip(np.floor(out + 0.5), 0, 255)  # MATLAB rounds halves up, NumPy to even
    return out.astype(np.uint8) if is_uint8 else out


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop at the bottom/right so both sides are multiples of ``scale`` (the benchmark convention)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]
