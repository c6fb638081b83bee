"""HFDN (Li, Li, Liu, "Lightweight Image Super-Resolution Reconstruction With Hierarchical Feature-driven
Network", ICIP 2020). No code or weights were published: this is tfsr's interpretation of the talk slides
(../shared/papers/hfdn-icip2020-slides.txt), sized to the published parameter counts.

What the slides state, and how it is built here:
- Four parts: shallow feature extraction (one 3x3 conv), non-linear mapping, an attention block, and a
  multi-supervised reconstruction.
- Non-linear mapping = stacked hierarchical fuse modules (HFM), each an adaptive dense unit (ADU) and an
  enhancement unit (EU). ADU: a dense unit of 4 conv3x3+LeakyReLU(0.05) layers (growth 24); "adaptive weights
  when performing channel-wise concatenation" (the ADU/NA ablation) = one learnable scalar per concatenated
  feature (the unit's input and each layer's output), used by every concatenation; a 1x1 fusion back to C
  channels plus the unit's input. EU "refines" the ADU's features: conv3x3 + LeakyReLU, conv1x1, residual.
- Six HFMs in three levels of two (shallow, middle, deep); each level's features get the global skip of the
  shallow features. The three levels are fused by a 1x1 conv and a 3x3 conv (global feature fusion).
- Attention block: channel attention (global average pooling, 1x1 conv C->C/4, ReLU, 1x1 conv, sigmoid) then
  spatial attention (channel mean and max, 7x7 conv, sigmoid), once, on the fused deep features (the slides'
  part 3; its ablation adds CA, SA, CA&SA to one baseline).
- Reconstruction: "three deconvolution layers reconstruct three intermediate SR images from shallow, middle and
  deep levels, and gradually combine them": per level a C->C transposed conv (kernel 4 stride 2 at x2, 5/3 at
  x3, 4/4 at x4: with C=48 this makes x3 62,208 larger than x2 = x4, as the paper's 823K vs 760.1K, +62.9K),
  LeakyReLU, a 3x3 conv to RGB; then shallow+middle are combined by a 3x3 conv over their concatenation, and
  that with deep.

Parameters: 762,000 (x2, x4) and 824,208 (x3) against the paper's 760.1K and 823K (+0.25%, +0.15%). The EU's
1x1 conv and the global feature fusion are the choices that land there (without them: -5%). The paper's
mult-adds (260.7G / 248.2G / 178.5G) exceed ours (see ``cli.py models``): its counting convention for the
deconvolutions, or more work at HR resolution, is not stated.
Training: the slides' L1 + SSIM on every intermediate output (``training_outputs=True``).
"""
from __future__ import annotations

from tfsr.keras import keras, layers
from tfsr.layers import ChannelMeanMax, LearnableScalar
from tfsr.models.common import conv, transposed_conv_layer
from tfsr.models.rfdn import leaky_relu
from tfsr.registry import Int8Path, Recipe, register_model

PAPER = "Li, Li, Liu, Lightweight Image Super-Resolution Reconstruction With Hierarchical Feature-driven Network, ICIP 2020"
LEVELS = ("shallow", "middle", "deep")
DECONV_KERNEL = {2: 4, 3: 5, 4: 4}

HFDN_RECIPE = Recipe(
    loss="l1+ssim",
    lr_patch=48,
    batch_size=16,
    learning_rate=1e-4,
    halve_every=200_000,
    iterations=1_000_000,
    augment="flip+rot90",
    source="slides: Adam, lr 1e-4 decayed to 1e-5, L1 + SSIM loss on every intermediate SR output, LR patches "
    "48/32/24 at x2/x3/x4 (HR 96); batch, schedule and data (DIV2K) are the 2020 lightweight-SR norm, unverified",
)
HFDN_INT8 = Int8Path(
    custom_layers=("LearnableScalar", "ChannelMeanMax"),
    fallbacks=(
        "channel- and spatial-attention multiplies (features x sigmoid gates): int8 MUL of two activations",
        "three Conv2DTranspose layers (TRANSPOSE_CONV int8)",
        "LeakyReLU(0.05) as separate layers (int8 LEAKY_RELU)",
    ),
    notes="the learnable concatenation scalars fold into the next conv's weights for inference",
)


