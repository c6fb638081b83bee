"""Things that upscale an LR image: bicubic, Keras models (files or run folders). Each maps uint8 RGB LR to
float RGB SR in 0..255. ``.tflite`` predictors live beside the quantization code and register here."""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from tfsr.errors import TfsrError, first_line
from tfsr.imresize import imresize

RUN_MODEL_FILE = "model.keras"


class Predictor(Protocol):
    label: str
    scale: int

    def __call__(self, lr: np.ndarray) -> np.ndarray: ...


@dataclass
class BicubicPredictor:
    scale: int
    label: str = "bicubic"

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        return imresize(lr, self.scale)  # uint8 in, uint8 out, as MATLAB's imresize


@dataclass
class KerasPredictor:
    model: object
    scale: int
    label: str

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        from tfsr.keras import tf

        out = self.model(tf.constant(lr[None].astype(np.float32)), training=False)
        return np.asarray(out[0], dtype=np.float32)


def load_keras_model(path: str | Path):
    """Load a tfsr ``.keras`` file with safe_mode=True: a file holding a Lambda (arbitrary code) is refused."""
    from tfsr.keras import keras
    import tfsr.layers  # noqa: F401  (registers the custom layers)

    path = Path(path)
    if not path.is_file():
        raise TfsrError(f"model file {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise TfsrError(f"model file {path} is not a .keras archive (truncated or another format)")
    try:
        return keras.models.load_model(path, safe_mode=True, compile=False)
    except ValueError as exc:
        if "Lambda" in str(exc) or "safe_mode" in str(exc):
            raise TfsrError(f"model file {path} contains a Lambda layer (arbitrary code); tfsr refuses to load it") from None
        raise TfsrError(f"model file {path} cannot be loaded: {first_line(exc)}") from None
    except Exception as exc:  # a damaged archive fails in zipfile, h5py, JSON or TensorFlow, in many ways
        raise TfsrError(f"model file {path} cannot be loaded (damaged or not a tfsr model): {first_line(exc)}") from None


def model_scale(model) -> int:
    """The upscaling factor of a Keras SR model, measured on a small probe input."""
    probe = np.zeros((1, 32, 32, 3), dtype=np.float32)
    out = model(probe, training=False)
    return int(out.shape[1]) // 32


def check_scale(label: str, actual: int, wanted: int | None) -> int:
    if wanted is not None and actual != wanted:
        raise TfsrError(f"model {label} upscales x{actual}, not x{wanted}: pass --scale {actual} or another model")
    return actual


# Extra predictor kinds (e.g. ``.tflite``) register a factory by file suffix.
SUFFIX_FACTORIES: dict[str, Callable[[Path, int | None], Predictor]] = {}


def make_predictor(spec: str, scale: int | None) -> Predictor:
    """``bicubic``, a ``.keras`` file, a run folder holding ``model.keras``, or a registered file kind."""
    if spec == "bicubic":
        if scale is None:
            raise TfsrError("bicubic needs --scale")
        return BicubicPredictor(scale)
    path = Path(spec)
    if path.is_dir():
        if not (path / RUN_MODEL_FILE).is_file():
            raise TfsrError(f"run folder {path} holds no {RUN_MODEL_FILE}")
        path = path / RUN_MODEL_FILE
        label = path.parent.name
    else:
        label = path.stem
    if path.suffix == ".tflite":
        import tfsr.tflite  # noqa: F401  (registers the .tflite factory; loads LiteRT only when needed)
    if path.suffix in SUFFIX_FACTORIES:
        return SUFFIX_FACTORIES[path.suffix](path, scale)
    if path.suffix != ".keras":
        if not path.exists():
            _raise_unknown_model(spec)
        raise TfsrError(f"model file {path} has an unknown type; use a .keras file, a run folder or bicubic")
    model = load_keras_model(path)
    return KerasPredictor(model, check_scale(label, model_scale(model), scale), label)


def _raise_unknown_model(spec: str):
    from tfsr.registry import list_models

    known = list_models()
    if spec in known:
        raise TfsrError(
            f"{spec} is an architecture without trained weights: train it (cli.py train {spec}) or import "
            f"weights (cli.py import-weights), then pass the .keras file or run folder"
        )
    raise TfsrError(
        f"model {spec!r} is not 'bicubic', an existing .keras/.tflite file or a run folder "
        f"(registered architectures: {', '.join(known)})"
    )
