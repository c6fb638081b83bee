"""`cli.py import-weights` end to end without ../shared: a Keras model's weights written in PyTorch layout
(including the PixelShuffle channel order) import into a fresh model and reproduce its output exactly; the
layouts themselves are checked against NumPy implementations of torch's conv, transposed conv and PixelShuffle."""
import zipfile
from pathlib import Path

import numpy as np
import pytest

import tfsr
from tests.test_cli_foundation import assert_one_line_error, invoke
from tests.test_weights import torch_pixel_shuffle
from tfsr.keras import keras
from tfsr.layers import PixelShuffle
from tfsr.models.common import transposed_conv_layer
from tfsr.predictors import load_keras_model
from tfsr.errors import TfsrError
from tfsr.weights import assign_state_dict, state_dict_from_model

FIXTURES = Path(__file__).parent / "fixtures"


def torch_conv2d_same(x, weight, bias):
    """torch.nn.Conv2d (stride 1, padding k//2) on NHWC ``x`` with a (out, in, kh, kw) weight."""
    k = weight.shape[-1]
    p = k // 2
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    h, w = x.shape[1:3]
    out = np.zeros((x.shape[0], h, w, weight.shape[0]), np.float64)
    for i in range(k):
        for j in range(k):
            out += xp[:, i : i + h, j : j + w, :] @ weight[:, :, i, j].T
    return out + bias


def torch_conv_transpose2d(x, weight, bias, stride):
    """torch.nn.ConvTranspose2d (padding 0) on NHWC ``x`` with an (in, out, kh, kw) weight."""
    n, h, w, _ = x.shape
    k = weight.shape[-1]
    out = np.zeros((n, (h - 1) * stride + k, (w - 1) * stride + k, weight.shape[1]), np.float64)
    for i in range(k):
        for j in range(k):
            out[:, i : i + (h - 1) * stride + 1 : stride, j : j + (w - 1) * stride + 1 : stride] += x @ weight[:, :, i, j]
    return out + bias


def test_conv_feeding_pixel_shuffle_imports_as_torch_computes_it(rng):
    inp = keras.Input((None, None, 4))
    model = keras.Model(inp, PixelShuffle(3, name="up.1")(keras.layers.Conv2D(18, 3, padding="same", name="up.0")(inp)))
    weight, bias = rng.normal(size=(18, 4, 3, 3)).astype(np.float32), rng.normal(size=18).astype(np.float32)
    assign_state_dict(model, {"up.0.weight": weight, "up.0.bias": bias})
    x = rng.normal(size=(1, 5, 6, 4)).astype(np.float32)
    expected = torch_pixel_shuffle(torch_conv2d_same(x, weight, bias), 3)
    np.testing.assert_allclose(model(x).numpy(), expected, atol=1e-4)


@pytest.mark.parametrize("stride", [2, 3])
def test_transposed_conv_imports_as_torch_computes_it(stride, rng):
    inp = keras.Input((None, None, 5))
    model = keras.Model(inp, transposed_conv_layer(3, stride, strides=stride, name="up")(inp))
    weight, bias = rng.normal(size=(5, 3, stride, stride)).astype(np.float32), rng.normal(size=3).astype(np.float32)
    assign_state_dict(model, {"up.weight": weight, "up.bias": bias})
    x = rng.normal(size=(2, 4, 3, 5)).astype(np.float32)
    np.testing.assert_allclose(model(x).numpy(), torch_conv_transpose2d(x, weight, bias, stride), atol=1e-4)


@pytest.mark.parametrize("name,scale", [("erfdn", 3), ("litesrnet", 4)])
def test_exported_state_dict_imports_back_through_the_cli(name, scale, tmp_path, rng):
    source = tfsr.build_model(name, scale)  # PyTorch-style random init: every weight and bias is non-trivial
    state = state_dict_from_model(source)
    np.savez(tmp_path / "ckpt.npz", **state)

    out = tmp_path / "imported.keras"
    result = invoke("import-weights", name, tmp_path / "ckpt.npz", "--scale", scale, "--out", out)
    assert result.exit_code == 0, result.output
    params = source.count_params()
    assert f"imported {len(state)} tensors into {name} x{scale} ({params:,} params)" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz", "imported.keras"]  # no temporary left

    lr = rng.uniform(0, 255, (1, 16, 19, 3)).astype(np.float32)
    np.testing.assert_array_equal(load_keras_model(out)(lr).numpy(), source(lr).numpy())


