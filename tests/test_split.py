"""Splitting convs over the sums they read: exact on every model of the zoo, only where it is exact."""
from __future__ import annotations

import numpy as np
import pytest

from tfsr.keras import keras, layers
from tfsr.layers import PixelShuffle
from tfsr.models.common import conv, conv_layer
from tfsr.quantization.fold import fold_identity_residuals
from tfsr.quantization.split import split_summed_inputs, summed_inputs
from tfsr.registry import build_model, list_models

# The upsampling conv of every global skip; LFN also splits the expand conv after each hierarchical block's skip.
EXPECTED_SPLITS = {"erfdn": 1, "rfdn": 1, "rfdn_l": 1, "lfn": 9, "slwsr16": 1, "slwsr32": 1, "slwsr32c": 1, "slwsr64": 1}


def count(model, kind) -> int:
    return sum(type(layer) is kind for layer in model.layers)


def assert_same_function(model, other, images):
    expected = model(images).numpy()
    assert np.abs(other(images).numpy() - expected).max() <= 2e-6 * np.abs(expected).max() + 1e-4


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(5).uniform(0, 255, (2, 20, 20, 3)).astype(np.float32)


@pytest.mark.parametrize("name", list_models())
def test_split_model_computes_the_same_function(name, images):
    model, _ = fold_identity_residuals(build_model(name, 2))  # as quantize prepares it: folded first
    split, splits = split_summed_inputs(model)
    assert len(splits) == EXPECTED_SPLITS.get(name, 0)
    if not splits:
        assert split is model
        return
    assert count(split, layers.Add) == count(model, layers.Add)  # each summing Add moved behind its conv's terms
    assert count(split, layers.Conv2D) == count(model, layers.Conv2D) + len(splits)  # two terms each
    for conv_name in splits:
        assert type(split.get_layer(conv_name)) is layers.Add  # the sum took the conv's name
    assert_same_function(model, split, images)


def mixed_sums() -> keras.Model:
    """One splittable sum of three terms, one of two into a conv without bias, and every reason not to split."""
    keras.utils.set_random_seed(2)
    lr = keras.Input((None, None, 3), name="lr")
    h = conv(lr, 8, 3, name="head")
    a, b = conv(h, 8, 3, name="a"), conv(h, 8, 1, name="b")
    s1 = conv(layers.Add(name="s1")([a, b, h]), 8, 3, name="c1")  # split: three terms
    s2 = conv(layers.Add(name="s2")([s1, h]), 8, 3, name="c2", activation="relu")  # not linear
    s3 = layers.Add(name="s3")([s2, a])
    c3 = conv(s3, 8, 3, name="c3")  # s3 also feeds the Add below
    shared = conv_layer(8, 3, 8, name="shared")
    s4 = layers.Add(name="s4")([c3, s3])
    c4 = shared(s4)  # a layer called twice (recurrent weight sharing)
    c4 = shared(layers.Add(name="s5")([c4, b]))
    s6 = conv(layers.Add(name="s6")([c4, h]), 12, 3, name="up", use_bias=False)  # split, no bias anywhere
    return keras.Model(lr, PixelShuffle(2, name="shuffle")(s6))


def test_only_exact_splits_are_made(images):
    model = mixed_sums()
    assert summed_inputs(model) == {"c1": "s1", "up": "s6"}
    split, splits = split_summed_inputs(model)
    assert splits == {"c1": "s1", "up": "s6"}
    assert_same_function(model, split, images)
    kernel, bias = model.get_layer("c1").get_weights()
    assert [len(split.get_layer(f"c1.term{i}").get_weights()) for i in range(3)] == [2, 1, 1]  # the bias once
    for i in range(3):
        assert np.array_equal(split.get_layer(f"c1.term{i}").get_weights()[0], kernel)
    assert np.array_equal(split.get_layer("c1.term0").get_weights()[1], bias)
    assert [len(split.get_layer(f"up.term{i}").get_weights()) for i in range(2)] == [1, 1]
    assert split.get_layer("shared") is not model.get_layer("shared")  # a copy, still one layer called twice
    assert len(split.get_layer("shared")._inbound_nodes) == 2
