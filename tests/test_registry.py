"""Every registered model, at every scale it supports: builds on a dynamic input, upscales by the scale,
round-trips through .keras with safe_mode=True, and holds no Lambda layer."""
import numpy as np
import pytest

import tfsr
from tfsr.data.patches import AUGMENTATIONS
from tfsr.errors import TfsrError
from tfsr.keras import keras
from tfsr.predictors import load_keras_model
from tfsr.training.losses import LOSSES

CASES = [(name, scale) for name in tfsr.list_models() for scale in tfsr.get_spec(name).scales]


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


@pytest.mark.parametrize("name,scale", CASES)
def test_builds_upscales_and_round_trips(name, scale, tmp_path, rng):
    model = tfsr.build_model(name, scale)
    assert model.input_shape == (None, None, None, 3)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in _all_layers(model))

    lr = rng.uniform(0, 255, (1, 20, 17, 3)).astype(np.float32)
    sr = model(lr, training=False).numpy()
    assert sr.shape == (1, 20 * scale, 17 * scale, 3)
    assert np.isfinite(sr).all()

    path = tmp_path / f"{name}_x{scale}.keras"
    model.save(path)
    reloaded = load_keras_model(path)
    assert reloaded.count_params() == model.count_params()
    np.testing.assert_allclose(reloaded(lr, training=False).numpy(), sr, atol=1e-3)


@pytest.mark.parametrize("name", tfsr.list_models())
def test_declares_paper_facts(name):
    spec = tfsr.get_spec(name)
    assert spec.paper and spec.description
    assert spec.recipe.lr_patch > 0 and spec.recipe.batch_size > 0 and spec.recipe.learning_rate > 0
    assert spec.int8.notes or spec.int8.fallbacks or spec.int8.custom_layers
    # `train NAME` runs its recipe as declared: its loss and augmentation exist (LiteSRNet's loss did not)
    assert spec.recipe.loss in LOSSES and spec.recipe.augment in AUGMENTATIONS


def test_clip_output_clips_inside_the_graph():
    model = tfsr.build_model("slwsr16", 2, clip_output=True)
    out = model(np.full((1, 8, 8, 3), 1e4, np.float32)).numpy()
    assert out.max() <= 255.0 and out.min() >= 0.0
    assert model.layers[-1].name == "clip_output"


def test_unknown_model_lists_known_ones():
    with pytest.raises(TfsrError, match=r"unknown model 'nope'; known models: .*slwsr16"):
        tfsr.build_model("nope")


def test_unsupported_scale_and_unknown_option_are_clear():
    with pytest.raises(TfsrError, match="supports scales 2, 3, 4, not 5"):
        tfsr.build_model("slwsr16", 5)
    with pytest.raises(TfsrError, match="slwsr16 has no option widht; its options are: act_mode"):
        tfsr.build_model("slwsr16", 4, widht=3)
