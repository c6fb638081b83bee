"""s-LWSR: Super Lightweight Super-Resolution Network (Li et al., IEEE TIP 2020), after the released code.

Layer names equal the PyTorch state-dict prefixes of ``Sudo-Biao/s-LWSR`` (``head.0``, ``feat2_1.body.0``,
``conv1`` ...) so official checkpoints import by name.

Faithfulness choices (see ../shared/papers/architecture-notes.md section 2):
- ``act_mode="all"``: ReLU in all 26 residual blocks, as the released code and checkpoint really run (its
  ``nn.ReLU(False)`` meant "no activation" but is a ReLU). ``"half"``: the paper's intended removal (ReLU in the
  12 blocks the code flags). ``"none"``: no activation in any residual block.
- ``mean_shift="conv"``: the released code's MeanShift, a 1x1 conv that Adam trains (+24 params);
  ``"fixed"``: a constant shift, as intended.
- ``compressed_blocks=k``: the paper's compression module. The first k residual bodies (network order) become
  MobileNetV2 inverted residuals with expansion 1 (depthwise 3x3 + activation, then linear 1x1, no bias).
  All 26 at width 32 give 124,323 params at x4, the paper's "124K" (which blocks the paper replaced for a
  partial count is not published: network order is our interpretation).
"""
from __future__ import annotations

from tfsr.keras import keras, layers
from tfsr.layers import MeanShift, PixelShuffle
from tfsr.models.common import conv, depthwise_conv, mean_shift_conv
from tfsr.registry import Int8Path, Recipe, register_model

# Blocks whose ReLU the paper keeps under "half" activation removal (the ones flagged True in the code).
HALF_ACTIVATION_BLOCKS = frozenset(
    ["feat2_3", "feat3_3", "feat4_1", "feat4_3", "feat5_1", "feat5_3", "feat6_1", "feat6_2",
     "feat7_1", "feat8_1", "feat9_1", "feat10_1"]
)  # fmt: skip
ACT_MODES = ("all", "half", "none")

# Residual blocks in network order: first half (local blocks 2..6), then second half (7..10).
FIRST_HALF = ["feat2_1", "feat2_2", "feat2_3", "feat3_1", "feat3_2", "feat3_3", "feat4_1", "feat4_2",
              "feat4_3", "feat5_1", "feat5_2", "feat5_3", "feat6_1", "feat6_2"]  # fmt: skip
SECOND_HALF_LEVELS = (7, 8, 9, 10)
BLOCK_ORDER = FIRST_HALF + [n for lv in SECOND_HALF_LEVELS for n in (f"feat{lv}_1", f"feat{lv}_2", f"conv{lv}")]

SLWSR_RECIPE = Recipe(
    loss="l1",
    lr_patch=48,
    batch_size=16,
    learning_rate=1e-4,
    halve_every=200_000,
    iterations=1_000_000,
    augment="flip+transpose",
    source="Sudo-Biao/s-LWSR Train/code/option.py: DIV2K 800, L1, Adam 1e-4 halved every 200 epochs of 1000 it",
)
SLWSR_INT8 = Int8Path(
    custom_layers=("PixelShuffle",),
    fallbacks=("DEPTH_TO_SPACE (not on the Edge TPU): replaced by a fixed transposed conv for --target edgetpu",),
    notes="plain convs, adds and concats: the friendliest architecture of the zoo for int8",
)
PAPER = "Li et al., s-LWSR: Super Lightweight Super-Resolution Network, IEEE TIP 2020"


def _residual_body(x, name: str, relu: bool, compressed: bool, ir_activation: str):
    if compressed:
        t = depthwise_conv(x, 3, name=f"{name}.dw", activation=ir_activation)
        return conv(t, x.shape[-1], 1, name=f"{name}.pw", use_bias=False)
    t = conv(x, x.shape[-1], 3, name=f"{name}.body.0", activation="relu" if relu else None)
    return conv(t, x.shape[-1], 3, name=f"{name}.body.2")


