"""Y-channel PSNR / SSIM exactly as the SR literature (MATLAB evaluation scripts) computes them."""
from __future__ import annotations

import numpy as np

# BT.601 luma of MATLAB rgb2ycbcr, for R, G, B in 0..255: Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255.
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0


def rgb_to_y(rgb: np.ndarray, rounded: bool = False) -> np.ndarray:
    """Y of MATLAB ``rgb2ycbcr`` for an HxWx3 image in 0..255 (float64). ``rounded`` mimics uint8 input."""
    y = 16.0 + rgb.astype(np.float64) @ _Y_WEIGHTS
    return np.floor(y + 0.5) if rounded else y


def grey_from_rgb(rgb: np.ndarray) -> np.ndarray:
    """The grey value an RGB image stands for, inverting how a grey image was replicated to RGB.

    Uses the same weights as Y without the 16..235 range compression, so R=G=B=v gives exactly v.
    """
    return rgb.astype(np.float64) @ (_Y_WEIGHTS * 255.0 / 219.0)


def quantize_image(sr: np.ndarray) -> np.ndarray:
    """Clip to [0, 255] and round to uint8, as every SR evaluation does before scoring."""
    return np.clip(np.floor(np.asarray(sr, dtype=np.float64) + 0.5), 0, 255).astype(np.uint8)


def shave(img: np.ndarray, border: int) -> np.ndarray:
    return img[border : img.shape[0] - border, border : img.shape[1] - border] if border else img


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


SSIM_WINDOW = 11  # side of the Gaussian window: the smallest image SSIM can score


def _gaussian_window(size: int = SSIM_WINDOW, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation with the 1-D window ``g`` along both axes."""
    rows = np.lib.stride_tricks.sliding_window_view(img, g.size, axis=0) @ g
    return np.lib.stride_tricks.sliding_window_view(rows, g.size, axis=1) @ g


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """SSIM of Wang et al. (2004): 11x11 Gaussian, sigma 1.5, K1 0.01, K2 0.03, mean over the valid region."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    g = _gaussian_window()
    mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
    var_a = _filter_valid(a * a, g) - mu_a**2
    var_b = _filter_valid(b * b, g) - mu_b**2
    cov = _filter_valid(a * b, g) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def score_channel(rgb: np.ndarray, is_grey: bool, grey_mode: str, rounded_y: bool) -> np.ndarray:
    """The single channel an image is scored on: Y, or for grey images scored as-is, the grey value."""
    if is_grey and grey_mode == "as-is":
        return grey_from_rgb(rgb)
    return rgb_to_y(rgb, rounded=rounded_y)


def score_image(
    sr: np.ndarray,
    hr: np.ndarray,
    scale: int,
    is_grey: bool = False,
    grey_mode: str = "as-is",
    rounded_y: bool = False,
) -> tuple[float, float]:
    """(Y-PSNR, Y-SSIM) of an SR output against its HR image (both HxWx3; SR is clipped and rounded first)."""
    if sr.shape != hr.shape:
        raise ValueError(f"SR shape {sr.shape} differs from HR shape {hr.shape}")
    sr_y = shave(score_channel(quantize_image(sr), is_grey, grey_mode, rounded_y), scale)
    hr_y = shave(score_channel(hr, is_grey, grey_mode, rounded_y), scale)
    return psnr(sr_y, hr_y), ssim(sr_y, hr_y)
