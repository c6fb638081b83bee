"""LiteSRNet (Hossain, Rahman, Amin, Ali, "Lightweight Recurrent Neural Network for Image Super-Resolution",
ICIP 2024), after the released code ``mirsazzathossain/LiteSRNet`` ``models/recur_cnn.py``.

A two-conv head, ONE 3x3 conv block applied recurrently (the same Keras layer called ``iterations`` times:
12 / 6 / 8 at x2 / x3 / x4, from the released configs' depths 16 / 10 / 13), a transposed-conv decoder and a
final 3x3 conv; no global skip, no clamp. Layer names equal the PyTorch state-dict prefixes (``first_layer.0``,
``recur_layers.0``, ``upscale_layer.trans_conv.0``, ``final_conv``).

The authors train on RGB in [0, 1]; tfsr models take and return [0, 255], so the graph rescales on the way in
and out with built-in ``Rescaling`` layers, and official weights import unchanged. The released forward also
runs the decoder after every iteration and discards all but the last result: dropped here (same output).
"""
from __future__ import annotations

from tfsr.keras import keras, layers
from tfsr.models.common import conv, conv_layer, transposed_conv_layer
from tfsr.registry import Int8Path, Recipe, register_model

WIDTH = 64
ITERATIONS = {2: 12, 3: 6, 4: 8}
PAPER = "Hossain, Rahman, Amin, Ali, Lightweight Recurrent Neural Network for Image Super-Resolution, ICIP 2024"

LITESRNET_RECIPE = Recipe(
    loss="mse+0.01vgg16",
    lr_patch=48,
    batch_size=64,
    learning_rate=1e-4,
    halve_every=0,
    iterations=108_000,
    augment="flip",
    source="mirsazzathossain/LiteSRNet configs + train/recur_cnn_trainer.py: DIV2K non-overlapping HR patches "
    "(192 at x4), LR by torchvision antialiased bicubic, MSE + 0.01 x VGG16 perceptual (relu1_2..relu4_3, "
    "inputs in [0,1]), Adam 1e-4 constant, batch 64, 100 epochs (~108K iterations at x4), random h/v flips",
)
LITESRNET_INT8 = Int8Path(
    custom_layers=(),
    fallbacks=(
        "recurrent weight sharing: one conv's weights and one activation range serve all iterations, whose "
        "activation statistics differ (QAT sees them merged; PTQ calibrates one range for all)",
        "Conv2DTranspose decoder (TRANSPOSE_CONV int8)",
    ),
    notes="built-in layers only (Conv2D, Conv2DTranspose, Rescaling, ReLU fused into the convs)",
)


def build_litesrnet(scale: int, input_shape=(None, None, 3), iterations: int | None = None, width: int = WIDTH):
    iterations = ITERATIONS[scale] if iterations is None else iterations
    inputs = keras.Input(shape=input_shape, name="lr")
    x = layers.Rescaling(1.0 / 255.0, name="to_unit_range")(inputs)
    x = conv(x, width // 2, 3, name="first_layer.0", activation="relu")
    x = conv(x, width, 3, name="first_layer.2", activation="relu")
    recurrent = conv_layer(width, 3, width, name="recur_layers.0", activation="relu")
    for _ in range(iterations):
        x = recurrent(x)
    if scale == 4:
        x = transposed_conv_layer(width // 2, 2, strides=2, activation="relu", name="upscale_layer.trans_conv.0")(x)
        x = transposed_conv_layer(3, 2, strides=2, activation="relu", name="upscale_layer.trans_conv.2")(x)
    else:
        x = transposed_conv_layer(3, scale, strides=scale, activation="relu", name="upscale_layer.trans_conv.0")(x)
    x = conv(x, 3, 3, name="final_conv")
    outputs = layers.Rescaling(255.0, name="to_pixel_range")(x)
    return keras.Model(inputs, outputs, name=f"litesrnet_x{scale}")


@register_model(
    "litesrnet",
    paper=PAPER,
    description="LiteSRNet: one weight-shared 3x3 conv applied 12/6/8 times (x2/x3/x4); paper: < 75K params",
    recipe=LITESRNET_RECIPE,
    int8=LITESRNET_INT8,
)
def litesrnet(scale=4, input_shape=(None, None, 3), iterations=None):
    return build_litesrnet(scale, input_shape, iterations)
