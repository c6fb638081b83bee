"""Import the authors' PyTorch checkpoints into tfsr's Keras models.

Keras layers are named after the PyTorch state-dict prefixes, so each layer ``P`` takes ``P.weight`` and
``P.bias``. Layouts are transposed per layer type, and every conv that feeds a :class:`PixelShuffle` has its
output channels permuted from PyTorch's ``c*r*r + i*r + j`` to TensorFlow's ``(i*r + j)*C + c`` order.
Nothing is skipped silently: a missing, unexpected or mis-shaped key is an error naming it.
``state_dict_from_model`` is the inverse: a Keras model's weights as a PyTorch-layout state dict.
"""
from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from tfsr.errors import TfsrError
from tfsr.keras import keras, layers
from tfsr.layers import PixelShuffle


# PyTorch storage classes -> numpy dtypes (bfloat16: its 16 bits are the top half of a float32)
_TORCH_STORAGES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "BFloat16Storage": "<u2",
                   "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
                   "ByteStorage": "u1", "BoolStorage": "?"}  # fmt: skip


class _TorchUnpickler(pickle.Unpickler):
    """The ``data.pkl`` of a PyTorch zip checkpoint, tensors rebuilt as numpy arrays from the archive's storages.
    Like ``torch.load(weights_only=True)`` it builds nothing but tensors, dicts, lists and scalars."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self.archive, self.prefix = archive, prefix

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda data, requires_grad, hooks: data
        if module == "torch" and name in _TORCH_STORAGES:
            return name
        raise pickle.UnpicklingError(f"{module}.{name} is not a tensor, dict or number")

    def persistent_load(self, pid):
        kind, storage, key, _location, _numel = pid
        if kind != "storage" or storage not in _TORCH_STORAGES:
            raise pickle.UnpicklingError(f"unsupported storage {pid[:2]}")
        data = np.frombuffer(self.archive.read(f"{self.prefix}data/{key}"), _TORCH_STORAGES[storage])
        return (data.astype("<u4") << 16).view("<f4") if storage == "BFloat16Storage" else data


def _rebuild_tensor(storage: np.ndarray, offset: int, size, stride, *_ignored) -> np.ndarray:
    if not size:
        return np.array(storage[offset])
    strides = [s * storage.itemsize for s in stride]
    return np.lib.stride_tricks.as_strided(storage[offset:], tuple(size), strides).copy()


def read_torch_checkpoint(path: str | Path):
    """What ``torch.save`` wrote to ``path`` (zip format, PyTorch >= 1.6), with tensors as numpy arrays."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise TfsrError(f"{path} is not a PyTorch zip checkpoint (saved by PyTorch < 1.6?): re-save it with a "
                        "current torch.save or convert the tensors to .npz")  # fmt: skip
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
        if not pickles:
            raise TfsrError(f"{path} has no data.pkl: not a PyTorch checkpoint")
        prefix = pickles[0][: -len("data.pkl")]
        try:
            with archive.open(pickles[0]) as file:
                return _TorchUnpickler(file, archive, prefix).load()
        except (pickle.UnpicklingError, KeyError, ValueError) as exc:
            raise TfsrError(f"{path}: cannot read the checkpoint ({exc})") from None


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Tensors of a ``.npz`` (state-dict keys as names) or of a ``.pth``/``.pt`` (read without PyTorch)."""
    path = Path(path)
    if not path.is_file():
        raise TfsrError(f"checkpoint {path} does not exist")
    if path.suffix == ".npz":
        try:
            with np.load(path) as data:
                return {k: data[k].astype(np.float32) for k in data.files}
        except (OSError, ValueError) as exc:
            raise TfsrError(f"{path} is not a readable .npz file ({exc})") from None
    if path.suffix in (".pth", ".pt"):
        state = read_torch_checkpoint(path)
        for key in ("state_dict", "model", "params"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
        if not isinstance(state, dict):
            raise TfsrError(f"{path} holds a {type(state).__name__}, not a state dict of tensors")
        return {k.removeprefix("module."): v.astype(np.float32) for k, v in state.items() if isinstance(v, np.ndarray)}
    raise TfsrError(f"{path}: unknown checkpoint type {path.suffix!r}; use .npz, .pth or .pt")


def torch_shuffle_permutation(channels: int, r: int) -> np.ndarray:
    """Index array ``idx`` with ``tf_channels = torch_channels[idx]`` for a sub-pixel conv of ``channels`` outputs."""
    c_out = channels // (r * r)
    idx = np.empty(channels, dtype=np.int64)
    for c in range(c_out):
        for i in range(r):
            for j in range(r):
                idx[(i * r + j) * c_out + c] = c * r * r + i * r + j
    return idx


def _layers_feeding_shuffle(model: keras.Model) -> dict[str, int]:
    feeding = {}
    for layer in model.layers:
        if isinstance(layer, PixelShuffle):
            for node in layer._inbound_nodes:
                for inbound in node.inbound_layers if isinstance(node.inbound_layers, list) else [node.inbound_layers]:
                    feeding[inbound.name] = layer.scale
    return feeding


def _to_keras(layer, kind: str, tensor: np.ndarray) -> np.ndarray:
    if kind == "bias" or tensor.ndim != 4:
        return tensor
    if isinstance(layer, layers.DepthwiseConv2D):
        return tensor.transpose(2, 3, 0, 1)  # (C, 1, kh, kw) -> (kh, kw, C, 1)
    # Conv2d (out,in,kh,kw) -> (kh,kw,in,out); ConvTranspose2d (in,out,kh,kw) -> Conv2DTranspose (kh,kw,out,in).
    # Both frameworks define the transposed conv as the gradient of the same cross-correlation: no spatial flip.
    return tensor.transpose(2, 3, 1, 0)


def _to_torch(layer, kind: str, tensor: np.ndarray) -> np.ndarray:
    if kind == "bias" or tensor.ndim != 4:
        return tensor
    if isinstance(layer, layers.DepthwiseConv2D):
        return tensor.transpose(2, 3, 0, 1)
    return tensor.transpose(3, 2, 0, 1)


def _weight_kinds(layer, weights: list) -> list[str]:
    if len(weights) > 2:
        raise TfsrError(f"layer {layer.name} has {len(weights)} weight tensors; the importer maps only weight/bias")
    return ["weight", "bias"] if len(weights) == 2 else ["weight"]


def state_dict_from_model(model: keras.Model) -> dict[str, np.ndarray]:
    """The inverse of :func:`assign_state_dict`: ``model``'s weights as a PyTorch-layout state dict."""
    shuffle_of = _layers_feeding_shuffle(model)
    state = {}
    for layer in model.layers:
        weights = layer.get_weights()
        for kind, value in zip(_weight_kinds(layer, weights), weights):
            if layer.name in shuffle_of:
                torch_order = np.empty_like(value)
                torch_order[..., torch_shuffle_permutation(value.shape[-1], shuffle_of[layer.name])] = value
                value = torch_order
            state[f"{layer.name}.{kind}"] = np.ascontiguousarray(_to_torch(layer, kind, value))
    return state


