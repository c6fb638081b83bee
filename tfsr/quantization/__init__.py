"""Quantization-aware training, pruning, Edge TPU rewrites and per-layer error analysis for tfsr models.

Modules import tensorflow-model-optimization only where they need it (it switches ``tf.keras`` to Keras 2 for the
whole process, which tfsr already does): ``configs`` (QuantizeConfigs for every tfsr custom layer), ``qat``,
``pruning``, ``edgetpu``, ``data`` (real LR/HR patches) and ``debug`` (float vs int8 per-layer errors). PTQ's own
remedies: ``fold`` and ``equalize`` (exact in float), ``ranges`` (activation ranges), ``concat_scales``,
``reconstruct`` (int8 weights chosen layer by layer); ``simulate`` runs int8 inference layer by layer in Keras.
"""
