"""Quantization-aware training, pruning, Edge TPU rewrites and per-layer error analysis for tfsr models.

Modules import tensorflow-model-optimization only where they need it (it switches ``tf.keras`` to Keras 2 for the
whole process, which tfsr already does): ``configs`` (QuantizeConfigs for every tfsr custom layer), ``qat``,
``pruning``, ``edgetpu``, ``data`` (real LR/HR patches) and ``debug`` (float vs int8 per-layer errors).
"""
