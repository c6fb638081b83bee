"""Building blocks shared by the architectures: convolutions initialised as PyTorch does.

The papers' networks were trained with PyTorch's default init (kaiming-uniform with a=sqrt(5), bias
uniform in +-1/sqrt(fan_in)). Keras' Glorot/zero default makes s-LWSR16 learn ~30x slower, so every conv here
uses the PyTorch init: part of a faithful port.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from tfsr.keras import keras, layers, tf


def activation_name(layer) -> str:
    """The name of a layer's activation function ("" for a layer without one)."""
    return getattr(getattr(layer, "activation", None), "__name__", "")


def model_nodes(model) -> Iterator[tuple[keras.layers.Layer, int, list, list]]:
    """(layer, node index, input tensors, output tensors) of every call inside ``model``: its own nodes only, as
    a layer shared with another model (tfmot's strip_pruning reuses every unpruned layer) has nodes in both."""
    for layer in model.layers:
        for index, node in enumerate(layer._inbound_nodes):
            if f"{layer.name}_ib-{index}" in model._network_nodes:
                yield layer, index, tf.nest.flatten(node.keras_inputs), tf.nest.flatten(node.outputs)


@dataclass
class GraphUse:
    """How a model's own nodes (``model_nodes``) use its layers and tensors, for rewrites that must be exact."""

    nodes: list  # (layer, node index, input tensors, output tensors)
    calls: dict[str, int]  # layer name -> times called
    readers: dict[int, int]  # id(tensor) -> calls reading it
    producers: dict[int, tuple]  # id(tensor) -> (layer, its input tensors)
    outputs: set[int]  # ids of the model's output tensors

    def read_once(self, tensor) -> bool:
        """``tensor`` is read by one call and is not a model output."""
        return self.readers.get(id(tensor), 0) == 1 and id(tensor) not in self.outputs


def graph_use(model) -> GraphUse:
    use = GraphUse(list(model_nodes(model)), {}, {}, {}, {id(t) for t in model.outputs})
    for layer, _, inputs, outputs in use.nodes:
        use.calls[layer.name] = use.calls.get(layer.name, 0) + 1
        for t in inputs:
            use.readers[id(t)] = use.readers.get(id(t), 0) + 1
        for t in outputs:
            use.producers[id(t)] = (layer, inputs)
    return use


def rewired(model, replaced: dict[str, Callable[[Callable], object]], dropped: Iterable[str] = ()) -> keras.Model:
    """A copy of ``model`` (new layers, same weights) in which the call of each layer named in ``replaced`` is
    ``replaced[name](copied)``, ``copied`` mapping a tensor of ``model`` to its copy (the function builds and sets
    the weights of any layer it makes), and the layers named in ``dropped`` are not called (nothing else may read
    them). A layer called several times (weight sharing) stays one layer called as often."""
    dropped = set(dropped)
    new_inputs = [keras.Input(batch_size=t.shape[0], shape=t.shape[1:], dtype=t.dtype, name=t.name.split(":")[0])
                  for t in model.inputs]  # fmt: skip
    tensors = {id(old): new for old, new in zip(model.inputs, new_inputs)}
    clones: dict[str, keras.layers.Layer] = {}
    weights: dict[str, list[np.ndarray]] = {}
    for depth in sorted(model._nodes_by_depth, reverse=True):  # inputs first
        for node in model._nodes_by_depth[depth]:
            layer = node.layer
            if isinstance(layer, keras.layers.InputLayer) or layer.name in dropped:
                continue
            if layer.name in replaced:
                out = replaced[layer.name](lambda t: tensors[id(t)])
            else:
                if layer.name not in clones:
                    clones[layer.name] = layer.__class__.from_config(layer.get_config())
                    weights[layer.name] = layer.get_weights()
                new = tf.nest.map_structure(lambda t: tensors.get(id(t), t), (node.call_args, node.call_kwargs))
                out = clones[layer.name](*new[0], **new[1])
            for old, new_t in zip(tf.nest.flatten(node.outputs), tf.nest.flatten(out)):
                tensors[id(old)] = new_t
    for name, clone in clones.items():
        clone.set_weights(weights[name])
    outputs = [tensors[id(t)] for t in model.outputs]
    return keras.Model(new_inputs, outputs if len(outputs) > 1 else outputs[0], name=model.name)


def torch_kernel_init() -> keras.initializers.Initializer:
    # kaiming_uniform(a=sqrt(5)): bound = sqrt(6 / ((1 + 5) * fan_in)) = sqrt(1 / fan_in) = VarianceScaling(1/3).
    return keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in", distribution="uniform")


def torch_bias_init(fan_in: int) -> keras.initializers.Initializer:
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound)


def conv_layer(
    filters: int,
    kernel_size: int,
    in_channels: int,
    *,
    name: str | None = None,
    activation=None,
    use_bias: bool = True,
    strides: int = 1,
    padding: str = "same",
) -> layers.Conv2D:
    """A Conv2D with PyTorch's default init. Fuse the activation here so QAT fake-quantizes the weights."""
    fan_in = in_channels * kernel_size * kernel_size
    return layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        activation=activation,
        use_bias=use_bias,
        kernel_initializer=torch_kernel_init(),
        bias_initializer=torch_bias_init(fan_in) if use_bias else "zeros",
        name=name,
    )


def conv(x, filters: int, kernel_size: int = 3, **kwargs):
    """Apply a fresh :func:`conv_layer` to tensor ``x``."""
    return conv_layer(filters, kernel_size, x.shape[-1], **kwargs)(x)


def transposed_conv_layer(filters: int, kernel: int, *, strides: int, name: str, activation=None,
                          padding: str = "valid") -> layers.Conv2DTranspose:  # fmt: skip
    """A Conv2DTranspose initialised as PyTorch's ConvTranspose2d.

    PyTorch takes the fan-in from weight dim 1 = out_channels * k * k, the same fan Keras' VarianceScaling
    computes for a (k, k, out, in) kernel, so the kaiming-uniform bound agrees.
    """
    return layers.Conv2DTranspose(
        filters,
        kernel,
        strides=strides,
        padding=padding,
        activation=activation,
        kernel_initializer=torch_kernel_init(),
        bias_initializer=torch_bias_init(filters * kernel * kernel),
        name=name,
    )


def depthwise_conv(x, kernel_size: int = 3, *, name: str | None = None, activation=None, use_bias: bool = False):
    fan_in = kernel_size * kernel_size  # one input channel per group
    return layers.DepthwiseConv2D(
        kernel_size,
        padding="same",
        activation=activation,
        use_bias=use_bias,
        depthwise_initializer=torch_kernel_init(),
        bias_initializer=torch_bias_init(fan_in) if use_bias else "zeros",
        name=name,
    )(x)


def mean_shift_conv(x, sign: int, name: str, rgb_mean=(0.4488, 0.4371, 0.4040), rgb_range: float = 255.0):
    """EDSR's MeanShift as the released code trains it: a 1x1 conv initialised to +-mean, left trainable."""
    kernel = np.eye(3, dtype=np.float32).reshape(1, 1, 3, 3)
    bias = sign * rgb_range * np.asarray(rgb_mean, dtype=np.float32)
    return layers.Conv2D(
        3,
        1,
        kernel_initializer=keras.initializers.Constant(kernel.tolist()),
        bias_initializer=keras.initializers.Constant(bias.tolist()),
        name=name,
    )(x)
