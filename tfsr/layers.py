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

    def get_prunable_weights(self):
        return []


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

    def get_prunable_weights(self):
        return []


# Layers of the model zoo (RFDN family, HFDN, LFN). None imports tensorflow_model_optimization: each offers
# ``get_prunable_weights`` (tfmot's pruning wrapper accepts any layer that has it), and its docstring's last line
# says what its int8 QuantizeConfig needs.


@register
class ResizeLike(keras.layers.Layer):
    """Bilinear resize of ``inputs[0]`` to the height and width of ``inputs[1]``, with half-pixel centres.

    Equals PyTorch's ``F.interpolate(x, size, mode="bilinear", align_corners=False)`` (E-RFDN's ESA upsampling).
    int8: no weights; RESIZE_BILINEAR keeps its input's scale, so quantize nothing (output = input range).
    """

    def call(self, inputs):
        x, reference = inputs
        return tf.image.resize(x, tf.shape(reference)[1:3], method="bilinear")

    def compute_output_shape(self, input_shape):
        x, reference = input_shape
        return (x[0], reference[1], reference[2], x[3])

    def get_prunable_weights(self):
        return []


@register
class ContrastPooling(keras.layers.Layer):
    """IMDN/RFDN contrast-aware pooling: per channel, spatial mean + population standard deviation -> (B,1,1,C).

    int8: no weights; quantize the output (MEAN, SQUARED_DIFFERENCE, SQRT in TFLite).
    """

    def call(self, inputs):
        mean = tf.reduce_mean(inputs, axis=[1, 2], keepdims=True)
        variance = tf.reduce_mean(tf.square(inputs - mean), axis=[1, 2], keepdims=True)
        # The floor only keeps the gradient of sqrt finite on a constant channel; it is far below float noise.
        return mean + tf.sqrt(tf.maximum(variance, 1e-12))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1, 1, input_shape[3])

    def get_prunable_weights(self):
        return []


@register
class ChannelMeanMax(keras.layers.Layer):
    """CBAM spatial-attention descriptor: concatenated mean and max over channels -> (B, H, W, 2).

    int8: no weights; quantize the output (MEAN and REDUCE_MAX over the channel axis, CONCATENATION).
    """

    def call(self, inputs):
        mean = tf.reduce_mean(inputs, axis=-1, keepdims=True)
        peak = tf.reduce_max(inputs, axis=-1, keepdims=True)
        return tf.concat([mean, peak], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:3], 2)

    def get_prunable_weights(self):
        return []


@register
class LearnableScalar(keras.layers.Layer):
    """Multiplies its input by one learnable scalar, initialised to 1 (HFDN's adaptive concatenation weights).

    int8: quantize the scalar (per tensor) and the output (MUL by a constant); the scalar is never pruned.
    """

    def build(self, input_shape):
        self.scalar = self.add_weight(name="scalar", shape=(), initializer="ones")
        super().build(input_shape)

    def call(self, inputs):
        return inputs * self.scalar

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_prunable_weights(self):
        return []