def adaptive_dense_unit(x, name: str, n_layers: int, growth: int):
    scaled = [LearnableScalar(name=f"{name}.w0")(x)]
    for i in range(1, n_layers + 1):
        inputs = layers.Concatenate(name=f"{name}.cat{i}")(scaled) if len(scaled) > 1 else scaled[0]
        out = leaky_relu(conv(inputs, growth, 3, name=f"{name}.conv{i}"), f"{name}.act{i}")
        scaled.append(LearnableScalar(name=f"{name}.w{i}")(out))
    fused = conv(layers.Concatenate(name=f"{name}.cat")(scaled), x.shape[-1], 1, name=f"{name}.fuse")
    return layers.Add(name=f"{name}.add")([fused, x])


def enhancement_unit(x, name: str):
    t = leaky_relu(conv(x, x.shape[-1], 3, name=f"{name}.conv1"), f"{name}.act")
    return layers.Add(name=f"{name}.add")([conv(t, x.shape[-1], 1, name=f"{name}.conv2"), x])


def attention_block(x, name: str, reduction: int = 4):
    channels = x.shape[-1]
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}.ca.pool")(x)
    gate = conv(pooled, channels // reduction, 1, name=f"{name}.ca.conv1", activation="relu")
    gate = conv(gate, channels, 1, name=f"{name}.ca.conv2", activation="sigmoid")
    x = layers.Multiply(name=f"{name}.ca.mul")([x, gate])
    descriptor = ChannelMeanMax(name=f"{name}.sa.pool")(x)
    mask = conv(descriptor, 1, 7, name=f"{name}.sa.conv", activation="sigmoid")
    return layers.Multiply(name=f"{name}.sa.mul")([x, mask])


def reconstruct(x, scale: int, name: str):
    k = DECONV_KERNEL[scale]
    up = transposed_conv_layer(x.shape[-1], k, strides=scale, padding="same", name=f"{name}.deconv")(x)
    return conv(leaky_relu(up, f"{name}.act"), 3, 3, name=f"{name}.rgb")


def build_hfdn(
    scale: int,
    input_shape=(None, None, 3),
    n_feats: int = 48,
    modules_per_level: int = 2,
    dense_layers: int = 4,
    growth: int = 24,
    training_outputs: bool = False,
) -> keras.Model:
    inputs = keras.Input(shape=input_shape, name="lr")
    f0 = conv(inputs, n_feats, 3, name="head")
    x, level_features = f0, []
    for level in LEVELS:
        for m in range(1, modules_per_level + 1):
            name = f"{level}.hfm{m}"
            x = enhancement_unit(adaptive_dense_unit(x, f"{name}.adu", dense_layers, growth), f"{name}.eu")
        level_features.append(layers.Add(name=f"{level}.skip")([x, f0]))
    g = conv(layers.Concatenate(name="gff.cat")(level_features), n_feats, 1, name="gff.fuse")
    deep = layers.Add(name="gff.skip")([conv(g, n_feats, 3, name="gff.conv"), f0])
    deep = attention_block(deep, "attention")
    shallow_sr = reconstruct(level_features[0], scale, "rec.shallow")
    middle_sr = reconstruct(level_features[1], scale, "rec.middle")
    deep_sr = reconstruct(deep, scale, "rec.deep")
    combined = conv(layers.Concatenate(name="combine1.cat")([shallow_sr, middle_sr]), 3, 3, name="combine1")
    sr = conv(layers.Concatenate(name="combine2.cat")([combined, deep_sr]), 3, 3, name="combine2")
    outputs = [sr, shallow_sr, middle_sr, deep_sr] if training_outputs else sr
    return keras.Model(inputs, outputs, name=f"hfdn_x{scale}")


@register_model(
    "hfdn",
    paper=PAPER,
    description="HFDN (interpretation, no code published): 6 hierarchical fuse modules, attention, 3 deconvs",
    paper_params={2: 760_100, 3: 823_000, 4: 760_100},
    recipe=HFDN_RECIPE,
    int8=HFDN_INT8,
)
def hfdn(scale=4, input_shape=(None, None, 3), training_outputs=False):
    """HFDN. ``training_outputs=True`` returns ``[sr, sr_shallow, sr_middle, sr_deep]`` (final output first,
    then the intermediate SR images of the shallow, middle and deep levels) for the multi-supervised loss."""
    return build_hfdn(scale, input_shape, training_outputs=training_outputs)
