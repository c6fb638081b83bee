"""RFDN, RFDN-L and E-RFDN (Liu, Tang, Wu, "Residual Feature Distillation Network for Lightweight Image
Super-Resolution", ECCV AIM workshop 2020), after the released code ``njulj/RFDN`` (``block.py``, ``RFDN.py``).

Layer names equal the PyTorch state-dict prefixes (``fea_conv``, ``B1.c1_d``, ``B1.esa.conv1``, ``c.0``,
``LR_conv``, ``upsampler.0``), so the authors' ``RFDN_AIM.pth`` imports by name (see tfsr.weights).

- ``erfdn``: the AIM 2020 winner, exactly as released: 50 channels, 4 RFDBs, ESA attention, no block residual
  (433,448 params at x4; x2/x3 re-head the single sub-pixel step).
- ``rfdn`` / ``rfdn_l``: the paper models (48 / 52 channels, 6 RFDBs). No code was released for them; the
  author says in njulj/RFDN#3 that they differ from E-RFDN by the block residual, and the paper (issue #12) uses
  IMDN's contrast-aware channel attention, with reduction 4 (issue #5): this reproduces all six published
  parameter counts exactly.

ESA needs LR inputs of at least 15x15 (a stride-2 3x3 conv and a 7x7/3 max-pool, both unpadded, as released).
"""
from __future__ import annotations

from dataclasses import replace

from tfsr.keras import keras, layers
from tfsr.layers import ContrastPooling, PixelShuffle, ResizeLike
from tfsr.models.common import conv
from tfsr.registry import Int8Path, Recipe, register_model

ATTENTIONS = ("esa", "cca")
NEGATIVE_SLOPE = 0.05
PAPER = "Liu, Tang, Wu, Residual Feature Distillation Network for Lightweight Image Super-Resolution, ECCVW 2020"

RFDN_RECIPE = Recipe(
    loss="l1",
    lr_patch=64,
    batch_size=64,
    learning_rate=5e-4,
    halve_every=200_000,
    iterations=1_000_000,
    augment="flip+rot90",
    source="RFDN paper (via a faithful summary): DIV2K, L1, Adam 5e-4 halved every 2e5 it, batch 64, "
    "flip+rot90, x3/x4 initialised from x2; LR patch 64 and 1M iterations unverified (FriedRiceLab re-run)",
)
ERFDN_RECIPE = replace(
    RFDN_RECIPE,
    source="AIM 2020 report: DF2K, HR patch 256, batch 64, L1 at 5e-4 halved periodically, then an L2 "
    "fine-tune at ~1e-5 (schedule details unverified); x4 initialised from x2",
)
_SHUFFLE_FALLBACK = "DEPTH_TO_SPACE (not on the Edge TPU): needs a replacement for --target edgetpu"
ERFDN_INT8 = Int8Path(
    custom_layers=("ResizeLike", "PixelShuffle"),
    fallbacks=(
        "ESA attention multiply (features x sigmoid mask): int8 MUL of two activations",
        "ESA bilinear resize to a dynamic size (RESIZE_BILINEAR, half-pixel); the Edge TPU needs static shapes",
        "ESA unpadded stride-2 conv + 7x7/3 max-pool: LR input at least 15x15",
        "LeakyReLU(0.05) as separate layers (int8 LEAKY_RELU)",
        _SHUFFLE_FALLBACK,
    ),
    notes="activations of the ESA mask saturate near 0/1; per-channel weight quantization matters",
)
RFDN_INT8 = Int8Path(
    custom_layers=("ContrastPooling", "PixelShuffle"),
    fallbacks=(
        "CCA channel-attention multiply (features x per-channel sigmoid): int8 MUL with broadcast",
        "contrast pooling (mean + std: SQRT in int8 loses resolution near 0)",
        "LeakyReLU(0.05) as separate layers (int8 LEAKY_RELU)",
        _SHUFFLE_FALLBACK,
    ),
)


def leaky_relu(x, name: str):
    # A separate LeakyReLU layer: tfmot quantizes the conv before it (a LeakyReLU fused as a conv activation is
    # rejected by QAT), and the activation often follows an Add that it cannot fuse into anyway.
    return layers.LeakyReLU(NEGATIVE_SLOPE, name=name)(x)


def enhanced_spatial_attention(x, name: str):
    """ESA (released ``block.ESA``): a cheap large-receptive-field mask multiplied onto ``x``."""
    channels = x.shape[-1]
    f = channels // 4
    c1_ = conv(x, f, 1, name=f"{name}.conv1")
    c1 = conv(c1_, f, 3, strides=2, padding="valid", name=f"{name}.conv2")
    v = layers.MaxPooling2D(7, strides=3, padding="valid", name=f"{name}.max_pool")(c1)
    v = conv(v, f, 3, name=f"{name}.conv_max", activation="relu")
    c3 = conv(v, f, 3, name=f"{name}.conv3", activation="relu")
    c3 = conv(c3, f, 3, name=f"{name}.conv3_")
    c3 = ResizeLike(name=f"{name}.upsample")([c3, x])
    cf = conv(c1_, f, 1, name=f"{name}.conv_f")
    mask = conv(layers.Add(name=f"{name}.add")([c3, cf]), channels, 1, name=f"{name}.conv4", activation="sigmoid")
    return layers.Multiply(name=f"{name}.mul")([x, mask])


