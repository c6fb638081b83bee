"""The int8 support matrix of the zoo, produced by running the code (not written by hand).

    nice -n 10 python scripts/support_matrix.py --markdown saved_models/support_matrix.md

For every registered model (randomly initialised, tiny LR inputs: op support does not depend on the weights) it
tries PTQ, QAT, pruning + pruning-preserving QAT and the Edge TPU export, and classifies each as
``works`` (converts, every op int8, nothing flagged by the op audit), ``fallback`` (converts, but the audit
flags ops: listed) or ``fails`` (the error). Results are written as each model finishes.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.report import format_table, write_json, write_text_atomic  # noqa: E402
from tfsr.registry import build_model, get_spec, list_models  # noqa: E402
from tfsr.tflite import ConvertOptions, audit_ops, convert  # noqa: E402

PATHS = ("ptq", "qat", "prune", "edgetpu")
LR = 32  # E-RFDN's ESA needs at least 15x15


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def patches(scale: int, count: int = 8):
    from tfsr.quantization.data import PatchPairs, patch_pairs

    train = ROOT.parent / "shared" / "data" / "train291"
    if train.is_dir():
        return patch_pairs(train, count, LR, scale)
    rng = np.random.default_rng(0)  # no shared data: smooth synthetic images
    hr = rng.uniform(0, 255, (count, LR * scale, LR * scale, 3)).astype(np.float32)
    return PatchPairs(hr[:, ::scale, ::scale].copy(), hr)


def verdict(data: bytes, target: str = "generic", note: str = "") -> dict:
    problems = audit_ops(data, target).problems
    kinds = sorted({p.split(" (op")[0] for p in problems})
    return {"status": "fallback" if problems else "works", "why": "; ".join(kinds) or note}


def try_path(path: str, model, pairs) -> dict:
    from tfsr.quantization.configs import quantize_model
    from tfsr.quantization.edgetpu import edgetpu_rewrite
    from tfsr.quantization.pruning import kernel_sparsity, prune
    from tfsr.quantization.qat import calibrate_ranges, fine_tune, mse_ranges

    representative = list(pairs.lr)
    quiet = lambda m: None  # noqa: E731
    if path == "ptq":
        return verdict(convert(model, ConvertOptions("int8", "int8"), representative))
    if path == "qat":
        qmodel = quantize_model(model)
        calibrate_ranges(qmodel, pairs.lr, passes=2)
        mse_ranges(qmodel, pairs.lr)
        fine_tune(qmodel, pairs, 2, batch=4, log=quiet, freeze_ranges=True)
        return verdict(convert(qmodel, ConvertOptions("int8-qat", "int8"), representative))
    if path == "prune":
        pruned = prune(model, pairs, 0.5, 4, batch=4, log=quiet)
        qmodel = quantize_model(pruned, preserve_sparsity=True)
        calibrate_ranges(qmodel, pairs.lr, passes=2)
        mse_ranges(qmodel, pairs.lr)
        fine_tune(qmodel, pairs, 2, batch=4, log=quiet, freeze_ranges=True)
        result = verdict(convert(qmodel, ConvertOptions("int8-qat", "int8"), representative))
        result["sparsity"] = round(kernel_sparsity(pruned), 3)
        return result
    rewritten = edgetpu_rewrite(model)
    return verdict(convert(rewritten, ConvertOptions("int8", "uint8", input_hw=(LR, LR)), representative), "edgetpu")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=None, help="default: every registered model")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--json", default=str(ROOT / "saved_models" / "support_matrix.json"))
    parser.add_argument("--markdown", default=str(ROOT / "saved_models" / "support_matrix.md"))
    parser.add_argument("--render", action="store_true", help="only rewrite the table from the JSON")
    args = parser.parse_args(argv)
    # Runs accumulate: paths measured by an earlier run (e.g. a slow QAT pass on a few models) are kept.
    results: dict[str, dict] = json.loads(Path(args.json).read_text()) if Path(args.json).is_file() else {}
    for name in [] if args.render else args.models or list_models():
        spec = get_spec(name)
        scale = 2 if 2 in spec.scales else spec.scales[0]
        model = build_model(name, scale, clip_output=True)
        pairs = patches(scale)
        results.setdefault(name, {}).update(scale=scale, params=model.count_params())
        for path in args.paths:
            started = time.time()
            try:
                results[name][path] = try_path(path, model, pairs)
            except Exception as exc:  # a failing path is a result of the matrix, recorded with its reason
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                results[name][path] = {"status": "fails", "why": f"{type(exc).__name__}: {first}"}
                traceback.print_exc()
            results[name][path]["seconds"] = round(time.time() - started, 1)
            log(f"{name} {path}: {results[name][path]}")
            write_json(args.json, results)
    headers = ["model"] + list(PATHS)
    rows = [[n] + [(f"{r[p]['status']}" + (f": {r[p]['why']}" if r[p]["why"] else "")) if p in r else "not run"
                   for p in PATHS] for n, r in sorted(results.items())]  # fmt: skip
    table = format_table(headers, rows, markdown=True)
    write_text_atomic(args.markdown, table + "\n")
    print(table)


if __name__ == "__main__":
    main()
