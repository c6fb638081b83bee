"""`cli.py import-weights`: an authors' PyTorch checkpoint (.pth/.pt, or its tensors as .npz) -> a tfsr .keras."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tfsr.errors import TfsrError
from tfsr.registry import build_model
from tfsr.atomic import save_model_atomic
from tfsr.weights import assign_state_dict, load_state_dict


@dataclass
class ImportWeightsConfig:
    model: str
    checkpoint: str
    out: str
    scale: int = 4


@dataclass
class ImportResult:
    model: str
    scale: int
    params: int
    tensors: int
    out: Path

    def summary(self) -> str:
        return (f"imported {self.tensors} tensors into {self.model} x{self.scale} "
                f"({self.params:,} params) -> {self.out}")  # fmt: skip


def run(config: ImportWeightsConfig) -> ImportResult:
    out = Path(config.out)
    if out.suffix != ".keras":
        raise TfsrError(f"--out {out} must end in .keras")
    state = load_state_dict(config.checkpoint)
    model = build_model(config.model, config.scale)
    assign_state_dict(model, state, source=str(config.checkpoint))
    save_model_atomic(model, out)
    return ImportResult(config.model, config.scale, model.count_params(), len(state), out)
