"""`cli.py evaluate`: several models side by side on several benchmark sets, as a table and JSON."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.report import format_table, write_json
from tfsr.data.benchmark import load_benchmark, resolve_data
from tfsr.evaluation import ScoreOptions, SetScore, evaluate_set
from tfsr.errors import TfsrError
from tfsr.predictors import make_predictor


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


def run(config: EvaluateConfig, log=lambda msg: print(msg, file=sys.stderr)) -> EvaluateResult:
    if not config.models:
        raise TfsrError("name at least one model to evaluate (bicubic, a .keras file, a run folder)")
    if not config.data:
        raise TfsrError("name at least one data set with --data")
    predictors = [make_predictor(m, config.scale) for m in config.models]
    scale = config.scale or predictors[0].scale
    for p in predictors:
        if p.scale != scale:
            raise TfsrError(f"models disagree on scale: {p.label} is x{p.scale}, others x{scale}; pass --scale")
    config.scale = scale
    options = ScoreOptions(config.grey_mode, config.rounded_y)
    benches = [load_benchmark(resolve_data(d, config.data_root), scale) for d in config.data]
    result = EvaluateResult(config)
    for p in predictors:
        for bench in benches:
            log(f"evaluating {p.label} on {bench.name} x{scale} ({len(bench.images)} images)")
            result.scores.setdefault(p.label, {})[bench.name] = evaluate_set(p, bench, options)
    if config.json_path:
        write_json(Path(config.json_path), result.to_json())
    return result
