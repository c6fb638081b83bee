"""tfmot QuantizeConfigs for every tfsr custom layer, and the annotate / apply step of QAT.

What each config quantizes follows what the TFLite int8 kernel of the layer does, so the fake-quant graph and
the converted graph agree:
- shape-only ops whose int8 kernels keep their input's scale (DEPTH_TO_SPACE, RESIZE_BILINEAR): nothing;
- ops that compute new values (mean shift, contrast pooling, channel mean/max, Multiply): their output;
- layers with learnable scalars (LearnableScalar): the scalar (per tensor) and the output.
"""
from __future__ import annotations

import tensorflow_model_optimization as tfmot

from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
    prune_preserve_quantize_registry,
)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import default_8bit_quantize_registry

from tfsr import layers as tfsr_layers
from tfsr.errors import TfsrError
from tfsr.keras import keras
from tfsr.models.common import activation_name, graph_use

quantizers = tfmot.quantization.keras.quantizers
QuantizeConfig = tfmot.quantization.keras.QuantizeConfig
_DEFAULT_REGISTRY = default_8bit_quantize_registry.Default8BitQuantizeRegistry()
Default8BitConvQuantizeConfig = default_8bit_quantize_registry.Default8BitConvQuantizeConfig
Default8BitConvTransposeQuantizeConfig = default_8bit_quantize_registry.Default8BitConvTransposeQuantizeConfig
WRAPPABLE_ACTIVATIONS = ("linear", "relu", "swish", "gelu", "softmax", "sigmoid", "tanh")  # tfmot's QuantizeAwareActivation


def _activation_quantizer():
    return quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)


