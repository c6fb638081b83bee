"""Plain-text, Markdown and JSON output shared by the pipelines."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Sequence

from tfsr.atomic import atomic_path
from tfsr.errors import TfsrError


def parse_size(text: str, order: str = "HxW") -> tuple[int, int]:
    """``--input-size`` as (height, width). ``order`` says how the option is written: "HxW" (quantize, as tensor
    shapes are) or "WxH" (benchmark, as video resolutions are: 320x180 -> 1280x720)."""
    example = {"HxW": "64x64", "WxH": "320x180"}[order]
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise TfsrError(f"--input-size must be {order} in LR pixels (e.g. {example}), not {text!r}")
    first, second = (int(p) for p in parts)
    if first < 1 or second < 1:
        raise TfsrError(f"--input-size must be at least 1x1 LR pixels, not {text!r}")
    return (first, second) if order == "HxW" else (second, first)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]], markdown: bool = False) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row):
        parts = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        return ("| " + " | ".join(parts) + " |") if markdown else "  ".join(parts)

    sep = ("|" + "|".join("-" * (w + 2) for w in widths) + "|") if markdown else "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, data: object) -> None:
    write_text_atomic(path, json.dumps(data, indent=1) + "\n")


@contextlib.contextmanager
def reported_write_errors(target: Path):
    """A failed write (disk full, no permission) as one line; the atomic writers leave the previous file intact."""
    try:
        yield
    except OSError as exc:
        raise TfsrError(f"cannot write {target}: {exc.strerror or exc}; any previous {target.name} is unchanged") from None