def build_slwsr(
    n_feats: int,
    scale: int,
    input_shape=(None, None, 3),
    act_mode: str = "all",
    mean_shift: str = "conv",
    compressed_blocks: int = 0,
    ir_activation: str = "relu6",
    name: str | None = None,
) -> keras.Model:
    if act_mode not in ACT_MODES:
        raise ValueError(f"act_mode must be one of {ACT_MODES}, not {act_mode!r}")
    if mean_shift not in ("conv", "fixed"):
        raise ValueError(f"mean_shift must be 'conv' or 'fixed', not {mean_shift!r}")
    if not 0 <= compressed_blocks <= len(BLOCK_ORDER):
        raise ValueError(f"compressed_blocks must be in 0..{len(BLOCK_ORDER)}, not {compressed_blocks}")
    compressed = frozenset(BLOCK_ORDER[:compressed_blocks])

    def relu_in(block: str) -> bool:
        return act_mode == "all" or (act_mode == "half" and block in HALF_ACTIVATION_BLOCKS)

    def rb(t, block: str):
        body = _residual_body(t, block, relu_in(block), block in compressed, ir_activation)
        return layers.Add(name=f"{block}.add")([t, body])

    inputs = keras.Input(shape=input_shape, name="lr")
    if mean_shift == "conv":
        x = mean_shift_conv(inputs, -1, name="sub_mean")
    else:
        x = MeanShift(-1, name="sub_mean")(inputs)
    x1 = conv(x, n_feats, 3, name="head.0")

    # First half: local blocks 2..5 of three residual blocks with a local skip, block 6 of two.
    t, ends, pool_inputs = x1, [], [x1]
    for level in (2, 3, 4, 5):
        first = rb(t, f"feat{level}_1")
        last = rb(rb(first, f"feat{level}_2"), f"feat{level}_3")
        ends.append(last)
        if level > 2:
            pool_inputs.append(first)
        t = layers.Add(name=f"local{level}.add")([first, last])
    a6 = rb(t, "feat6_1")
    b6 = rb(a6, "feat6_2")
    pool_inputs += [a6, b6]
    pool = conv(layers.Concatenate(name="pool.concat")(pool_inputs), n_feats, 1, name="conv1", use_bias=False)

    # Second half: symmetric skips (c5, c4, c3, c2) fused with the information pool at weight 0.5 each.
    o = b6
    for level, skip in zip(SECOND_HALF_LEVELS, reversed(ends)):
        fused = layers.Average(name=f"fuse{level}")([skip, pool])
        u = layers.Concatenate(name=f"feat{level}_1.concat")([o, fused])
        block = f"feat{level}_1"
        v = conv(u, n_feats, 1, name=f"{block}.conv")
        body = _residual_body(v, block, relu_in(block), block in compressed, ir_activation)
        t = layers.Add(name=f"{block}.add")([v, body])
        o = rb(rb(t, f"feat{level}_2"), f"conv{level}")
    y = layers.Add(name="global_residual")([o, x1])

    # EDSR upsampler: log2(s) x (conv n->4n, shuffle 2) for s = 2, 4; conv n->9n, shuffle 3 for s = 3.
    steps = [3] if scale == 3 else [2] * (scale // 2)
    for i, r in enumerate(steps):
        y = conv(y, n_feats * r * r, 3, name=f"tail.0.{2 * i}")
        y = PixelShuffle(r, name=f"tail.0.{2 * i + 1}")(y)
    y = conv(y, 3, 3, name="tail.1")
    if mean_shift == "conv":
        y = mean_shift_conv(y, +1, name="add_mean")
    else:
        y = MeanShift(+1, name="add_mean")(y)
    return keras.Model(inputs, y, name=name or f"slwsr{n_feats}_x{scale}")


def _register(n_feats: int, paper_params: dict[int, int], description: str, **defaults):
    name = f"slwsr{n_feats}" + ("c" if defaults.get("compressed_blocks") else "")

    def builder(scale=4, input_shape=(None, None, 3), act_mode="all", mean_shift="conv",
                compressed_blocks=defaults.get("compressed_blocks", 0), ir_activation="relu6"):  # fmt: skip
        return build_slwsr(n_feats, scale, input_shape, act_mode, mean_shift, compressed_blocks, ir_activation,
                           name=f"{name}_x{scale}")  # fmt: skip

    register_model(name, paper=PAPER, description=description, paper_params=paper_params, recipe=SLWSR_RECIPE,
                   int8=SLWSR_INT8)(builder)  # fmt: skip


_register(16, {4: 144_000}, "s-LWSR, 16 channels (the paper's mobile model)")
_register(32, {4: 571_000}, "s-LWSR, 32 channels (the paper's baseline)")
_register(64, {4: 2_277_000}, "s-LWSR, 64 channels")
_register(32, {4: 124_000}, "s-LWSR32 with all 26 residual blocks compressed (MobileNetV2, t=1)",
          compressed_blocks=26)  # fmt: skip
