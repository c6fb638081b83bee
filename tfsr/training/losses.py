"""Pixel losses on RGB in 0..255, computed on a 0..1 scale (so SSIM has its usual constants).

Models trained on several SR outputs (HFDN's multi-supervision) get the same loss on each output: Keras applies
a single loss function to every output of a multi-output model.
"""
from __future__ import annotations

from tfsr.errors import TfsrError
from tfsr.keras import tf

CHARBONNIER_EPSILON = 1e-3


def _unit(y_true, y_pred):
    return tf.cast(y_true, tf.float32) / 255.0, tf.cast(y_pred, tf.float32) / 255.0


def l1(y_true, y_pred):
    t, p = _unit(y_true, y_pred)
    return tf.reduce_mean(tf.abs(t - p), axis=[1, 2, 3])


def charbonnier(y_true, y_pred):
    t, p = _unit(y_true, y_pred)
    return tf.reduce_mean(tf.sqrt(tf.square(t - p) + CHARBONNIER_EPSILON**2), axis=[1, 2, 3])


def l1_ssim(y_true, y_pred):
    """L1 + (1 - SSIM): SSIM of Wang et al. (11x11 Gaussian window) on RGB, range 1."""
    t, p = _unit(y_true, y_pred)
    return l1(y_true, y_pred) + (1.0 - tf.image.ssim(t, tf.clip_by_value(p, 0.0, 1.0), max_val=1.0))


LOSSES = {"l1": l1, "l1+ssim": l1_ssim, "charbonnier": charbonnier}


def get_loss(name: str):
    if name not in LOSSES:
        raise TfsrError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return LOSSES[name]
