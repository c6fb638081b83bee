"""The model registry, in the spirit of timm: ``list_models()``, ``build_model(name, scale, **overrides)``.

Each architecture module registers one builder per named variant together with the paper's facts about it
(published parameter counts, training recipe, int8 path), so pipelines take their defaults from here.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable

from tfsr.errors import TfsrError
from tfsr.keras import keras


@dataclass(frozen=True)
class Recipe:
    """A paper's training recipe, used by the training pipeline as defaults (every seed paper trains with Adam)."""

    loss: str = "l1"
    lr_patch: int = 48
    batch_size: int = 16
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_epsilon: float = 1e-8
    learning_rate: float = 1e-4
    halve_every: int = 200_000  # iterations between learning-rate halvings (0: constant)
    iterations: int = 1_000_000
    augment: str = "flip+rot90"
    source: str = ""


@dataclass(frozen=True)
class Int8Path:
    """What the int8 conversion of a model involves, for honest per-model quantization reports."""

    custom_layers: tuple[str, ...] = ()  # layers that need a custom tfmot QuantizeConfig
    fallbacks: tuple[str, ...] = ()  # parts known to lose precision or need special handling in int8
    notes: str = ""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., keras.Model]
    paper: str
    description: str
    scales: tuple[int, ...] = (2, 3, 4)
    paper_params: dict[int, int] = field(default_factory=dict)  # scale -> published count (rounded in papers)
    recipe: Recipe = Recipe()
    int8: Int8Path = Int8Path()

    def options(self) -> dict[str, object]:
        """The builder's keyword options and their defaults (the allowed ``build_model`` overrides)."""
        params = inspect.signature(self.builder).parameters
        return {n: p.default for n, p in params.items() if n not in ("scale", "input_shape")}


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, **facts) -> Callable:
    """Decorator registering ``builder(scale, input_shape, **options) -> keras.Model`` under ``name``."""

    def wrap(builder):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelSpec(name=name, builder=builder, **facts)
        return builder

    return wrap


def list_models() -> list[str]:
    _load_zoo()
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    _load_zoo()
    if name not in _REGISTRY:
        raise TfsrError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def build_model(
    name: str,
    scale: int = 4,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    clip_output: bool = False,
    **overrides,
) -> keras.Model:
    """Build a registered model as a functional tf_keras model taking and returning RGB in [0, 255].

    ``clip_output`` appends a clip to [0, 255] inside the graph (what int8 export needs).
    """
    spec = get_spec(name)
    if scale not in spec.scales:
        raise TfsrError(f"{name} supports scales {', '.join(map(str, spec.scales))}, not {scale}")
    allowed = spec.options()
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise TfsrError(
            f"{name} has no option {', '.join(unknown)}; its options are: {', '.join(allowed) or 'none'}"
        )
    model = spec.builder(scale=scale, input_shape=input_shape, **overrides)
    if clip_output:
        clipped = keras.layers.ReLU(max_value=255.0, name="clip_output")(model.output)
        model = keras.Model(model.input, clipped, name=model.name)
    return model


def _load_zoo() -> None:
    import tfsr.models  # noqa: F401  (registers every architecture)
