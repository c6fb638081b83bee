import numpy as np
import pytest

import tfsr
from tests.conftest import DATA, WEIGHTS, needs_weights
from tfsr.keras import keras

# Parameter counts of the released architecture (architecture-notes 2.2), without the 24 mean-shift weights.
PARAMS = {
    "slwsr16": {2: 134_451, 3: 146_051, 4: 143_731},
    "slwsr32": {2: 534_115, 3: 580_355, 4: 571_107},
    "slwsr64": {2: 2_129_091, 3: 2_313_731, 4: 2_276_803},
}


@pytest.mark.parametrize("name,scale", [(n, s) for n in PARAMS for s in (2, 3, 4)])
def test_parameter_counts(name, scale):
    assert tfsr.build_model(name, scale, mean_shift="fixed").count_params() == PARAMS[name][scale]
    assert tfsr.build_model(name, scale).count_params() == PARAMS[name][scale] + 24


def test_compression_module_reproduces_the_papers_124k():
    assert tfsr.build_model("slwsr32c", 4, mean_shift="fixed").count_params() == 124_323
    # each replaced block saves 18,496 - 1,312 params
    partial = tfsr.build_model("slwsr32", 4, mean_shift="fixed", compressed_blocks=5).count_params()
    assert partial == 571_107 - 5 * 17_184


def _relu_convs(model):
    return sorted(
        layer.name
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D) and layer.activation is keras.activations.relu
    )


def test_activation_modes():
    def blocks(mode):
        return [n.split(".")[0] for n in _relu_convs(tfsr.build_model("slwsr16", 4, act_mode=mode))]

    assert len(blocks("all")) == 26
    assert blocks("half") == sorted(
        ["feat2_3", "feat3_3", "feat4_1", "feat4_3", "feat5_1", "feat5_3", "feat6_1", "feat6_2",
         "feat7_1", "feat8_1", "feat9_1", "feat10_1"]
    )  # fmt: skip
    assert blocks("none") == []


def test_activation_is_fused_into_the_conv_for_qat():
    model = tfsr.build_model("slwsr16", 4)
    assert not any(isinstance(layer, (keras.layers.ReLU, keras.layers.Activation)) for layer in model.layers)


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="act_mode"):
        tfsr.build_model("slwsr16", 4, act_mode="some")
    with pytest.raises(ValueError, match="compressed_blocks"):
        tfsr.build_model("slwsr16", 4, compressed_blocks=27)


def test_pytorch_default_init_bounds():
    model = tfsr.build_model("slwsr16", 4)
    kernel, bias = model.get_layer("feat2_1.body.0").get_weights()
    bound = 1 / np.sqrt(16 * 9)
    assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.9 * bound
    assert np.abs(bias).max() <= bound and np.abs(bias).max() > 0.5 * bound


@needs_weights
def test_official_slwsr32_checkpoint_reproduces_the_official_output():
    from tfsr.data.benchmark import load_benchmark
    from tfsr.evaluation import evaluate_set
    from tfsr.predictors import KerasPredictor
    from tfsr.weights import assign_state_dict, load_state_dict

    model = tfsr.build_model("slwsr32", 4)
    assign_state_dict(model, load_state_dict(WEIGHTS / "slwsr32_x4_epoch1_official.npz"))
    bench = load_benchmark(DATA / "Set5", 4)
    outputs = {}
    score = evaluate_set(KerasPredictor(model, 4, "slwsr32"), bench, on_image=outputs.__setitem__)
    official = np.load(WEIGHTS / "slwsr32_x4_epoch1_official_bird_sr_float.npy").reshape(outputs["bird"].shape)
    assert np.abs(outputs["bird"] - official).max() < 0.01
    assert score.psnr_y == pytest.approx(28.9625, abs=0.002)
