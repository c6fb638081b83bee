"""`cli.py benchmark`: parameters, multiply-adds, file size and CPU latency of Keras, float and int8 TFLite.

A model is a registry name (an untrained model: size and speed do not depend on the weights), a .keras file, a
run folder or a .tflite file. Keras models are also converted to float32 and int8 TFLite here. Latency is the
median of ``repeats`` timed runs on one ``input_hw`` RGB image after ``warmup`` runs, on this machine's CPU.
With ``data``, each variant of a trained model is also scored (Y-PSNR), which the ``--plot`` figure needs.
"""
from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.report import format_table, reported_write_errors, write_json
from tfsr.errors import TfsrError

TFLITE_KINDS = ("float32", "float16", "int8")  # conversions of a Keras model
KINDS = ("keras", *TFLITE_KINDS)
DEFAULT_KINDS = ("keras", "float32", "int8")  # float16 on request: measured no faster than float32 on a CPU (README)
CALIBRATION_PATCHES = 64
CALIBRATION_PATCH = 48


@dataclass
class BenchmarkConfig:
    models: list[str]
    input_hw: tuple[int, int] = (180, 320)  # LR size; x4 gives a 1280x720 output, the papers' convention
    scale: int = 4
    threads: int | None = None
    kinds: tuple[str, ...] = DEFAULT_KINDS
    repeats: int = 10
    warmup: int = 2
    data: str | None = None  # a benchmark set to score trained models on (also int8's calibration images)
    data_root: str | None = None
    json_path: str | None = None
    plot_path: str | None = None
    markdown: bool = False


@dataclass
class BenchmarkRow:
    model: str
    kind: str
    params: int | None
    macs: int | None
    file_bytes: int
    latency_ms: float
    psnr_y: float | None = None

    def cells(self) -> list[str]:
        return [self.model, self.kind, f"{self.params:,}" if self.params else "-",
                f"{self.macs / 1e9:.2f}" if self.macs else "-", f"{self.file_bytes / 1024:.0f}",
                f"{self.latency_ms:.1f}", f"{self.psnr_y:.2f}" if self.psnr_y is not None else "-"]  # fmt: skip


@dataclass
class BenchmarkResult:
    config: BenchmarkConfig
    rows: list[BenchmarkRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def machine(self) -> dict:
        return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                "threads": self.config.threads, "python": platform.python_version()}  # fmt: skip

    def to_json(self) -> dict:
        h, w = self.config.input_hw
        return {
            "input_size": f"{w}x{h}",
            "scale": self.config.scale,
            "repeats": self.config.repeats,
            "warmup": self.config.warmup,
            "data": self.config.data,
            "machine": self.machine(),
            "rows": [vars(r) for r in self.rows],
            "notes": self.notes,
        }

    def table(self) -> str:
        h, w = self.config.input_hw
        psnr_header = f"PSNR {Path(self.config.data).name} x{self.config.scale}" if self.config.data else "PSNR"
        headers = ["model", "kind", "params", "mult-adds (G)", "file (KiB)", "latency (ms)", psnr_header]
        table = format_table(headers, [r.cells() for r in self.rows], markdown=self.config.markdown)
        footer = (f"latency: median of {self.config.repeats} runs after {self.config.warmup} warm-up, one {w}x{h} LR "
                  f"input, {self.config.threads or 'default'} threads, {self.machine()['cpu']}")  # fmt: skip
        return "\n".join([table, footer] + self.notes)


