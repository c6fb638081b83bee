"""The zoo's architectures: exact parameter counts, the custom layers' maths, and the pieces that an official
checkpoint cannot check (LiteSRNet's weight sharing, LFN's unrolled ConvLSTM, HFDN's multi-supervised outputs)."""
import numpy as np
import pytest

import tfsr
from tfsr.keras import keras, layers, tf
from tfsr.layers import ChannelMeanMax, ContrastPooling, LearnableScalar, MeanShift, PixelShuffle, ResizeLike
from tfsr.models.lfn import ConvLSTMCell
from tfsr.registry import build_model, list_models

PARAMS = {
    "rfdn": (534_036, 540_531, 549_624),
    "rfdn_l": (625_962, 632_997, 642_846),
    "erfdn": (417_212, 423_977, 433_448),
    "litesrnet": (57_175, 58_135, 65_015),
    "hfdn": (762_000, 824_208, 762_000),
    "lfn": (401_628, 408_123, 417_216),
}


@pytest.mark.parametrize("name,scale", [(n, s) for n in PARAMS for s in (2, 3, 4)])
def test_parameter_count(name, scale):
    params = tfsr.build_model(name, scale).count_params()
    assert params == PARAMS[name][scale - 2]
    paper = tfsr.get_spec(name).paper_params.get(scale)
    if paper and name != "erfdn":  # the paper counts rounded to 1K (RFDN) or 0.1K (HFDN: within 2%)
        assert abs(params - paper) / paper < (0.02 if name == "hfdn" else 0.001)


def _run_layer(layer, *inputs):
    return layer(list(inputs) if len(inputs) > 1 else inputs[0]).numpy()


# The non-linear conv activations of the models whose weights nobody published (and of ESA), as
# ../shared/papers/architecture-notes.md specifies them; every other conv is linear or followed by a LeakyReLU layer.
NOTED_ACTIVATIONS = {
    "rfdn": {"cca.conv_du.0": "relu", "cca.conv_du.2": "sigmoid"},  # CCA: 1x1 C->C/4, ReLU, 1x1, sigmoid
    "erfdn": {"esa.conv_max": "relu", "esa.conv3": "relu", "esa.conv4": "sigmoid"},
    "hfdn": {"attention.ca.conv1": "relu", "attention.ca.conv2": "sigmoid", "attention.sa.conv": "sigmoid"},
    "litesrnet": {"first_layer.0": "relu", "first_layer.2": "relu", "recur_layers.0": "relu",
                  "upscale_layer.trans_conv.0": "relu", "upscale_layer.trans_conv.2": "relu"},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(NOTED_ACTIVATIONS))
def test_conv_activations_are_the_architecture_notes(name):
    found = {}
    for layer in build_model(name, 4).layers:
        activation = layer.get_config().get("activation", "linear") if isinstance(layer, layers.Conv2D) else "linear"
        if activation != "linear":
            key = next((k for k in NOTED_ACTIVATIONS[name] if layer.name.endswith(k)), layer.name)
            found.setdefault(key, set()).add(activation)
    assert found == {key: {activation} for key, activation in NOTED_ACTIVATIONS[name].items()}


def test_resize_like_is_half_pixel_bilinear():
    x = np.arange(6, dtype=np.float32).reshape(1, 2, 3, 1)
    out = _run_layer(ResizeLike(), x, np.zeros((1, 4, 6, 2), np.float32))
    assert out.shape == (1, 4, 6, 1)
    # align_corners=False: output pixel k samples input position (k + 0.5) / 2 - 0.5, clamped at the borders.
    np.testing.assert_allclose(out[0, 0, :, 0], [0, 0.25, 0.75, 1.25, 1.75, 2], atol=1e-6)
    np.testing.assert_allclose(out[0, :, 0, 0], [0, 0.75, 2.25, 3], atol=1e-6)


