"""`cli.py evaluate`: several models side by side on several benchmark sets, as a table, CSV, JSON and pictures."""
from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.report import format_table, reported_write_errors, write_json, write_text_atomic
from tfsr.data.benchmark import BenchmarkSet, load_benchmark, resolve_data
from tfsr.ensemble import EnsemblePredictor
from tfsr.errors import TfsrError
from tfsr.evaluation import ScoreOptions, SetScore, evaluate_set
from tfsr.figures import Panel, comparison_figure, pick_crop
from tfsr.images import write_image
from tfsr.imresize import imresize
from tfsr.metrics import quantize_image, score_image
from tfsr.predictors import BicubicPredictor, Predictor, make_predictor
from tfsr.tiling import with_tiling

FIGURE_CROP = 96  # HR pixels shown per method in the comparison figures


@dataclass
class EvaluateConfig:
    models: list[str]
    data: list[str]
    scale: int | None = None
    data_root: str | None = None
    grey_mode: str = "as-is"
    rounded_y: bool = False
    json_path: str | None = None
    markdown: bool = False
    csv_path: str | None = None
    self_ensemble: bool = False
    save_images: str | None = None
    tile: int | None = None
    overlap: int | None = None  # None: 16, less for small fixed-shape models


@dataclass
class EvaluateResult:
    config: EvaluateConfig
    scores: dict[str, dict[str, SetScore]] = field(default_factory=dict)  # model label -> set name -> score

    def to_json(self) -> dict:
        return {
            "scale": self.config.scale,
            "grey": self.config.grey_mode,
            "rounded_y": self.config.rounded_y,
            "results": {m: {d: s.to_json() for d, s in sets.items()} for m, sets in self.scores.items()},
        }

    def table(self) -> str:
        sets = list(dict.fromkeys(d for per in self.scores.values() for d in per))
        headers = ["model"] + [f"{d} x{self.config.scale} PSNR/SSIM" for d in sets]
        rows = [
            [m] + [f"{per[d].psnr_y:.2f} / {per[d].ssim_y:.4f}" if d in per else "-" for d in sets]
            for m, per in self.scores.items()
        ]
        note = f"Y channel (MATLAB rgb2ycbcr{', rounded' if self.config.rounded_y else ''}), border {self.config.scale} shaved, grey images: {self.config.grey_mode}"
        return format_table(headers, rows, markdown=self.config.markdown) + "\n" + note

    def to_csv(self) -> str:
        """One row per model, set and image, plus a ``mean`` row per model and set."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["model", "dataset", "scale", "image", "psnr_y", "ssim_y"])
        for model, per in self.scores.items():
            for dataset, score in per.items():
                writer.writerow([model, dataset, score.scale, "mean", f"{score.psnr_y:.4f}", f"{score.ssim_y:.5f}"])
                for image in score.images:
                    writer.writerow([model, dataset, score.scale, image.name, f"{image.psnr_y:.4f}", f"{image.ssim_y:.5f}"])
        return out.getvalue()


def _folder_name(label: str) -> str:
    return "".join(c if c.isalnum() or c in "+-_.#" else "_" for c in label)


@dataclass
class Gallery:
    """Writes each model's SR as PNG and, per image, a figure comparing the same detailed crop across methods."""

    root: Path
    bench: BenchmarkSet
    crops: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # image -> (top, left, side)
    panels: dict[str, list[Panel]] = field(default_factory=dict)  # image -> one panel per method

    def __post_init__(self):
        self.root = self.root / self.bench.name / f"x{self.bench.scale}"
        for image in self.bench.images:
            self.crops[image.name] = pick_crop(image.hr, FIGURE_CROP)
            self.panels[image.name] = []

    def saver(self, label: str):
        def save(name: str, sr: np.ndarray) -> None:
            sr = quantize_image(sr)
            path = self.root / _folder_name(label) / f"{name}.png"
            with reported_write_errors(path):
                write_image(path, sr)
            self.panels[name].append(Panel(self._crop(name, sr), label))  # crops only: memory stays small

        return save

    def _crop(self, name: str, image: np.ndarray) -> np.ndarray:
        top, left, side = self.crops[name]
        return image[top : top + side, left : left + side]

    def write(self, scores: dict[str, SetScore], options: ScoreOptions) -> list[Path]:
        figures = []
        for image in self.bench.images:
            by_label = {s_label: next(i for i in s.images if i.name == image.name) for s_label, s in scores.items()}
            panels = []
            if "bicubic" not in by_label:
                bicubic = imresize(image.lr, self.bench.scale)
                p, s = score_image(bicubic, image.hr, self.bench.scale, image.is_grey, options.grey_mode, options.rounded_y)
                panels.append(Panel(self._crop(image.name, bicubic), f"bicubic\n{p:.2f} dB / {s:.4f}"))
            for panel in self.panels[image.name]:
                score = by_label[panel.caption]
                panels.append(Panel(panel.image, f"{panel.caption}\n{score.psnr_y:.2f} dB / {score.ssim_y:.4f}"))
            panels.append(Panel(self._crop(image.name, image.hr), "HR (ground truth)\nPSNR / SSIM on Y"))
            title = f"{self.bench.name} {image.name} x{self.bench.scale}  ({image.hr.shape[1]}x{image.hr.shape[0]})"
            path = self.root / f"{image.name}_compare.png"
            with reported_write_errors(path):
                write_image(path, np.asarray(comparison_figure(image.hr, self.crops[image.name], panels, title)))
            figures.append(path)
        return figures


