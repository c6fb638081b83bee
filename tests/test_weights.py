import numpy as np
import pytest

from tfsr.errors import TfsrError
from tfsr.keras import keras, tf
from tfsr.layers import PixelShuffle
from tfsr.weights import assign_state_dict, load_state_dict, torch_shuffle_permutation


def torch_pixel_shuffle(x, r):
    """torch.nn.PixelShuffle on an NHWC array: input channel k = c*r*r + i*r + j."""
    n, h, w, crr = x.shape
    c = crr // (r * r)
    return x.reshape(n, h, w, c, r, r).transpose(0, 1, 4, 2, 5, 3).reshape(n, h * r, w * r, c)


@pytest.mark.parametrize("r,c", [(2, 3), (3, 2), (2, 16)])
def test_permutation_turns_torch_order_into_depth_to_space_order(r, c, rng):
    x = rng.normal(size=(1, 4, 5, c * r * r)).astype(np.float32)
    ours = tf.nn.depth_to_space(x[..., torch_shuffle_permutation(c * r * r, r)], r).numpy()
    np.testing.assert_array_equal(ours, torch_pixel_shuffle(x, r))


def _tiny_model():
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="head.0")(inp)
    x = keras.layers.Conv2D(12, 3, padding="same", name="up.0")(x)
    x = PixelShuffle(2, name="up.1")(x)
    return keras.Model(inp, x)


def _torch_state(rng):
    return {
        "head.0.weight": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
        "head.0.bias": rng.normal(size=4).astype(np.float32),
        "up.0.weight": rng.normal(size=(12, 4, 3, 3)).astype(np.float32),
        "up.0.bias": rng.normal(size=12).astype(np.float32),
    }


def test_assign_transposes_and_permutes(rng):
    model = _tiny_model()
    state = _torch_state(rng)
    assign_state_dict(model, state)
    np.testing.assert_array_equal(model.get_layer("head.0").get_weights()[0], state["head.0.weight"].transpose(2, 3, 1, 0))
    perm = torch_shuffle_permutation(12, 2)
    np.testing.assert_array_equal(model.get_layer("up.0").get_weights()[1], state["up.0.bias"][perm])


def test_missing_unexpected_and_misshaped_keys_are_named(rng):
    state = _torch_state(rng)
    with pytest.raises(TfsrError, match=r"missing key 'up.0.bias'"):
        assign_state_dict(_tiny_model(), {k: v for k, v in state.items() if k != "up.0.bias"})
    with pytest.raises(TfsrError, match=r"1 key\(s\) the model does not use: 'tail.weight'"):
        assign_state_dict(_tiny_model(), {**state, "tail.weight": np.zeros(3, np.float32)})
    extra = {f"aux.{i}": np.zeros(1, np.float32) for i in range(7)}  # the first five are named
    with pytest.raises(TfsrError, match=r"7 key\(s\) the model does not use: 'aux.0', 'aux.1', 'aux.2', 'aux.3', "
                                        r"'aux.4' \.\.\.$"):  # fmt: skip
        assign_state_dict(_tiny_model(), {**state, **extra})
    with pytest.raises(TfsrError, match=r"key 'head.0.weight' has shape \(4, 3, 5, 5\)"):
        assign_state_dict(_tiny_model(), {**state, "head.0.weight": np.zeros((4, 3, 5, 5), np.float32)})


def test_load_state_dict_errors(tmp_path):
    with pytest.raises(TfsrError, match="does not exist"):
        load_state_dict(tmp_path / "none.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(TfsrError, match="not a readable .npz"):
        load_state_dict(bad)
    other = tmp_path / "w.h5"
    other.write_bytes(b"x")
    with pytest.raises(TfsrError, match="unknown checkpoint type"):
        load_state_dict(other)
