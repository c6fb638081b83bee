"""Split a conv over the sum that feeds it: ``conv(a + b)`` becomes ``conv(a) + conv'(b)`` (``conv'`` the same
kernel without the bias), exactly in float, one conv per term.

Why it matters for int8: the sum is one int8 tensor, as wide as its widest term, and the conv reads every term at
that step. Split, each term keeps its own scale and the sum is taken after the conv, where the values are
what the next layer needs anyway. E-RFDN's upsampling conv reads the global skip ``LR_conv(c) + fea``: ``fea``
(the first conv's output) spans -351..365 in the default int8 model and makes the sum's int8 step 3.04, where
the refined branch alone needs 1.45. Split before equalizing, ``fea`` also loses its tie to ``LR_conv``'s
channels, and equalization scales both freely: default PTQ of the official weights, Set5 x4, seed-0 calibration
31.8796 -> 31.9464 dB, and 31.9778 -> 32.0311 with ``--weight-rounding reconstruct`` (docs/quantization-benchmarks.md). The price is one conv more per split (E-RFDN: +5 % multiply-adds).
"""
from __future__ import annotations

from tfsr.keras import keras, layers
from tfsr.models.common import activation_name, graph_use, model_nodes, rewired


def summed_inputs(model) -> dict[str, str]:
    """{conv layer: Add layer} of every linear plain conv called once on the output of an Add called once whose
    output nothing else reads (no other layer, not a model output)."""
    use = graph_use(model)
    splits = {}
    for layer, _, inputs, _ in use.nodes:
        if type(layer) is not layers.Conv2D or activation_name(layer) != "linear" or use.calls[layer.name] != 1 or len(inputs) != 1:
            continue
        add, _ = use.producers.get(id(inputs[0]), (None, []))
        if type(add) is layers.Add and use.calls[add.name] == 1 and use.read_once(inputs[0]):
            splits[layer.name] = add.name
    return splits


def split_summed_inputs(model) -> tuple[keras.Model, dict[str, str]]:
    """A copy of ``model`` with every split of ``summed_inputs`` made, and those splits ({conv: Add}); ``model``
    itself when there is none. Each split conv becomes ``{conv}.term{i}`` on the Add's i-th input (the bias on
    term 0) and an Add named after the conv sums them."""
    splits = summed_inputs(model)
    if not splits:
        return model, {}
    # The Add's inputs of its own node in ``model`` (a layer shared with another model has several nodes).
    terms = {layer.name: inputs for layer, _, inputs, _ in model_nodes(model) if layer.name in splits.values()}

    def split_call(conv_name: str):
        conv = model.get_layer(conv_name)

        def call(copied):
            kernel, *bias = conv.get_weights()
            outputs = []
            for i, term in enumerate(terms[splits[conv_name]]):
                part = layers.Conv2D.from_config({**conv.get_config(), "name": f"{conv_name}.term{i}",
                                                  "use_bias": bool(bias) and i == 0})  # fmt: skip
                outputs.append(part(copied(term)))
                part.set_weights([kernel, *bias] if i == 0 else [kernel])
            return layers.Add(name=conv_name)(outputs)

        return call

    return rewired(model, {conv: split_call(conv) for conv in splits}, dropped=splits.values()), splits