def test_export_uses_torch_layout_and_order():
    model = tfsr.build_model("erfdn", 4)
    state = state_dict_from_model(model)
    assert state["fea_conv.weight"].shape == (50, 3, 3, 3)
    assert state["upsampler.0.weight"].shape == (48, 50, 3, 3)
    # torch channel c*16 + i*4 + j is depth_to_space channel (i*4 + j)*3 + c.
    keras_bias = model.get_layer("upsampler.0").get_weights()[1]
    assert state["upsampler.0.bias"][1 * 16 + 2 * 4 + 3] == keras_bias[(2 * 4 + 3) * 3 + 1]


@pytest.fixture(scope="module")
def erfdn_state():
    return state_dict_from_model(tfsr.build_model("erfdn", 4))


def _write(tmp_path, state):
    path = tmp_path / "ckpt.npz"
    np.savez(path, **state)
    return path


def test_missing_key_is_one_line_error(erfdn_state, tmp_path):
    state = dict(erfdn_state)
    del state["B3.esa.conv4.bias"]
    result = invoke("import-weights", "erfdn", _write(tmp_path, state), "--out", tmp_path / "m.keras")
    assert_one_line_error(result, "is missing key 'B3.esa.conv4.bias' (needed by layer B3.esa.conv4)")
    assert not (tmp_path / "m.keras").exists()


def test_unexpected_key_is_one_line_error(erfdn_state, tmp_path):
    state = dict(erfdn_state)
    state["B5.c1_d.weight"] = np.zeros((25, 50, 1, 1), np.float32)
    result = invoke("import-weights", "erfdn", _write(tmp_path, state), "--out", tmp_path / "m.keras")
    assert_one_line_error(result, "has 1 key(s) the model does not use: 'B5.c1_d.weight'")


def test_misshaped_key_and_wrong_scale_are_one_line_errors(erfdn_state, tmp_path):
    state = dict(erfdn_state)
    path = _write(tmp_path, state)
    result = invoke("import-weights", "erfdn", path, "--scale", "2", "--out", tmp_path / "m.keras")
    assert_one_line_error(result, "key 'upsampler.0.weight' has shape (48, 50, 3, 3), which does not fit layer upsampler.0")
    result = invoke("import-weights", "rfdn", path, "--out", tmp_path / "m.keras")
    assert_one_line_error(result, "key 'fea_conv.weight' has shape (50, 3, 3, 3)")


def test_bad_arguments_are_one_line_errors(erfdn_state, tmp_path):
    state = dict(erfdn_state)
    path = _write(tmp_path, state)
    assert_one_line_error(invoke("import-weights", "erfdn", path, "--out", tmp_path / "m.h5"), "must end in .keras")
    assert_one_line_error(invoke("import-weights", "nope", path, "--out", tmp_path / "m.keras"), "unknown model 'nope'")
    missing = tmp_path / "none.pth"
    assert_one_line_error(invoke("import-weights", "erfdn", missing, "--out", tmp_path / "m.keras"), "does not exist")


