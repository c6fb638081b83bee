"""`cli.py models`: the zoo with parameters and multiply-adds next to the papers' numbers."""
from __future__ import annotations

from dataclasses import dataclass

from pipelines.report import format_table
from tfsr.complexity import PAPER_OUTPUT_HW, count_macs, lr_size_for_output
from tfsr.registry import build_model, get_spec, list_models


@dataclass
class ModelsConfig:
    scale: int = 4
    as_json: bool = False
    markdown: bool = False


def model_rows(scale: int) -> list[dict]:
    rows = []
    for name in list_models():
        spec = get_spec(name)
        if scale not in spec.scales:
            continue
        model = build_model(name, scale)
        rows.append(
            {
                "model": name,
                "scale": scale,
                "params": model.count_params(),
                "paper_params": spec.paper_params.get(scale),
                "macs": count_macs(model, lr_size_for_output(scale)),
                "paper": spec.paper,
                "description": spec.description,
            }
        )
    return rows


def run(config: ModelsConfig) -> str:
    rows = model_rows(config.scale)
    if config.as_json:
        import json

        return json.dumps({"output_hw": PAPER_OUTPUT_HW, "models": rows}, indent=1)
    table = format_table(
        ["model", f"params x{config.scale}", "paper params", "mult-adds (G)", "description"],
        [
            [r["model"], f"{r['params']:,}", f"{r['paper_params']:,}" if r["paper_params"] else "-",
             f"{r['macs'] / 1e9:.1f}", r["description"]]
            for r in rows
        ],  # fmt: skip
        markdown=config.markdown,
    )
    return f"{table}\n(mult-adds for a {PAPER_OUTPUT_HW[1]}x{PAPER_OUTPUT_HW[0]} output, convolutions only)"
