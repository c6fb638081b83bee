"""Shared fixtures. Tests needing ../shared (benchmark images, official weights) skip cleanly without it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data"
WEIGHTS = SHARED / "weights"

needs_shared = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is absent")
needs_weights = pytest.mark.skipif(not WEIGHTS.is_dir(), reason="../shared/weights is absent")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def make_benchmark(folder: Path, images: dict[str, np.ndarray], scales=(2, 3, 4), with_lr: bool = True) -> Path:
    """Write a small benchmark set in the EDSR layout (HR/ and LR_bicubic/X{k}/), LR made by tfsr's imresize."""
    from PIL import Image

    from tfsr.imresize import imresize, modcrop

    (folder / "HR").mkdir(parents=True, exist_ok=True)
    for name, hr in images.items():
        Image.fromarray(hr).save(folder / "HR" / f"{name}.png")
        if with_lr:
            for k in scales:
                lr_dir = folder / "LR_bicubic" / f"X{k}"
                lr_dir.mkdir(parents=True, exist_ok=True)
                Image.fromarray(imresize(modcrop(hr, k), 1 / k)).save(lr_dir / f"{name}x{k}.png")
    return folder


@pytest.fixture
def tiny_set(tmp_path, rng):
    """Two smooth random 48x40 RGB images in the EDSR layout."""
    from tfsr.imresize import imresize

    images = {f"img{i}": imresize(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8), 4) for i in range(2)}
    return make_benchmark(tmp_path / "Tiny", images)


# ---------------------------------------------------------------------------------------------- robustness count
# Tests marked ``bad_input`` or ``fault`` are counted and summed up in one line at the end of the session, the
# number the README's robustness section quotes: "N bad inputs tried, M faults survived, 0 lost". The markers
# are declared in pyproject.toml; a test of either kind that fails (in setup, call or teardown) counts as lost.
ROBUSTNESS_MARKERS = ("bad_input", "fault")
_robustness = {"bad_input": 0, "fault": 0, "lost": 0}


def pytest_runtest_logreport(report):
    marked = [m for m in ROBUSTNESS_MARKERS if m in report.keywords]
    if not marked:
        return
    if report.failed:
        _robustness["lost"] += 1
    elif report.when == "call" and report.passed:
        for marker in marked:
            _robustness[marker] += 1


def pytest_terminal_summary(terminalreporter):
    if _robustness["bad_input"] or _robustness["fault"] or _robustness["lost"]:
        terminalreporter.write_line(
            f"robustness: {_robustness['bad_input']} bad inputs tried, {_robustness['fault']} faults survived, "
            f"{_robustness['lost']} lost"
        )