class NoQuantizeConfig(QuantizeConfig):
    """Nothing to quantize: the op's int8 kernel passes its input's scale through."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {}


class OutputQuantizeConfig(NoQuantizeConfig):
    """No weights; the output is a new int8 tensor with its own learned range."""

    def get_output_quantizers(self, layer):
        return [_activation_quantizer()]


class ScalarWeightsQuantizeConfig(OutputQuantizeConfig):
    """Learnable scalars quantized per tensor (symmetric, as TFLite stores MUL constants), plus the output."""

    WEIGHT_ATTRS = {"LearnableScalar": "scalar"}

    def get_weights_and_quantizers(self, layer):
        weight = getattr(layer, self.WEIGHT_ATTRS[type(layer).__name__])
        return [(weight, quantizers.LastValueQuantizer(num_bits=8, per_axis=False, symmetric=True, narrow_range=True))]

    def set_quantize_weights(self, layer, quantize_weights):
        setattr(layer, self.WEIGHT_ATTRS[type(layer).__name__], quantize_weights[0])


def _pixel_range_quantizer():
    return quantizers.FixedQuantizer(num_bits=8, init_min=0.0, init_max=255.0, narrow_range=False)


class PixelRangeOutputConfig(NoQuantizeConfig):
    """The in-graph output clip as a fixed [0, 255] output range: int8 saturation clips exactly like the ReLU.

    Kept as ReLU(max_value=255) the clip lowers to MINIMUM + RELU with an unquantized tensor between them, which
    the QAT converter leaves in float (DEQUANTIZE, float ops, QUANTIZE at the end of the graph). Also the config
    of a weightless layer that feeds the clip (see ``PixelRangeConvConfig``).
    """

    def get_output_quantizers(self, layer):
        return [_pixel_range_quantizer()]


class PixelRangeConvConfig(Default8BitConvQuantizeConfig):
    """A conv whose output reaches the output clip only through pixel shuffles: its output takes the clip's fixed
    [0, 255] range (clipping before a pixel shuffle equals clipping after it).

    With its own learned range, the conv's output is rounded to that range's step, then requantized to the clip's
    step 1.0, through float (DEQUANTIZE + QUANTIZE) where a pixel shuffle sits between them: the RFDN family's and
    LFN's QAT exports were not fully int8. Quality is unchanged within noise (E-RFDN, QAT before fine-tuning:
    Set5 x4 31.31 dB with the conv's own range, 31.30 with the clip's).
    """

    def __init__(self, weight_attrs, activation_attrs, quantize_output, keep_zeros=False):
        super().__init__(weight_attrs, activation_attrs, quantize_output)
        self.keep_zeros = keep_zeros
        self.activation_quantizer = _pixel_range_quantizer()
        if keep_zeros:  # what tfmot's prune-preserve scheme puts in the default conv config
            self.weight_quantizer = prune_preserve_quantize_registry.PrunePreserveDefault8BitConvWeightsQuantizer()

    def get_config(self):
        return {**super().get_config(), "keep_zeros": self.keep_zeros}


def is_output_clip(layer) -> bool:
    return (isinstance(layer, keras.layers.ReLU) and layer.max_value is not None and float(layer.max_value) == 255.0
            and float(layer.threshold) == 0.0 and float(layer.negative_slope) == 0.0)  # fmt: skip


# Every layer class of tfsr.layers must appear here: a test checks it, so a new layer cannot be forgotten.
CUSTOM_LAYER_CONFIGS: dict[str, type[QuantizeConfig]] = {
    "PixelShuffle": NoQuantizeConfig,
    "ResizeLike": NoQuantizeConfig,
    "MeanShift": OutputQuantizeConfig,
    "ContrastPooling": OutputQuantizeConfig,
    "ChannelMeanMax": OutputQuantizeConfig,
    "LearnableScalar": ScalarWeightsQuantizeConfig,
}
def custom_layer_classes() -> dict[str, type]:
    """Every layer class defined in tfsr.layers."""
    return {
        name: obj
        for name, obj in vars(tfsr_layers).items()
        if isinstance(obj, type) and issubclass(obj, keras.layers.Layer) and obj.__module__ == tfsr_layers.__name__
    }


def quantize_scope_objects() -> dict[str, object]:
    """What ``quantize_apply`` must be able to deserialize: tfsr layers and the configs."""
    configs = {c.__name__: c for c in (NoQuantizeConfig, OutputQuantizeConfig, ScalarWeightsQuantizeConfig,
                                        PixelRangeOutputConfig, PixelRangeConvConfig, Default8BitConvQuantizeConfig,
                                        Default8BitConvTransposeQuantizeConfig)}  # fmt: skip
    return {**custom_layer_classes(), **configs}


def config_for(layer) -> QuantizeConfig | None:
    """The explicit config a layer needs, or None when tfmot's default 8-bit registry handles it.

    Weightless Keras layers the registry does not know (Multiply, Average, LeakyReLU ...) quantize their output,
    as their int8 TFLite kernels (MUL, ADD+MUL, LEAKY_RELU) produce a new tensor with its own scale.
    """
    name = type(layer).__name__
    if name in CUSTOM_LAYER_CONFIGS:
        return CUSTOM_LAYER_CONFIGS[name]()
    if _DEFAULT_REGISTRY.supports(layer):
        if isinstance(layer, keras.layers.Conv2DTranspose):  # before Conv2D, its base class (other kernel layout)
            # The default registry's own config, made explicit: tfmot's prune-preserve scheme has none for it
            # (LiteSRNet's upsampler); explicitly configured, that layer is quantized without keeping its zeros.
            return Default8BitConvTransposeQuantizeConfig(["kernel"], ["activation"], False)
        if isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D) and activation_name(layer) not in WRAPPABLE_ACTIVATIONS:
            # tfmot cannot wrap relu6 (s-LWSR's compressed blocks): leave the activation alone, quantize the
            # weights per channel and the output after the activation, which is how TFLite fuses it.
            kernel = "depthwise_kernel" if isinstance(layer, keras.layers.DepthwiseConv2D) else "kernel"
            return Default8BitConvQuantizeConfig([kernel], [], True)
        return None
    if not layer.weights:
        return OutputQuantizeConfig()
    raise TfsrError(f"layer {layer.name} ({name}) has weights but no int8 quantize config; add one in {__name__}")


def clip_producers(model: keras.Model) -> set[str]:
    """Names of the layers whose output reaches an output clip through nothing but pixel shuffles, and feeds
    nothing else: a plain conv (linear activation) or a weightless layer (an Add included)."""
    use = graph_use(model)
    found = set()
    for [tensor] in (inputs for layer, _, inputs, _ in use.nodes if is_output_clip(layer)):
        layer, inputs = use.producers[id(tensor)]
        while isinstance(layer, tfsr_layers.PixelShuffle) and use.readers[id(tensor)] == 1:
            [tensor] = inputs
            layer, inputs = use.producers[id(tensor)]
        if use.readers[id(tensor)] != 1 or isinstance(layer, keras.layers.InputLayer):
            continue
        plain_conv = type(layer) is keras.layers.Conv2D and activation_name(layer) in ("", "linear")
        # An Add: where tfsr.quantization.split summed the parts of the last conv.
        weightless = not layer.weights and (isinstance(config_for(layer), OutputQuantizeConfig) or type(layer) is keras.layers.Add)
        if plain_conv or weightless:
            found.add(layer.name)
    return found


def annotate(model: keras.Model, preserve_sparsity: bool = False) -> keras.Model:
    """A clone of ``model`` with every layer marked for quantization, custom configs where needed."""
    producers = clip_producers(model)

    def clone(layer):
        if is_output_clip(layer):
            clip = keras.layers.Activation("linear", name=layer.name)
            return tfmot.quantization.keras.quantize_annotate_layer(clip, quantize_config=PixelRangeOutputConfig())
        copy = layer.__class__.from_config(layer.get_config())
        if isinstance(layer, keras.layers.InputLayer):
            return copy
        config = config_for(layer)
        if layer.name in producers:
            config = PixelRangeConvConfig(["kernel"], ["activation"], False, preserve_sparsity) if layer.weights else PixelRangeOutputConfig()
        return tfmot.quantization.keras.quantize_annotate_layer(copy, quantize_config=config)

    annotated = keras.models.clone_model(model, clone_function=clone)
    annotated.set_weights(model.get_weights())
    return annotated


def quantize_model(model: keras.Model, preserve_sparsity: bool = False) -> keras.Model:
    """The QAT (fake-quantized) version of a float model; ``preserve_sparsity`` keeps pruned zeros at zero."""
    scheme = None
    if preserve_sparsity:
        from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
            default_8bit_prune_preserve_quantize_scheme as prune_preserve,
        )

        scheme = prune_preserve.Default8BitPrunePreserveQuantizeScheme()
    with tfmot.quantization.keras.quantize_scope(quantize_scope_objects()):
        annotated = annotate(model, preserve_sparsity)
        if scheme is None:
            return tfmot.quantization.keras.quantize_apply(annotated)
        return tfmot.quantization.keras.quantize_apply(annotated, scheme)