def _unique_labels(labels: list[str]) -> list[str]:
    """Two run folders with the same name would overwrite each other's results: number the repeats."""
    seen: dict[str, int] = {}
    unique = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        unique.append(label if seen[label] == 1 else f"{label}#{seen[label]}")
    return unique


def build_predictors(config: EvaluateConfig) -> list[tuple[str, Predictor]]:
    """(label, predictor) per model, tiled as asked, plus a ``+`` (self-ensemble) twin of each learned model."""
    learned = {i: make_predictor(m, config.scale) for i, m in enumerate(config.models) if m != "bicubic"}
    scale = config.scale or next((p.scale for p in learned.values()), None)
    predictors = [learned[i] if i in learned else make_predictor(m, scale) for i, m in enumerate(config.models)]
    for p in predictors:
        if p.scale != scale:
            raise TfsrError(f"models disagree on scale: {p.label} is x{p.scale}, others x{scale}; pass --scale")
    config.scale = scale
    labelled = list(zip(_unique_labels([p.label for p in predictors]), predictors))
    tiled = [(label, with_tiling(p, config.tile, config.overlap)) for label, p in labelled]
    if config.self_ensemble:  # bicubic is symmetric: its "+" would only repeat it
        tiled += [(f"{label}+", EnsemblePredictor(t)) for (label, p), (_, t) in zip(labelled, tiled)
                  if not isinstance(p, BicubicPredictor)]  # fmt: skip
    return tiled


def run(config: EvaluateConfig, log=lambda msg: print(msg, file=sys.stderr)) -> EvaluateResult:
    if not config.models:
        raise TfsrError("name at least one model to evaluate (bicubic, a .keras file, a run folder)")
    if not config.data:
        raise TfsrError("name at least one data set with --data")
    predictors = build_predictors(config)
    options = ScoreOptions(config.grey_mode, config.rounded_y)
    benches = [load_benchmark(resolve_data(d, config.data_root), config.scale) for d in config.data]
    result = EvaluateResult(config)
    for bench in benches:
        gallery = Gallery(Path(config.save_images), bench) if config.save_images else None
        for label, p in predictors:
            log(f"evaluating {label} on {bench.name} x{config.scale} ({len(bench.images)} images)")
            on_image = gallery.saver(label) if gallery else None
            result.scores.setdefault(label, {})[bench.name] = evaluate_set(p, bench, options, on_image)
        if gallery:
            figures = gallery.write({label: per[bench.name] for label, per in result.scores.items()}, options)
            log(f"wrote {len(figures)} comparison figures and the SR images under {gallery.root}")
    if config.json_path:
        with reported_write_errors(Path(config.json_path)):
            write_json(Path(config.json_path), result.to_json())
    if config.csv_path:
        with reported_write_errors(Path(config.csv_path)):
            write_text_atomic(Path(config.csv_path), result.to_csv())
    return result