def test_contrast_pooling_is_mean_plus_population_std(rng):
    x = rng.normal(size=(2, 5, 7, 3)).astype(np.float32)
    expected = x.mean(axis=(1, 2), keepdims=True) + x.std(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(_run_layer(ContrastPooling(), x), expected, rtol=1e-5)


def test_channel_mean_max(rng):
    x = rng.normal(size=(1, 3, 4, 5)).astype(np.float32)
    out = _run_layer(ChannelMeanMax(), x)
    np.testing.assert_allclose(out, np.stack([x.mean(-1), x.max(-1)], axis=-1), rtol=1e-5)


def test_mean_shift_subtracts_then_adds_the_dataset_mean(rng):
    x = rng.uniform(0, 255, (1, 3, 4, 3)).astype(np.float32)
    mean = 255.0 * np.array([0.4488, 0.4371, 0.4040], np.float32)
    np.testing.assert_allclose(_run_layer(MeanShift(-1), x), x - mean, rtol=1e-6)
    np.testing.assert_allclose(_run_layer(MeanShift(+1), _run_layer(MeanShift(-1), x)), x, atol=1e-4)


@pytest.mark.parametrize("layer, shapes", [
    (PixelShuffle(3), [(2, 4, 5, 18)]), (ResizeLike(), [(1, 3, 4, 6), (1, 7, 9, 2)]), (ContrastPooling(), [(2, 5, 7, 3)]),
    (ChannelMeanMax(), [(1, 3, 4, 5)]), (LearnableScalar(), [(1, 2, 3, 4)]),
], ids=lambda v: type(v).__name__ if not isinstance(v, list) else "")  # fmt: skip
def test_custom_layers_declare_the_shapes_they_compute(layer, shapes):
    inputs = [np.zeros(shape, np.float32) for shape in shapes]
    declared = layer.compute_output_shape(shapes if len(shapes) > 1 else shapes[0])
    assert tuple(declared) == _run_layer(layer, *inputs).shape


def test_learnable_scalar_trains_serializes_and_is_prunable():
    layer = LearnableScalar(name="w")
    np.testing.assert_array_equal(_run_layer(layer, np.full((1, 2), 3.0, np.float32)), [[3.0, 3.0]])
    assert len(layer.trainable_weights) == 1 and layer.get_prunable_weights() == []
    clone = LearnableScalar.from_config(layer.get_config())
    assert clone.name == "w"
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude

    PruneLowMagnitude(LearnableScalar())  # tfmot's pruning wrapper accepts it


def test_esa_accepts_the_smallest_supported_input():
    model = tfsr.build_model("erfdn", 2)
    assert model(np.zeros((1, 15, 15, 3), np.float32)).shape == (1, 30, 30, 3)


def test_litesrnet_applies_one_shared_conv_recurrently():
    for scale, iterations in ((2, 12), (3, 6), (4, 8)):
        model = tfsr.build_model("litesrnet", scale)
        assert len(model.get_layer("recur_layers.0")._inbound_nodes) == iterations
    assert tfsr.build_model("litesrnet", 4, iterations=2).count_params() == 65_015
    # The graph rescales to the [0, 1] the authors trained on: an all-zero image gives bias-only output * 255.
    model = tfsr.build_model("litesrnet", 2, iterations=1)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([np.zeros_like(w) for w in layer.get_weights()[:-1]] + [np.full_like(layer.get_weights()[-1], 0.5)])
    np.testing.assert_allclose(model(np.zeros((1, 4, 4, 3), np.float32)).numpy(), 127.5)


def test_unrolled_convlstm_equals_keras_convlstm2d(rng):
    steps, size, channels, hidden = 3, 6, 4, 5
    seq = [keras.Input((size, size, channels)) for _ in range(steps)]
    cell, state = ConvLSTMCell(channels, hidden, "lstm"), None
    for x in seq:
        state = cell.step(x, state)
    ours = keras.Model(seq, state[0])

    ref_in = keras.Input((steps, size, size, channels))
    ref_layer = layers.ConvLSTM2D(hidden, 3, padding="same", recurrent_activation="sigmoid")
    reference = keras.Model(ref_in, ref_layer(ref_in))
    kernel, recurrent, bias = [rng.normal(0, 0.3, w.shape).astype(np.float32) for w in reference.get_weights()]
    reference.set_weights([kernel, recurrent, bias])
    # Keras orders the gates i, f, c (candidate), o along the last axis.
    for k, gate in enumerate(("i", "f", "g", "o")):
        sl = slice(k * hidden, (k + 1) * hidden)
        cell.input_convs[gate].set_weights([kernel[..., sl], bias[sl]])
        cell.hidden_convs[gate].set_weights([recurrent[..., sl]])

    xs = rng.normal(size=(2, steps, size, size, channels)).astype(np.float32)
    np.testing.assert_allclose(ours([xs[:, t] for t in range(steps)]).numpy(), reference(xs).numpy(), atol=1e-5)


def test_lfn_takes_any_input_size_and_repeats_fusion():
    model = tfsr.build_model("lfn", 3, passes=2)
    assert model(np.zeros((1, 7, 13, 3), np.float32)).shape == (1, 21, 39, 3)
    assert model.count_params() == PARAMS["lfn"][1]  # the second pass reuses the cell's weights
    assert len(model.get_layer("lstm.x_i")._inbound_nodes) == 10  # 2 passes x (head + 4 blocks)


def test_hfdn_training_outputs_share_weights_with_the_inference_model(rng):
    train = tfsr.build_model("hfdn", 3, training_outputs=True)
    infer = tfsr.build_model("hfdn", 3)
    assert [layer.name for layer in infer.layers] == [layer.name for layer in train.layers]
    infer.set_weights(train.get_weights())
    lr = rng.uniform(0, 255, (1, 9, 10, 3)).astype(np.float32)
    outputs = train(lr)
    assert len(outputs) == 4 and all(o.shape == (1, 27, 30, 3) for o in outputs)
    np.testing.assert_allclose(outputs[0].numpy(), infer(lr).numpy(), atol=1e-4)
    assert not np.allclose(outputs[1].numpy(), outputs[3].numpy())  # shallow and deep SR differ


@pytest.mark.parametrize("name", list_models())
def test_graph_mode_computes_what_eager_mode_computes(name, rng):
    """fit, predict and every tf.function run the model as a graph, which grappler rewrites; eager mode runs the
    layers one by one. TF 2.21's oneDNN remapper fuses Conv2D + BiasAdd + Add + LeakyRelu into one op that
    drops the LeakyReLU's alpha (it uses 0.2): RFDN's residual blocks (LeakyReLU 0.05) trained and predicted
    wrongly in graph mode until tfsr.keras turned that rewrite off."""
    model = build_model(name, 2)
    for weight in model.weights:  # random weights large enough that negative pre-activations occur everywhere
        weight.assign(rng.normal(0.0, 0.1, weight.shape).astype(np.float32))
    x = tf.constant(rng.uniform(0, 255, (2, 24, 24, 3)).astype(np.float32))
    eager = model(x).numpy()
    graph = tf.function(lambda t: model(t))(x).numpy()
    np.testing.assert_allclose(graph, eager, rtol=1e-4, atol=1e-3 * max(1.0, float(np.abs(eager).max())))
