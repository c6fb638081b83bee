"""Scoring predictors on benchmark sets, the way the papers' tables are computed."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from tfsr.data.benchmark import BenchmarkSet
from tfsr.errors import TfsrError
from tfsr.metrics import score_image

GREY_MODES = ("as-is", "rgb")


@dataclass(frozen=True)
class ScoreOptions:
    """How grey images and Y are treated; stated in every result."""

    grey_mode: str = "as-is"  # "as-is": grey images scored on their grey values; "rgb": replicated to RGB, Y
    rounded_y: bool = False  # MATLAB rgb2ycbcr on uint8 rounds Y; the exact convention does not


@dataclass
class ImageScore:
    name: str
    psnr_y: float
    ssim_y: float


@dataclass
class SetScore:
    dataset: str
    scale: int
    psnr_y: float
    ssim_y: float
    images: list[ImageScore]
    options: ScoreOptions

    def to_json(self) -> dict:
        return {
            "psnr_y": round(self.psnr_y, 4),
            "ssim_y": round(self.ssim_y, 5),
            "scale": self.scale,
            "grey": self.options.grey_mode,
            "rounded_y": self.options.rounded_y,
            "per_image": {s.name: {"psnr_y": round(s.psnr_y, 4), "ssim_y": round(s.ssim_y, 5)} for s in self.images},
        }


def evaluate_set(
    predict: Callable[[np.ndarray], np.ndarray],
    bench: BenchmarkSet,
    options: ScoreOptions = ScoreOptions(),
    on_image: Callable[[str, np.ndarray], None] | None = None,
) -> SetScore:
    """Y-PSNR / Y-SSIM of ``predict`` on every image of ``bench``; ``on_image(name, sr)`` sees each output."""
    if options.grey_mode not in GREY_MODES:
        raise TfsrError(f"grey mode must be one of {', '.join(GREY_MODES)}, not {options.grey_mode!r}")
    scores = []
    for image in bench.images:
        sr = predict(image.lr)
        if sr.shape != image.hr.shape:
            raise TfsrError(
                f"{bench.name}/{image.name}: the model returned {sr.shape[1]}x{sr.shape[0]} for a "
                f"{image.lr.shape[1]}x{image.lr.shape[0]} input, expected {image.hr.shape[1]}x{image.hr.shape[0]}"
            )
        if on_image is not None:
            on_image(image.name, sr)
        p, s = score_image(sr, image.hr, bench.scale, image.is_grey, options.grey_mode, options.rounded_y)
        scores.append(ImageScore(image.name, p, s))
    return SetScore(
        bench.name,
        bench.scale,
        float(np.mean([s.psnr_y for s in scores])),
        float(np.mean([s.ssim_y for s in scores])),
        scores,
        options,
    )


__all__ = ["ImageScore", "ScoreOptions", "SetScore", "evaluate_set", "asdict"]
