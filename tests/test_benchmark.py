"""benchmark: params, multiply-adds, file sizes and latency of Keras, float and int8 TFLite; the Pareto plot."""
import json
import time

import numpy as np
import pytest
from PIL import Image

import tfsr
from tests.test_cli_foundation import invoke
from tests.test_tflite import smooth_image, tiny_sr
from pipelines.benchmark import median_latency_ms
from pipelines.report import parse_size
from tfsr.errors import TfsrError


def test_input_size_and_latency_helpers():
    assert parse_size("320x180", "WxH") == (180, 320)  # benchmark: as video sizes are written
    assert parse_size("16x24") == (16, 24)  # quantize: as tensor shapes are written
    with pytest.raises(TfsrError, match="at least 1x1 LR pixels, not '0x0'"):
        parse_size("0x0", "WxH")
    with pytest.raises(TfsrError, match=r"must be WxH in LR pixels \(e.g. 320x180\), not 'big'"):
        parse_size("big", "WxH")
    sleeps = iter([0.1, 0.002, 0.04, 0.003])  # a slow warm-up, then three timed runs with one outlier
    latency = median_latency_ms(lambda: time.sleep(next(sleeps)), 1, 3)
    assert 2.9 <= latency < 10.0 and next(sleeps, None) is None  # the median: not the warm-up, not the mean


def test_benchmark_registry_model_as_keras_float16_and_int8(tmp_path):
    result = invoke("benchmark", "slwsr16", "--kind", "keras", "--kind", "int8", "--kind", "float16", "--input-size",
                    "24x16", "--repeats", 2, "--warmup", 1, "--json", tmp_path / "b.json")  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "b.json").read_text())
    rows = {r["kind"]: r for r in data["rows"]}
    assert list(rows) == ["keras", "float16", "int8"] and data["input_size"] == "24x16"
    for row in rows.values():
        # 143,755 params; 67,956,096 multiply-adds for a 24x16 LR input (tfsr.complexity.count_macs)
        assert row["params"] == 143_755 and row["macs"] == 67_956_096 and row["latency_ms"] > 0
        assert row["psnr_y"] is None  # an architecture without weights has no quality to report
    # int8 stores about a byte per weight, the .keras file four (float32) plus its config
    assert 143_755 < rows["int8"]["file_bytes"] < 2 * 143_755 < 4 * 143_755 < rows["keras"]["file_bytes"]
    assert 2 * 143_755 < rows["float16"]["file_bytes"] < 3 * 143_755  # two bytes per weight
    assert any(line.split()[:3] == ["slwsr16", "int8", "143,755"] for line in result.stdout.splitlines())


def test_benchmark_scores_trained_files_and_plots_the_pareto_picture(tmp_path, tiny_set):
    from tfsr.tflite import ConvertOptions, convert

    model = tfsr.build_model("slwsr16", 2)
    model.save(tmp_path / "s16.keras")
    (tmp_path / "s16f.tflite").write_bytes(convert(model, ConvertOptions(mode="float32", io="float32")))
    patches = [smooth_image(np.random.default_rng(i), 16, 16).astype(np.float32) for i in range(4)]
    (tmp_path / "tiny_u8.tflite").write_bytes(convert(tiny_sr(2), ConvertOptions("int8", "uint8"), patches))
    result = invoke("benchmark", tmp_path / "s16.keras", tmp_path / "s16f.tflite", tmp_path / "tiny_u8.tflite",
                    "--scale", 2, "--kind", "keras",
                    "--input-size", "16x16", "--repeats", 1, "--data", tiny_set, "--json", tmp_path / "b.json",
                    "--plot", tmp_path / "pareto.png", "--threads", 1)  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert [(r["model"], r["kind"]) for r in rows] == [("s16", "keras"), ("s16f", "tflite"), ("tiny_u8", "int8")]
    # the float TFLite file is the same network: the same score to a hundredth of a dB
    assert rows[1]["psnr_y"] == pytest.approx(rows[0]["psnr_y"], abs=0.01)
    assert rows[1]["params"] is None and rows[1]["file_bytes"] == (tmp_path / "s16f.tflite").stat().st_size
    assert rows[2]["psnr_y"] > 20  # uint8 I/O is an int8 model too, scored like the others
    assert Image.open(tmp_path / "pareto.png").size == (60 + 2 * 420 + 90 + 40, 56 + 320 + 48)  # two panels


def test_benchmark_plot_without_scores_is_a_clear_error(tmp_path, tiny_set):
    # an architecture without weights is not scored, even with a data set
    result = invoke("benchmark", "slwsr16", "--kind", "keras", "--input-size", "8x8", "--repeats", 1, "--data", tiny_set,
                    "--plot", tmp_path / "p.png")  # fmt: skip
    assert result.exit_code == 2
    assert result.stderr.strip().endswith("--plot needs PSNR values: pass --data SET and trained models "
                                          "(.keras, run folders, .tflite)")  # fmt: skip
    assert not (tmp_path / "p.png").exists()


def test_readme_results_blocks_are_replaced_in_place():
    import importlib.util

    from tests.conftest import ROOT

    spec = importlib.util.spec_from_file_location("make_readme_results", ROOT / "scripts" / "make_readme_results.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    text = "a\n<!-- results:zoo -->\nold\n<!-- /results:zoo -->\n<!-- results:int8 -->\nkeep\n<!-- /results:int8 -->\n"
    assert script.replace_block(text, "zoo", "| new |") == text.replace("old", "| new |")
    with pytest.raises(SystemExit, match="no <!-- results:latency -->"):
        script.replace_block(text, "latency", "x")
    readme = (ROOT / "README.md").read_text()
    for part in script.PARTS:  # every part the script generates has its block in the README
        assert f"<!-- results:{part} -->" in readme and f"<!-- /results:{part} -->" in readme
