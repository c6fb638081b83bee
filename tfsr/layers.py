"""Every custom Keras layer of tfsr: registered and serializable, so `.keras` files load with safe_mode=True.

Layers hold no Python callables (no ``Lambda``): each op is a named class with a ``get_config``.
"""
from __future__ import annotations

from tfsr.keras import keras, tf

register = keras.saving.register_keras_serializable(package="tfsr")


@register
class PixelShuffle(keras.layers.Layer):
    """Sub-pixel upsampling (``tf.nn.depth_to_space``): (H, W, C*r*r) -> (H*r, W*r, C).

    Channel order is TensorFlow's ``(i*r + j)*C + c``; PyTorch checkpoints are permuted on import.
    """

    def __init__(self, scale: int, **kwargs):
        super().__init__(**kwargs)
        self.scale = int(scale)

    def call(self, inputs):
        return tf.nn.depth_to_space(inputs, self.scale)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        r = self.scale
        return (b, None if h is None else h * r, None if w is None else w * r, c // (r * r))

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@register
class MeanShift(keras.layers.Layer):
    """Adds ``sign * rgb_range * rgb_mean`` per channel: the fixed (as-intended) form of EDSR's MeanShift."""

    def __init__(self, sign: int, rgb_mean=(0.4488, 0.4371, 0.4040), rgb_range: float = 255.0, **kwargs):
        super().__init__(**kwargs)
        self.sign = int(sign)
        self.rgb_mean = tuple(float(m) for m in rgb_mean)
        self.rgb_range = float(rgb_range)

    def call(self, inputs):
        shift = tf.constant(self.rgb_mean, dtype=inputs.dtype) * (self.sign * self.rgb_range)
        return inputs + shift

    def get_config(self):
        return {**super().get_config(), "sign": self.sign, "rgb_mean": list(self.rgb_mean), "rgb_range": self.rgb_range}
