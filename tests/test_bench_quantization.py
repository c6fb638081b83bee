"""scripts/bench_quantization.py, the command behind the README's quantization numbers, end to end on a tiny x4
model: every step it runs writes its measurement to the JSON, and the measurements agree with each other."""
from __future__ import annotations

import importlib.util
import json

from tests.conftest import ROOT, needs_shared
from test_tflite import tiny_sr


def bench_script():
    spec = importlib.util.spec_from_file_location("bench_quantization", ROOT / "scripts" / "bench_quantization.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


@needs_shared
def test_bench_measures_every_step_it_is_asked_for(tmp_path):
    model_path = tmp_path / "tiny_x4.keras"
    tiny_sr(scale=4).save(model_path)
    out = tmp_path / "bench.json"
    bench_script().main(["--model", str(model_path), "--steps", "float", "ptq", "concat", "simulate", "qat",
                         "--calib", "16", "--strengths", "1.0", "--fold-residuals", "--latency-size", "16x16",
                         "--latency-runs", "1", "--qat-steps", "2", "--qat-batch", "4", "--qat-patches", "16",
                         "--json", str(out)])  # fmt: skip
    results = json.loads(out.read_text())

    float_db = results["float_keras_set5_before_qat"]  # the model as given
    assert 15 < float_db < 40 and abs(results["float_tflite_set5"] - float_db) < 0.01
    assert results["float_keras_set5_after_qat"] != float_db  # the fine-tuning steps changed the weights
    assert results["folded_residuals"] == []  # tiny_sr has no identity residual
    rows = results["int8"]
    default_ptq = "equalized (strength 1, max gain 16) + mse ranges + own concat-input scales"
    assert {"ptq stock (16 patches 48x48, per-channel, uint8 I/O)", "mse ranges + own concat-input scales",
            default_ptq} <= set(rows)  # fmt: skip
    qat_rows = [name for name in rows if name.startswith("qat (mse ranges")]
    assert len(qat_rows) == 2 and qat_rows[1].endswith("2 steps (batch 4, Adam 5e-05 constant, L2, seed 0)")
    for name, row in rows.items():  # every int8 model was converted and scored on its own
        assert abs(row["set5_psnr_y"] - float_db) < 0.5 and row["set5_psnr_y"] != float_db, name
        assert row["bytes"] > row["gzip_bytes"] > 0 and row["problems"] == [], name
    assert results["latency_own_concat_scales_int8_ms"] > 0
    simulation = results["simulation_set5"]
    assert abs(simulation["float"] - float_db) < 0.001  # nothing rounded: the model itself, layer by layer
    assert abs(simulation["tensor"] - rows[default_ptq]["set5_psnr_y"]) < 0.05  # it predicts the real int8 model
    assert len({simulation["weights"], simulation["tensor"], simulation["channel"], float_db}) == 4
