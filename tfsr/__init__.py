"""tfsr: lightweight single-image super-resolution in TensorFlow/Keras, down to int8 TFLite for edge NPUs.

``tfsr.list_models()``, ``tfsr.build_model(name, scale=4, **overrides)`` and ``tfsr.get_spec(name)`` load
TensorFlow on first use, so ``import tfsr`` (and the CLI's error paths) stay fast.
"""
from tfsr.errors import TfsrError

__all__ = ["TfsrError", "build_model", "get_spec", "list_models"]
__version__ = "0.1.0"


def __getattr__(name):
    if name in ("build_model", "get_spec", "list_models"):
        from tfsr import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'tfsr' has no attribute {name!r}")