@pytest.mark.parametrize("scale", [3, 4])
def test_litesrnet_imports_as_the_released_code_computes_it(scale, rng):
    """A NumPy transcription of models/recur_cnn.py (input in [0, 1]) with random torch-layout weights."""
    model = tfsr.build_model("litesrnet", scale, iterations=3)
    state = {k: rng.normal(0, 0.05, v.shape).astype(np.float32) for k, v in state_dict_from_model(model).items()}
    assign_state_dict(model, state)
    lr = rng.uniform(0, 255, (1, 6, 5, 3)).astype(np.float32)

    def conv(x, name, relu=True):
        y = torch_conv2d_same(x, state[f"{name}.weight"], state[f"{name}.bias"])
        return np.maximum(y, 0) if relu else y

    def deconv(x, name, stride):
        return np.maximum(torch_conv_transpose2d(x, state[f"{name}.weight"], state[f"{name}.bias"], stride), 0)

    x = conv(conv(lr / 255.0, "first_layer.0"), "first_layer.2")
    for _ in range(3):
        x = conv(x, "recur_layers.0")
    if scale == 4:
        x = deconv(deconv(x, "upscale_layer.trans_conv.0", 2), "upscale_layer.trans_conv.2", 2)
    else:
        x = deconv(x, "upscale_layer.trans_conv.0", 3)
    expected = conv(x, "final_conv", relu=False) * 255.0
    assert expected.std(axis=(1, 2)).min() > 0.1  # the image, not just the biases, reaches the output
    np.testing.assert_allclose(model(lr).numpy(), expected, rtol=1e-4, atol=1e-3)


def test_pytorch_checkpoints_load_without_pytorch(tmp_path):
    """A real ``torch.save`` file (tests/fixtures/make_torch_checkpoint.py, torch 2.14.1): DataParallel's
    ``module.`` prefix inside {"state_dict": ...}, strided views, storage offsets, float16, bfloat16 and an int64
    scalar, read with numpy alone."""
    from tfsr.weights import load_state_dict

    loaded = load_state_dict(FIXTURES / "torch_checkpoint.pth")
    base = np.arange(24, dtype=np.float32)
    expected = {
        "conv.weight": base.reshape(2, 3, 2, 2),
        "conv.bias": np.array([0.5, -1.5]),
        "proj.weight": base[:6].reshape(2, 3).T,
        "tail.bias": base[10:14],
        "half.weight": np.arange(4) / 4,
        "bf16.weight": np.arange(4) * 2.0,
        "bn.num_batches_tracked": np.array(7.0),
    }
    assert sorted(loaded) == sorted(expected)
    for key, value in expected.items():
        assert loaded[key].dtype == np.float32
        np.testing.assert_array_equal(loaded[key], value, err_msg=key)


def test_wrapped_checkpoints_are_unwrapped_as_their_trainers_save_them(tmp_path, monkeypatch):
    """EDSR-style {"state_dict": ...}, {"model": ...}, BasicSR's {"params": ...}, beside other entries."""
    import tfsr.weights

    path = tmp_path / "net.pth"
    path.write_bytes(b"a checkpoint")
    bias = np.ones(2, np.float16)
    for wrapper in ("state_dict", "model", "params"):
        checkpoint = {wrapper: {"module.conv.bias": bias}, "epoch": 3, "optimizer": {"lr": 1e-4}}
        monkeypatch.setattr(tfsr.weights, "read_torch_checkpoint", lambda p, c=checkpoint: c)
        loaded = tfsr.weights.load_state_dict(path)
        assert list(loaded) == ["conv.bias"] and loaded["conv.bias"].dtype == np.float32, wrapper
    monkeypatch.setattr(tfsr.weights, "read_torch_checkpoint", lambda p: [bias])
    with pytest.raises(TfsrError, match="net.pth holds a list, not a state dict of tensors"):
        tfsr.weights.load_state_dict(path)


def test_unreadable_pytorch_checkpoints_are_one_line_errors(tmp_path):
    from tfsr.weights import load_state_dict

    legacy = tmp_path / "legacy.pth"
    legacy.write_bytes(b"\x80\x02not a zip")
    with pytest.raises(TfsrError, match="not a PyTorch zip checkpoint"):
        load_state_dict(legacy)
    hostile = tmp_path / "hostile.pth"
    with zipfile.ZipFile(hostile, "w") as archive:  # a pickle that would run os.system if trusted
        archive.writestr("hostile/data.pkl", b"cos\nsystem\n(S'echo pwned'\ntR.")
    with pytest.raises(TfsrError, match="os.system is not a tensor"):
        load_state_dict(hostile)
