"""LFN (Zhang, Qu, Chen, "Using Conv-LSTM to Refine Features for Lightweight Image Super-Resolution Network",
ICIG 2021). No code, weights or parameter count were published: this is tfsr's interpretation of the abstract
(../shared/papers/lfn-convlstm-icig2021-abstract.txt).

What the abstract states, and how it is built here:
- "a deep extraction block (DB) composed of two hourglass blocks (HB)": N = 4 DBs in a chain after a 3x3 head
  conv; each DB is two HBs.
- "HB progressively compresses and expands the channel of the input feature map": C -> C/2 -> C/4 -> C/2 -> C
  with 3x3 convs and LeakyReLU(0.05), a skip between the two C/2 stages and a residual around the block.
- "the information at different levels is regarded as a sequence, and Conv-LSTM is used to repeatedly fuse"
  it: the head features and the N DB outputs form a sequence of T = N + 1 steps, fused by one ConvLSTM cell
  (3x3 kernels, ``hidden`` channels) whose last hidden state, through a 3x3 conv and the global skip of the head
  features, feeds a sub-pixel upsampler. ``passes=2`` runs the cell over the sequence twice, carrying its state
  (another reading of "repeatedly").
- The cell is unrolled by hand with shared ``Conv2D`` layers, so the model takes any input size (Keras'
  ConvLSTM2D wants static spatial sizes and does not convert to int8): per gate g in (i, f, o, g) an input conv
  ``lstm.x_g`` (with bias) and a bias-free hidden-state conv ``lstm.h_g``, the same layers at every step.
  With H_0 = c_0 = 0 the first step skips the hidden-state convs (they would add exactly 0).

Chosen configuration (documented, not published): C = 48, N = 4, hidden = 48: 401,628 / 408,123 / 417,216
parameters at x2 / x3 / x4, a light model in the range of the paper's comparisons.
"""
from __future__ import annotations

from tfsr.keras import keras, layers
from tfsr.layers import PixelShuffle
from tfsr.models.common import conv, conv_layer
from tfsr.models.rfdn import leaky_relu
from tfsr.registry import Int8Path, Recipe, register_model

PAPER = "Zhang, Qu, Chen, Using Conv-LSTM to Refine Features for Lightweight Image Super-Resolution Network, ICIG 2021"
GATES = {"i": "sigmoid", "f": "sigmoid", "o": "sigmoid", "g": "tanh"}

LFN_RECIPE = Recipe(
    loss="l1",
    lr_patch=48,
    batch_size=16,
    learning_rate=2e-4,
    halve_every=200_000,
    iterations=1_000_000,
    augment="flip+rot90",
    source="not published (abstract only): the lightweight-SR norm of 2021, DIV2K, L1, Adam 2e-4 halved every "
    "200 epochs of 1000 iterations",
)
LFN_INT8 = Int8Path(
    custom_layers=("PixelShuffle",),
    fallbacks=(
        "ConvLSTM gates (LOGISTIC / TANH int8) and gate products (MUL of two activations)",
        "the cell state c accumulates over the steps: its int8 range must cover the largest step",
        "recurrent weight sharing: one set of gate convs and one activation range for every step",
        "LeakyReLU(0.05) as separate layers (int8 LEAKY_RELU)",
        "DEPTH_TO_SPACE (not on the Edge TPU): needs a replacement for --target edgetpu",
    ),
    notes="hand-unrolled cell of plain Conv2D layers: converts where ConvLSTM2D does not",
)


def hourglass_block(x, name: str):
    channels = x.shape[-1]
    a = leaky_relu(conv(x, channels // 2, 3, name=f"{name}.compress1"), f"{name}.act1")
    b = leaky_relu(conv(a, channels // 4, 3, name=f"{name}.compress2"), f"{name}.act2")
    c = leaky_relu(conv(b, channels // 2, 3, name=f"{name}.expand1"), f"{name}.act3")
    c = layers.Add(name=f"{name}.skip")([c, a])
    return layers.Add(name=f"{name}.add")([conv(c, channels, 3, name=f"{name}.expand2"), x])


class ConvLSTMCell:
    """A ConvLSTM cell as shared Keras layers; ``step`` applies it to one element of a sequence."""

    def __init__(self, in_channels: int, hidden: int, name: str):
        self.name = name
        self.input_convs = {g: conv_layer(hidden, 3, in_channels, name=f"{name}.x_{g}") for g in GATES}
        self.hidden_convs = {g: conv_layer(hidden, 3, hidden, name=f"{name}.h_{g}", use_bias=False) for g in GATES}
        self.steps = 0

    def step(self, x, state):
        """One step: ``state`` is ``(h, c)``, or None for the zero initial state. Returns the new ``(h, c)``."""
        t = f"{self.name}.t{self.steps}"
        self.steps += 1
        gates = {}
        for g, activation in GATES.items():
            z = self.input_convs[g](x)
            if state is not None:
                z = layers.Add(name=f"{t}.z_{g}")([z, self.hidden_convs[g](state[0])])
            gates[g] = layers.Activation(activation, name=f"{t}.{g}")(z)
        c = layers.Multiply(name=f"{t}.ig")([gates["i"], gates["g"]])
        if state is not None:
            c = layers.Add(name=f"{t}.c")([layers.Multiply(name=f"{t}.fc")([gates["f"], state[1]]), c])
        h = layers.Multiply(name=f"{t}.h")([gates["o"], layers.Activation("tanh", name=f"{t}.tanh_c")(c)])
        return h, c


def build_lfn(
    scale: int,
    input_shape=(None, None, 3),
    n_feats: int = 48,
    n_blocks: int = 4,
    hidden: int = 48,
    passes: int = 1,
) -> keras.Model:
    if passes < 1:
        raise ValueError(f"passes must be at least 1, not {passes}")
    inputs = keras.Input(shape=input_shape, name="lr")
    f0 = conv(inputs, n_feats, 3, name="head")
    sequence, x = [f0], f0
    for k in range(1, n_blocks + 1):
        x = hourglass_block(hourglass_block(x, f"db{k}.hb1"), f"db{k}.hb2")
        sequence.append(x)
    cell, state = ConvLSTMCell(n_feats, hidden, "lstm"), None
    for _ in range(passes):
        for features in sequence:
            state = cell.step(features, state)
    r = layers.Add(name="global_skip")([conv(state[0], n_feats, 3, name="fuse"), f0])
    y = conv(r, 3 * scale * scale, 3, name="upsampler.0")
    y = PixelShuffle(scale, name="upsampler.1")(y)
    return keras.Model(inputs, y, name=f"lfn_x{scale}")


@register_model(
    "lfn",
    paper=PAPER,
    description="LFN (interpretation, no code published): 4 blocks of 2 hourglass blocks, ConvLSTM fusion",
    recipe=LFN_RECIPE,
    int8=LFN_INT8,
)
def lfn(scale=4, input_shape=(None, None, 3), passes=1):
    return build_lfn(scale, input_shape, passes=passes)