def assign_state_dict(model: keras.Model, state: dict[str, np.ndarray], source: str = "checkpoint") -> None:
    """Copy a PyTorch state dict into ``model`` in place; raise TfsrError on any key mismatch."""
    shuffle_of = _layers_feeding_shuffle(model)
    used: set[str] = set()
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        new = []
        for kind, current in zip(_weight_kinds(layer, weights), weights):
            key = f"{layer.name}.{kind}"
            if key not in state:
                raise TfsrError(f"{source} is missing key {key!r} (needed by layer {layer.name})")
            value = _to_keras(layer, kind, state[key])
            if layer.name in shuffle_of:
                perm = torch_shuffle_permutation(value.shape[-1], shuffle_of[layer.name])
                value = value[..., perm]
            if value.shape != current.shape:
                raise TfsrError(
                    f"{source} key {key!r} has shape {state[key].shape}, which does not fit layer "
                    f"{layer.name} (Keras shape {current.shape}); wrong model, width or scale?"
                )
            new.append(value)
            used.add(key)
        layer.set_weights(new)
    unexpected = sorted(set(state) - used)
    if unexpected:
        shown = ", ".join(repr(k) for k in unexpected[:5]) + (" ..." if len(unexpected) > 5 else "")
        raise TfsrError(f"{source} has {len(unexpected)} key(s) the model does not use: {shown}")
