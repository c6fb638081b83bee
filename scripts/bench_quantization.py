"""Quantization benchmark: E-RFDN (official weights) float vs int8 on Set5 x4, remedies, latency, QAT.

    nice -n 10 python scripts/bench_quantization.py --json saved_models/bench_quantization.json

Each step appends to the JSON as soon as it is measured, so a bounded run still reports what it finished.
Steps (``--steps`` picks some): float, ptq (the issue's baseline: 200 real 48x48 patches, uint8 I/O, output
clipped), per-layer (QuantizationDebugger: the layers that lose most), propagated (float vs int8 tensors through
the whole network, quantize's default PTQ model), regions (that model with parts of the network left in float:
where the error comes from), simulate (quantize's default float model with int8 simulated in Keras: weights only,
activations per tensor and per channel, the bound of any channel-scale remedy), remedies (calibration size and patch size,
per-tensor weights, attention ops kept in float, 16x8), equalize (channel equalization before PTQ, at each
``--strengths``), ranges (MSE-optimal and mean-batch activation ranges, alone and after equalization), concat
(min/max and MSE ranges, alone and after equalization, with concatenation inputs on their own scales; latency of
the last), latency (float32 vs int8 TFLite, XNNPACK, same threads; 16x8 once), qat (equalized, ranges
calibrated, MSE-optimal by default, then ``--qat-steps`` Adam steps: L2 towards the float model, L1 towards HR,
as quantize does). ``--fold-residuals`` measures the model with its identity residuals folded (quantize's default
for PTQ and QAT), ``--calib-seed`` draws other calibration patches.
"""
from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tfsr.data.benchmark import load_benchmark  # noqa: E402
from tfsr.evaluation import evaluate_set  # noqa: E402
from tfsr.predictors import KerasPredictor  # noqa: E402
from tfsr.tflite import ConvertOptions, TFLitePredictor, audit_ops, convert, gzip_size  # noqa: E402

SHARED = ROOT.parent / "shared"
STEPS = ("float", "ptq", "per-layer", "propagated", "regions", "simulate", "remedies", "equalize", "ranges", "concat",
         "latency", "qat")  # fmt: skip
