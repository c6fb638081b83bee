"""Self-ensemble, the "+" of the SR papers' tables (EDSR+, RFDN+): the mean of the SR of 8 flips/rotations."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfsr.predictors import Predictor

# The dihedral group of the square: (quarter turns, horizontal flip first).
TRANSFORMS = tuple((turns, flip) for flip in (False, True) for turns in range(4))


def _forward(img: np.ndarray, turns: int, flip: bool) -> np.ndarray:
    return np.rot90(img[:, ::-1] if flip else img, turns)


def _inverse(img: np.ndarray, turns: int, flip: bool) -> np.ndarray:
    img = np.rot90(img, -turns)
    return img[:, ::-1] if flip else img


def self_ensemble(predict, lr: np.ndarray) -> np.ndarray:
    """Mean of ``inverse(predict(transform(lr)))`` over the 8 transforms, in float32."""
    total = None
    for turns, flip in TRANSFORMS:
        sr = _inverse(np.asarray(predict(np.ascontiguousarray(_forward(lr, turns, flip))), dtype=np.float32), turns, flip)
        total = sr.copy() if total is None else total + sr
    return total / len(TRANSFORMS)


@dataclass
class EnsemblePredictor:
    """``inner`` with self-ensemble; labelled ``<label>+`` as in the papers."""

    inner: Predictor

    @property
    def label(self) -> str:
        return f"{self.inner.label}+"

    @property
    def scale(self) -> int:
        return self.inner.scale

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        return self_ensemble(self.inner, lr)
