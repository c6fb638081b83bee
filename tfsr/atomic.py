"""Atomic file writes: write beside the target, then rename over it. A crash, a kill or a full disk never leaves
a half-written file, and the previous version stays intact until the new one is complete."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None):
    """Yield a temporary path in ``path``'s folder; rename it onto ``path`` if the block succeeds, else delete it.

    ``suffix`` (default: the target's) matters to writers that pick the format from the name (Keras, Pillow).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix if suffix is None else suffix)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes owner-only files; give the result the usual permissions
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def save_model_atomic(model, path: str | Path) -> None:
    """Save a ``.keras`` model atomically."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