SIMULATION_PATCHES = 64  # per-channel histograms of every tensor: 64 patches keep the step to minutes
# Regions of E-RFDN left in float for the "regions" step: regular expressions over TFLite tensor names.
FLOAT_REGIONS = {
    "nothing": None,
    "B1": r"/B1\.",
    "B1-B2": r"/B[12]\.",
    "all four blocks": r"/B\d\.",
    "everything but the upsampler conv": r"/(B\d\.|fea_conv|c\.|LR_conv)",
    "the 12 SRB pre-activations (3x3 conv + residual add)": r"c\d_r(/|;|\.add)",
    "the 4 ESA attentions": r"esa\.",
    "the blocks' concat + 1x1 fusion conv": r"/B\d\.(concat|c5)",
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def build_erfdn():
    from tfsr.registry import build_model
    from tfsr.weights import assign_state_dict, load_state_dict

    model = build_model("erfdn", 4, clip_output=True)
    assign_state_dict(model, load_state_dict(SHARED / "weights" / "erfdn_x4_official.npz"))
    return model


def load_model(spec: str):
    if spec == "erfdn":
        return build_erfdn()
    from pipelines.quantize import resolve_model, with_output_clip, QuantizeConfig
    from tfsr.predictors import load_keras_model

    return with_output_clip(load_keras_model(resolve_model(QuantizeConfig(model=spec))))


def latency_ms(data: bytes, lr_hw: tuple[int, int], threads: int, runs: int) -> float:
    predictor = TFLitePredictor(data, "bench", threads=threads)
    image = np.random.default_rng(0).integers(0, 256, (*lr_hw, 3), dtype=np.uint8)
    predictor(image)  # warm-up: allocation, XNNPACK packing
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        predictor(image)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="erfdn", help="erfdn (official weights) or a .keras file / run folder")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    parser.add_argument("--calib", type=int, default=200)
    parser.add_argument("--qat-steps", type=int, default=300)
    parser.add_argument("--qat-batch", type=int, default=8)
    parser.add_argument("--qat-lr", type=float, default=5e-5, help="Adam learning rate (default: quantize's)")
    parser.add_argument("--qat-loss", choices=("l1", "l2"), default=None,
                        help="default as quantize's: l2 towards the float model, l1 towards HR")
    parser.add_argument("--qat-schedule", choices=("constant", "cosine"), default="constant",
                        help="learning rate stays (quantize's default) or decays to 0 over the steps")
    parser.add_argument("--qat-ranges", choices=("mse", "mean-batch"), default="mse",
                        help="MSE-optimal ranges kept while fine-tuning (quantize's default), or tfmot's moving averages")
    parser.add_argument("--qat-target", choices=("float", "hr"), default="float",
                        help="fine-tune towards the float model's own outputs (quantize's default) or the HR patches")
    parser.add_argument("--qat-patches", type=int, default=200, help="LR/HR patch pairs for fine-tuning")
    parser.add_argument("--qat-seed", type=int, default=0, help="order of the fine-tuning batches")
    parser.add_argument("--qat-equalize", type=float, default=1.0, help="equalization strength before QAT (0: off)")
    parser.add_argument("--calib-seed", type=int, default=0, help="which calibration patches are drawn")
    parser.add_argument("--fold-residuals", action="store_true",
                        help="measure the model with its identity residuals folded (as quantize's PTQ/QAT do)")
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.5, 1.0])
    parser.add_argument("--max-gain", type=float, default=16.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--latency-size", default="180x320", help="LR HxW for latency (x4 -> 720x1280)")
    parser.add_argument("--latency-runs", type=int, default=5)
    parser.add_argument("--json", default=str(ROOT / "saved_models" / "bench_quantization.json"))
    args = parser.parse_args(argv)
    latency_hw = tuple(int(v) for v in args.latency_size.split("x"))

    from tfsr.quantization.data import patch_pairs
    from tfsr.quantization.qat import TARGET_LOSSES

    args.qat_loss = args.qat_loss or TARGET_LOSSES[args.qat_target]

    results: dict = {"model": args.model, "command": " ".join(sys.argv), "threads": args.threads}
    out = Path(args.json)

    def save():
        from pipelines.report import write_json

        write_json(out, results)

    model = load_model(args.model)
    if args.fold_residuals:
        from tfsr.quantization.fold import fold_identity_residuals

        model, folded = fold_identity_residuals(model)
        results["folded_residuals"] = folded
        log(f"folded {len(folded)} identity residuals")
    bench = load_benchmark(SHARED / "data" / "Set5", 4)
    train = SHARED / "data" / "train291"
    calib = patch_pairs(train, args.calib, 48, 4, seed=args.calib_seed)
    log(f"{model.name}: {model.count_params():,} params; {len(calib.lr)} calibration patches")

    def score(predictor) -> float:
        return round(evaluate_set(predictor, bench).psnr_y, 4)

    def measure(name: str, data: bytes, **extra) -> None:
        psnr = score(TFLitePredictor(data, name, 4, args.threads))
        entry = {"set5_psnr_y": psnr, "drop_db": round(results["float_keras_set5"] - psnr, 4), "bytes": len(data),
                 "gzip_bytes": gzip_size(data), "problems": audit_ops(data).problems[:5], **extra}  # fmt: skip
        if "float_keras_set5_before_qat" in results:  # QAT: also against the float model before fine-tuning
            entry["drop_from_original_float_db"] = round(results["float_keras_set5_before_qat"] - psnr, 4)
        results.setdefault("int8", {})[name] = entry
        log(f"{name}: Set5 {psnr:.4f} dB (drop {entry['drop_db']:.4f})")
        save()

    results["float_keras_set5"] = score(KerasPredictor(model, 4, "float"))
    log(f"float Keras Set5 x4: {results['float_keras_set5']}")
    float_bytes = convert(model, ConvertOptions("float32", "float32"))
    results["float_tflite_set5"] = score(TFLitePredictor(float_bytes, "float", 4, args.threads))
    save()
    stock = ConvertOptions("int8", "uint8")
    representative = list(calib.lr)
    stock_bytes = None
    if "ptq" in args.steps or "latency" in args.steps:
        stock_bytes = convert(model, stock, representative)
        measure(f"ptq stock ({len(calib.lr)} patches 48x48, per-channel, uint8 I/O)", stock_bytes)

    if "per-layer" in args.steps:
        from tfsr.quantization.debug import layer_errors

        rows = layer_errors(model, stock, representative, representative[:16])
        worst_nodes = [r.node for r in rows[:8]]
        results["per_layer_worst"] = [r.to_json() for r in rows[:12]]
        by_op: dict[str, list[float]] = {}
        for r in rows:
            by_op.setdefault(r.op, []).append(r.rmse_over_scale)
        results["per_op_mean_rmse_over_scale"] = {k: round(float(np.mean(v)), 4) for k, v in by_op.items()}
        log("worst layers: " + "; ".join(f"{r.op} {r.tensor} rmse {r.rmse:.3f}" for r in rows[:6]))
        save()

    if "remedies" in args.steps:
        from tfsr.quantization.debug import selectively_quantized

        # Most informative first, so that a bounded run still answers the per-layer report's question.
        if "per-layer" in args.steps:
            measure("8 worst layers of the per-layer report in float", selectively_quantized(
                model, stock, representative, float_nodes=worst_nodes), nodes=worst_nodes)  # fmt: skip
        measure("16x8 (int16 activations, int8 weights)", convert(model, ConvertOptions("int16x8", "float32"), representative))
        measure("per-tensor weights", convert(model, ConvertOptions("int8", "uint8", per_channel=False), representative))
        measure("attention in float (MUL, LOGISTIC, RESIZE_BILINEAR)",
                selectively_quantized(model, stock, representative, float_ops=["MUL", "LOGISTIC", "RESIZE_BILINEAR"]))
        large = patch_pairs(train, args.calib // 2, 64, 4, seed=2)
        measure("calibration on 64x64 patches (100)", convert(model, stock, list(large.lr)))
        big = patch_pairs(train, 4 * args.calib, 48, 4, seed=1)
        measure("calibration x4 (800 patches 48x48)", convert(model, stock, list(big.lr)))

    @functools.cache
    def equalized(strength: float):
        from tfsr.quantization.equalize import equalize

        return equalize(model, calib.lr, strength, args.max_gain)

    def variants() -> list[tuple[str, object, dict]]:
        """(label prefix, model, extra JSON) for the model as it is and equalized at each of ``--strengths``."""
        found = [("", model, {})]
        for strength in args.strengths:
            equalized_model, plan = equalized(strength)
            found.append((f"equalized (strength {strength:g}, max gain {args.max_gain:g}) + ", equalized_model,
                          {"classes": plan.classes, "largest_gain": plan.largest_gain}))  # fmt: skip
        return found

    @functools.cache
    def default_calibrated() -> bytes:
        """The calibrated float model of quantize's default PTQ: equalized, MSE ranges (before quantizing)."""
        from tfsr.quantization.ranges import calibrated_model, with_ranges

        return with_ranges(calibrated_model(equalized(1.0)[0], stock, representative), representative)[0]

    if "propagated" in args.steps:
        from tfsr.quantization.concat_scales import own_concat_scales
        from tfsr.quantization.debug import propagated_errors
        from tfsr.quantization.ranges import quantize_calibrated

        # quantize's default PTQ model (equalized, MSE ranges, own concat scales) against its calibrated float self
        ranged = default_calibrated()
        int8, _ = own_concat_scales(quantize_calibrated(ranged, stock), ranged)
        rows = propagated_errors(ranged, int8, representative[:16])
        results["propagated"] = [r.to_json() for r in rows]
        log("lowest SNR: " + "; ".join(f"{r.tensor} {r.snr_db:.1f} dB (rmse {r.rmse:.2f})" for r in sorted(rows, key=lambda r: r.snr_db)[:6]))
        save()

    if "simulate" in args.steps:
        from tfsr.quantization.simulate import SIMULATIONS, activation_ranges, simulated

        # quantize's default float model, int8 simulated in Keras: weights only, activations per tensor (what
        # TFLite does) and per channel (what no TFLite model can do: the bound of any channel-scale remedy)
        default_float = equalized(1.0)[0]
        sim_ranges = activation_ranges(default_float, calib.lr[:SIMULATION_PATCHES])
        results["simulation_patches"] = SIMULATION_PATCHES
        for simulation in SIMULATIONS:
            psnr = score(simulated(default_float, sim_ranges, simulation))
            results.setdefault("simulation_set5", {})[simulation] = psnr
            log(f"simulated int8 ({simulation}): Set5 {psnr} dB (drop {results['float_keras_set5'] - psnr:.4f})")
            save()

    if "regions" in args.steps:
        import re

        from tensorflow.lite.tools import flatbuffer_utils

        from tfsr.quantization.ranges import quantize_calibrated

        ranged = default_calibrated()
        graph = flatbuffer_utils.convert_bytearray_to_object(bytearray(ranged)).subgraphs[0]
        names = [t.name.decode() for i, t in enumerate(graph.tensors) if i not in graph.outputs]  # output: uint8
        for region, pattern in FLOAT_REGIONS.items():
            nodes = [n for n in names if re.search(pattern, n)] if pattern else []
            measure(f"equalized + mse ranges (shared concat scales), {region} in float",
                    quantize_calibrated(ranged, stock, nodes), float_tensors=len(nodes))  # fmt: skip

    if "equalize" in args.steps:
        for strength in args.strengths:
            equalized_model, plan = equalized(strength)
            measure(f"equalized (strength {strength:g}, max gain {args.max_gain:g}) + ptq stock",
                    convert(equalized_model, stock, representative), classes=plan.classes, largest_gain=plan.largest_gain)  # fmt: skip

    if "ranges" in args.steps:
        from tfsr.quantization.ranges import RANGE_METHODS, convert_with_ranges

        for method in RANGE_METHODS:
            for prefix, variant, extra in variants():
                data, _ = convert_with_ranges(variant, stock, representative, method, own_concat_scales=False)
                measure(f"{prefix}{method} ranges", data, **extra)

    if "concat" in args.steps:
        from tfsr.quantization.ranges import convert_with_ranges

        for method in ("minmax", "mse"):
            for prefix, variant, extra in variants():
                data, requantized = convert_with_ranges(variant, stock, representative, method, own_concat_scales=True)
                requantized = [f"{r.tensor}: {r.concat_scale:.3g} -> {r.own_scale:.3g}" for r in requantized]
                measure(f"{prefix}{method} ranges + own concat-input scales", data, requantized=requantized, **extra)
        results["latency_own_concat_scales_int8_ms"] = round(latency_ms(data, latency_hw, args.threads, args.latency_runs), 1)
        log(f"latency {latency_hw} of the last model: {results['latency_own_concat_scales_int8_ms']} ms")
        save()

    if "latency" in args.steps:
        f_ms = latency_ms(float_bytes, latency_hw, args.threads, args.latency_runs)
        i_ms = latency_ms(stock_bytes, latency_hw, args.threads, args.latency_runs)
        # 16x8 has no XNNPACK kernels (TFLite's reference ones run it): one run says enough
        s_ms = latency_ms(convert(model, ConvertOptions("int16x8", "float32"), representative), latency_hw, args.threads, 1)
        results["latency"] = {"lr_hw": list(latency_hw), "threads": args.threads, "runs": args.latency_runs,
                              "float32_ms": round(f_ms, 1), "int8_ms": round(i_ms, 1), "speedup": round(f_ms / i_ms, 2),
                              "int16x8_ms_one_run": round(s_ms, 1)}  # fmt: skip
        log(f"latency {latency_hw}: float32 {f_ms:.0f} ms, int8 {i_ms:.0f} ms ({f_ms / i_ms:.2f}x), 16x8 {s_ms:.0f} ms")
        save()

    if "qat" in args.steps:
        from tfsr.quantization.configs import quantize_model
        from tfsr.quantization.qat import calibrate_ranges, copy_float_weights, distillation_pairs, fine_tune, mse_ranges

        pairs = patch_pairs(train, max(args.qat_patches, 4 * args.qat_batch), 48, 4, seed=3)
        started = time.time()
        float_model = equalized(args.qat_equalize)[0] if args.qat_equalize else model
        qmodel = quantize_model(float_model)
        calibration = calibrate_ranges(qmodel, pairs.lr[:32], passes=8)
        results["qat_range_calibration"] = {"passes": calibration.passes, "final_change": calibration.final_change}
        if args.qat_ranges == "mse":
            mse_ranges(qmodel, pairs.lr)
        label = f"qat ({args.qat_ranges} ranges, equalized {args.qat_equalize:g}, {args.qat_target} targets, {len(pairs.lr)} patches)"
        measure(f"{label}, 0 steps", convert(qmodel, ConvertOptions("int8-qat", "uint8"), representative))
        # Does the fake-quantized Keras model predict its int8 export? (QAT trains against the former's noise.)
        results["qat_keras_fake_quant_set5_0_steps"] = score(KerasPredictor(qmodel, 4, "fake-quant"))
        log(f"fake-quantized Keras model, 0 steps: Set5 {results['qat_keras_fake_quant_set5_0_steps']}")
        if args.qat_target == "float":
            pairs = distillation_pairs(float_model, pairs.lr)
        fine_tune(qmodel, pairs, args.qat_steps, batch=args.qat_batch, learning_rate=args.qat_lr, log=log, seed=args.qat_seed,
                  freeze_ranges=args.qat_ranges == "mse", loss=args.qat_loss, cosine=args.qat_schedule == "cosine")  # fmt: skip
        copy_float_weights(qmodel, float_model)  # the drop compares float and int8 of the same fine-tuned weights
        results["float_keras_set5_before_qat"] = results.get("float_keras_set5_before_qat", results["float_keras_set5"])
        results["float_keras_set5"] = results["float_keras_set5_after_qat"] = score(KerasPredictor(float_model, 4, "float"))
        measure(f"{label}, {args.qat_steps} steps (batch {args.qat_batch}, Adam {args.qat_lr:g} {args.qat_schedule}, {args.qat_loss.upper()}, seed {args.qat_seed})",
                convert(qmodel, ConvertOptions("int8-qat", "uint8"), representative),
                seconds=round(time.time() - started))  # fmt: skip
    log(f"wrote {out}")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