def contrast_channel_attention(x, name: str, reduction: int = 4):
    """IMDN's CCA layer (``contrast`` + ``avg_pool`` -> ``conv_du``): a per-channel sigmoid gate on ``x``."""
    channels = x.shape[-1]
    y = ContrastPooling(name=f"{name}.contrast")(x)
    y = conv(y, channels // reduction, 1, name=f"{name}.conv_du.0", activation="relu")
    y = conv(y, channels, 1, name=f"{name}.conv_du.2", activation="sigmoid")
    return layers.Multiply(name=f"{name}.mul")([x, y])


def rfdb(x, name: str, attention: str, block_residual: bool):
    """Residual feature distillation block: three distillation steps, a 1x1 fusion and an attention."""
    channels = x.shape[-1]
    distilled = channels // 2  # the released code ignores its distillation_rate argument: the rate is 0.5
    kept, r = [], x
    for step in (1, 2, 3):
        kept.append(leaky_relu(conv(r, distilled, 1, name=f"{name}.c{step}_d"), f"{name}.c{step}_d.act"))
        shallow = conv(r, channels, 3, name=f"{name}.c{step}_r")
        r = leaky_relu(layers.Add(name=f"{name}.c{step}_r.add")([shallow, r]), f"{name}.c{step}_r.act")
    kept.append(leaky_relu(conv(r, distilled, 3, name=f"{name}.c4"), f"{name}.c4.act"))
    fused = conv(layers.Concatenate(name=f"{name}.concat")(kept), channels, 1, name=f"{name}.c5")
    if attention == "esa":
        out = enhanced_spatial_attention(fused, f"{name}.esa")
    else:
        out = contrast_channel_attention(fused, f"{name}.cca")
    if block_residual:
        out = layers.Add(name=f"{name}.residual")([out, x])
    return out


def build_rfdn(
    n_feats: int,
    n_blocks: int,
    scale: int,
    input_shape=(None, None, 3),
    attention: str = "esa",
    block_residual: bool = False,
    name: str | None = None,
) -> keras.Model:
    if attention not in ATTENTIONS:
        raise ValueError(f"attention must be one of {ATTENTIONS}, not {attention!r}")
    inputs = keras.Input(shape=input_shape, name="lr")
    fea = conv(inputs, n_feats, 3, name="fea_conv")
    outs, x = [], fea
    for k in range(1, n_blocks + 1):
        x = rfdb(x, f"B{k}", attention, block_residual)
        outs.append(x)
    c = leaky_relu(conv(layers.Concatenate(name="c.concat")(outs), n_feats, 1, name="c.0"), "c.1")
    lr = layers.Add(name="LR_conv.add")([conv(c, n_feats, 3, name="LR_conv"), fea])
    y = conv(lr, 3 * scale * scale, 3, name="upsampler.0")
    y = PixelShuffle(scale, name="upsampler.1")(y)
    return keras.Model(inputs, y, name=name or f"rfdn{n_feats}x{n_blocks}_x{scale}")


def _register(name: str, n_feats: int, n_blocks: int, attention: str, block_residual: bool, **facts):
    def builder(scale=4, input_shape=(None, None, 3), attention=attention, block_residual=block_residual):
        return build_rfdn(n_feats, n_blocks, scale, input_shape, attention, block_residual, name=f"{name}_x{scale}")

    register_model(name, paper=PAPER, **facts)(builder)


_register("rfdn", 48, 6, "cca", True, description="RFDN (paper): 48 channels, 6 RFDBs, CCA attention",
          paper_params={2: 534_000, 3: 541_000, 4: 550_000}, recipe=RFDN_RECIPE, int8=RFDN_INT8)  # fmt: skip
_register("rfdn_l", 52, 6, "cca", True, description="RFDN-L (paper): 52 channels, 6 RFDBs, CCA attention",
          paper_params={2: 626_000, 3: 633_000, 4: 643_000}, recipe=RFDN_RECIPE, int8=RFDN_INT8)  # fmt: skip
_register("erfdn", 50, 4, "esa", False, description="E-RFDN (AIM 2020 winner, official code): 50 ch, 4 RFDBs, ESA",
          paper_params={4: 433_000}, recipe=ERFDN_RECIPE, int8=ERFDN_INT8)  # fmt: skip