def median_latency_ms(call, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def _keras_model(spec: str, scale: int):
    """(label, model, saved .keras path or None, trained?) for a registry name, a .keras file or a run folder."""
    from tfsr.predictors import RUN_MODEL_FILE, check_scale, load_keras_model, model_scale
    from tfsr.registry import build_model, list_models

    path = Path(spec)
    if path.is_dir() and (path / RUN_MODEL_FILE).is_file():
        path, label = path / RUN_MODEL_FILE, path.name
    else:
        label = path.stem
    if path.suffix == ".keras" and path.exists():
        model = load_keras_model(path)
        check_scale(label, model_scale(model), scale)
        return label, model, path, True
    if spec in list_models():
        return spec, build_model(spec, scale), None, False
    raise TfsrError(f"model {spec!r} is not a registered name, a .keras file, a run folder or a .tflite file")


def _calibration(lr_images: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Representative LR patches for int8: crops of the data set's LR images, or smooth noise without data."""
    from tfsr.imresize import imresize

    if not lr_images:
        return [imresize(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8), 4).astype(np.float32)
                for _ in range(CALIBRATION_PATCHES)]  # fmt: skip
    patches = []
    size = min(CALIBRATION_PATCH, *(d for lr in lr_images for d in lr.shape[:2]))  # one size: equalization batches them
    for i in range(CALIBRATION_PATCHES):
        lr = lr_images[i % len(lr_images)]
        top, left = rng.integers(0, lr.shape[0] - size + 1), rng.integers(0, lr.shape[1] - size + 1)
        patches.append(lr[top : top + size, left : left + size].astype(np.float32))
    return patches


class _Bench:
    """Shared state of one benchmark run: the input, the optional scoring set, and the rows."""

    def __init__(self, config: BenchmarkConfig, log):
        self.config = config
        self.log = log
        rng = np.random.default_rng(0)
        self.rng = rng
        self.lr = rng.integers(0, 256, (*config.input_hw, 3), dtype=np.uint8)
        self.bench = None
        if config.data:
            from tfsr.data.benchmark import load_benchmark, resolve_data

            self.bench = load_benchmark(resolve_data(config.data, config.data_root), config.scale)
        self.result = BenchmarkResult(config)

    def score(self, predictor, trained: bool) -> float | None:
        if self.bench is None or not trained:
            return None
        from tfsr.evaluation import evaluate_set

        return evaluate_set(predictor, self.bench).psnr_y

    def add(self, row: BenchmarkRow) -> None:
        self.result.rows.append(row)
        self.log(f"{row.model} {row.kind}: {row.latency_ms:.1f} ms" + (f", {row.psnr_y:.2f} dB" if row.psnr_y else ""))

    def keras(self, spec: str) -> None:
        from tfsr.complexity import count_macs
        from tfsr.keras import tf
        from tfsr.predictors import KerasPredictor

        label, model, path, trained = _keras_model(spec, self.config.scale)
        params = model.count_params()
        macs = count_macs(model, self.config.input_hw)
        if "keras" in self.config.kinds:
            size = path.stat().st_size if path else _saved_size(model)
            serve = tf.function(lambda x: model(x, training=False))
            x = tf.constant(self.lr[None].astype(np.float32))
            latency = median_latency_ms(lambda: serve(x).numpy(), self.config.warmup, self.config.repeats)
            psnr = self.score(KerasPredictor(model, self.config.scale, label), trained)
            self.add(BenchmarkRow(label, "keras", params, macs, size, latency, psnr))
        for kind in TFLITE_KINDS:
            if kind in self.config.kinds:
                self.tflite_from_keras(label, model, kind, params, macs, trained)

    def tflite_from_keras(self, label, model, kind, params, macs, trained) -> None:
        from tfsr.tflite import ConvertOptions, convert

        self.log(f"converting {label} to {kind} TFLite")
        options = ConvertOptions(mode=kind, io="int8" if kind == "int8" else "float32")
        if kind == "int8":  # what `cli.py quantize` makes by default: output clipped, folded, equalized, MSE ranges, own concat scales
            from pipelines.quantize import prepared_for_int8, with_output_clip
            from tfsr.quantization.ranges import convert_with_ranges

            representative = _calibration([im.lr for im in self.bench.images] if self.bench else [], self.rng)
            note = ("int8 rows: `cli.py quantize`'s default PTQ, calibrated on crops of the scored set's own LR images "
                    "(quick, slightly optimistic; quantize calibrates on training patches)" if self.bench else
                    "int8 rows: `cli.py quantize`'s default PTQ, calibrated on smooth random images (latency and size only)")  # fmt: skip
            if note not in self.result.notes:
                self.result.notes.append(note)
            prepared = prepared_for_int8(with_output_clip(model), np.stack(representative)).model
            data, _ = convert_with_ranges(prepared, options, representative)
        else:
            data = convert(model, options)
        self.tflite(label, data, kind, params, macs, trained)

    def tflite(self, label: str, data: bytes, kind: str, params=None, macs=None, trained: bool = True) -> None:
        from tfsr.tflite import DEFAULT_THREADS, TFLitePredictor
        from tfsr.tiling import with_tiling

        predictor = TFLitePredictor(data, label, self.config.scale, self.config.threads or DEFAULT_THREADS)
        run_once = with_tiling(predictor, None)
        latency = median_latency_ms(lambda: run_once(self.lr), self.config.warmup, self.config.repeats)
        self.add(BenchmarkRow(label, kind, params, macs, len(data), latency, self.score(run_once, trained)))


def _saved_size(model) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        return path.stat().st_size


def _tflite_kind(data: bytes) -> str:
    from tfsr.tflite import audit_ops

    return "int8" if audit_ops(data).input_types[0] in ("INT8", "UINT8") else "tflite"


def plot(result: BenchmarkResult, path: Path) -> None:
    from tfsr.figures import Point, scatter_figure
    from tfsr.images import write_image

    scored = [r for r in result.rows if r.psnr_y is not None]
    if not scored:
        raise TfsrError("--plot needs PSNR values: pass --data SET and trained models (.keras, run folders, .tflite)")
    by_params = [Point(f"{r.model} ({r.kind})", r.params, r.psnr_y) for r in scored if r.params]
    by_latency = [Point(f"{r.model} ({r.kind})", r.latency_ms, r.psnr_y) for r in scored]
    h, w = result.config.input_hw
    figure = scatter_figure(
        f"Y-PSNR on {Path(result.config.data).name} x{result.config.scale} against size and speed",
        "PSNR (dB)",
        [("parameters", by_params), (f"latency (ms, {w}x{h} LR, this CPU)", by_latency)],
    )
    write_image(path, np.asarray(figure))


def run(config: BenchmarkConfig, log=lambda msg: print(msg, file=sys.stderr)) -> BenchmarkResult:
    if not config.models:
        raise TfsrError("name at least one model to benchmark (a registry name, .keras, run folder or .tflite)")
    unknown = sorted(set(config.kinds) - set(KINDS))
    if unknown:
        raise TfsrError(f"--kind must be among {', '.join(KINDS)}, not {', '.join(unknown)}")
    if config.repeats < 1 or config.warmup < 0:
        raise TfsrError(f"--repeats must be at least 1 and --warmup 0 or more, not {config.repeats} / {config.warmup}")
    if config.threads is not None and config.threads < 1:
        raise TfsrError(f"--threads must be at least 1, not {config.threads}")
    notes = []
    if config.threads:
        if "tensorflow" in sys.modules:  # TensorFlow reads its thread counts once, when it starts
            notes.append(f"Keras ran with TensorFlow's default threads (already started); TFLite used {config.threads}")
        else:
            os.environ["TF_NUM_INTRAOP_THREADS"] = os.environ["TF_NUM_INTEROP_THREADS"] = str(config.threads)
    bench = _Bench(config, log)
    bench.result.notes += notes
    for spec in config.models:
        if Path(spec).suffix == ".tflite":
            from tfsr.tflite import read_tflite

            data = read_tflite(spec)
            bench.tflite(Path(spec).stem, data, _tflite_kind(data))
        else:
            bench.keras(spec)
    if config.json_path:
        with reported_write_errors(Path(config.json_path)):
            write_json(Path(config.json_path), bench.result.to_json())
    if config.plot_path:
        with reported_write_errors(Path(config.plot_path)):
            plot(bench.result, Path(config.plot_path))
    return bench.result
