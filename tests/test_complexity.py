import tfsr
from tfsr.complexity import count_macs, lr_size_for_output
from tfsr.keras import keras


def test_conv_macs_are_counted_per_output_pixel():
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(inp)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.Conv2DTranspose(2, 2, strides=2)(x)
    model = keras.Model(inp, x)
    assert count_macs(model, (10, 6)) == 10 * 6 * 8 * 27 + 10 * 6 * 8 * 9 + 10 * 6 * 8 * 4 * 2


def test_shared_layers_count_once_per_call():
    inp = keras.Input((None, None, 4))
    shared = keras.layers.Conv2D(4, 1)
    model = keras.Model(inp, shared(shared(shared(inp))))
    assert count_macs(model, (5, 5)) == 3 * 25 * 16


def test_slwsr32_x4_macs_for_a_720p_output():
    # 26 residual blocks, pool, fusion 1x1s and head at LR 320x180, the upsampler at LR/2xLR, last conv at HR.
    lr = lr_size_for_output(4)
    assert lr == (180, 320)
    per_lr_pixel = 26 * 2 * 9 * 32 * 32 + 4 * 64 * 32 + 6 * 32 * 32 + 27 * 32 + 9  # + sub_mean 1x1
    upsampler = 9 * 32 * 128 * (1 + 4)
    expected = 180 * 320 * (per_lr_pixel + upsampler) + 720 * 1280 * (9 * 32 * 3 + 9)
    assert count_macs(tfsr.build_model("slwsr32", 4), lr) == expected
