"""Folding identity residuals into their convs: exact on every model of the zoo, only where it is exact."""
from __future__ import annotations

import numpy as np
import pytest

from tfsr.keras import keras, layers
from tfsr.models.common import conv, conv_layer
from tfsr.layers import PixelShuffle
from tfsr.quantization.fold import fold_identity_residuals, residual_folds
from tfsr.registry import build_model, list_models

# The papers' shallow residual blocks (conv3x3(x) + x): 3 per distillation block, E-RFDN 4 blocks, RFDN 6.
EXPECTED_FOLDS = {"erfdn": 12, "rfdn": 18, "rfdn_l": 18}


def adds(model) -> int:
    return sum(type(layer) is layers.Add for layer in model.layers)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(5).uniform(0, 255, (2, 20, 20, 3)).astype(np.float32)


@pytest.mark.parametrize("name", list_models())
def test_folded_model_computes_the_same_function(name, images):
    model = build_model(name, 2)
    folded, names = fold_identity_residuals(model)
    assert len(names) == EXPECTED_FOLDS.get(name, 0)
    if not names:
        assert folded is model
        return
    assert adds(folded) == adds(model) - len(names)
    assert all(type(folded.get_layer(n)) is layers.Conv2D for n in names)  # the conv took the Add's name
    assert folded.count_params() == model.count_params()
    expected = model(images).numpy()
    assert np.abs(folded(images).numpy() - expected).max() <= 2e-6 * np.abs(expected).max() + 1e-4


def mixed_residuals() -> keras.Model:
    """One foldable residual of each kernel size and every reason not to fold."""
    keras.utils.set_random_seed(1)
    lr = keras.Input((None, None, 3), name="lr")
    h = conv(lr, 8, 3, name="head")
    a = layers.Add(name="r1.add")([conv(h, 8, 3, name="r1"), h])  # foldable
    b = layers.Add(name="r2.add")([a, conv(a, 8, 3, name="r2", activation="relu")])  # fused activation
    c_branch = conv(b, 8, 3, name="r3")
    c = layers.Add(name="r3.add")([c_branch, b])  # the branch also feeds the concatenation below
    d = layers.Add(name="r4.add")([conv(h, 8, 3, name="r4"), c])  # the conv reads another tensor
    shared = conv_layer(8, 3, 8, name="shared")
    e = layers.Add(name="r5.add")([shared(d), d])  # a layer called twice (recurrent weight sharing)
    e = layers.Add(name="r5b.add")([shared(e), e])
    f = layers.Add(name="r6.add")([e, conv(e, 8, 1, name="r6")])  # foldable, 1x1, skip first
    up = conv(layers.Concatenate(name="cat")([f, c_branch]), 12, 3, name="up")
    return keras.Model(lr, PixelShuffle(2, name="shuffle")(up))


def test_only_exact_folds_are_made(images):
    model = mixed_residuals()
    assert residual_folds(model) == {"r1.add": "r1", "r6.add": "r6"}
    folded, names = fold_identity_residuals(model)
    assert names == ["r1.add", "r6.add"] and adds(folded) == adds(model) - 2
    expected = model(images).numpy()
    assert np.abs(folded(images).numpy() - expected).max() <= 2e-6 * np.abs(expected).max() + 1e-4
    kernel = folded.get_layer("r1.add").get_weights()[0]
    original = model.get_layer("r1").get_weights()[0]
    assert np.allclose(kernel[1, 1] - original[1, 1], np.eye(8)) and np.array_equal(kernel[0], original[0])
    assert folded.get_layer("shared") is not model.get_layer("shared")  # a copy, still one layer called twice
    assert len(folded.get_layer("shared")._inbound_nodes) == 2


def test_folds_a_pruned_model_whose_layers_are_shared_with_the_original(images):
    from tfsr.quantization.data import PatchPairs
    from tfsr.quantization.pruning import prune

    rng = np.random.default_rng(0)
    pairs = PatchPairs(rng.uniform(0, 255, (8, 16, 16, 3)).astype(np.float32),
                       rng.uniform(0, 255, (8, 32, 32, 3)).astype(np.float32))  # fmt: skip
    pruned = prune(mixed_residuals(), pairs, 0.5, 2, 4, log=lambda msg: None)
    assert len(pruned.get_layer("r1")._inbound_nodes) == 2  # strip_pruning reuses the unpruned layers
    folded, names = fold_identity_residuals(pruned)
    assert names == ["r1.add", "r6.add"]
    expected = pruned(images).numpy()
    assert np.abs(folded(images).numpy() - expected).max() <= 2e-6 * np.abs(expected).max() + 1e-4
