"""Where int8 loses: per-layer float vs int8 errors from TFLite's QuantizationDebugger.

For each quantized op the debugger runs the op in int8 and in float on the same (quantized) inputs over the
debug patches, so each row is the error that op adds by itself: RMSE in pixel-value units and relative to the
op's quantization step (``rmse / scale`` well above 0.3 means a range or precision problem, not rounding).
The same debugger can also build selectively quantized models (``denylisted_ops``: those ops stay in float).
"""
from __future__ import annotations

import csv
import io
import warnings
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from tfsr.keras import tf
from tfsr.tflite import ConvertOptions, make_converter


@dataclass
class LayerError:
    op: str
    tensor: str  # the first TFLite name of the tensor: the Keras layer it came from
    rmse: float
    rmse_over_scale: float
    max_abs_error: float
    scale: float
    node: str = ""  # the full TFLite tensor name, as ``selectively_quantized(float_nodes=...)`` takes it

    def to_json(self) -> dict:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in asdict(self).items() if k != "node"}


def _debugger(model, options: ConvertOptions, representative: Sequence[np.ndarray], debug_patches: Sequence[np.ndarray],
              denylisted_ops: Sequence[str] = (), denylisted_nodes: Sequence[str] = ()):  # fmt: skip
    float_io = ConvertOptions(options.mode, "float32", options.input_hw, options.per_channel)
    converter = make_converter(model, float_io, representative)
    debug_options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_ops=list(denylisted_ops) or None, denylisted_nodes=list(denylisted_nodes) or None
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the debugger runs the deprecated tf.lite.Interpreter; it still works
        return tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=lambda: ([p[None].astype(np.float32)] for p in debug_patches),
            debug_options=debug_options,
        )  # fmt: skip


def layer_errors(model, options: ConvertOptions, representative: Sequence[np.ndarray],
                 debug_patches: Sequence[np.ndarray]) -> list[LayerError]:  # fmt: skip
    """Per-op int8 errors of ``model`` converted with ``options``, worst (by RMSE) first."""
    debugger = _debugger(model, options, representative, debug_patches)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        debugger.run()
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    rows = []
    for row in csv.DictReader(io.StringIO(dump.getvalue())):
        scale = float(row["scale"])
        rmse = float(np.sqrt(float(row["mean_squared_error"])))
        rows.append(LayerError(row["op_name"], row["tensor_name"].split(";")[0], rmse, rmse / scale if scale else 0.0,
                               float(row["max_abs_error"]), scale, row["tensor_name"]))  # fmt: skip
    return sorted(rows, key=lambda r: r.rmse, reverse=True)


def selectively_quantized(model, options: ConvertOptions, representative: Sequence[np.ndarray],
                          float_ops: Sequence[str] = (), float_nodes: Sequence[str] = ()) -> bytes:  # fmt: skip
    """An int8 model (float I/O) keeping ``float_ops`` (e.g. ``["MUL", "LOGISTIC"]`` for attention) and the
    ``float_nodes`` (``LayerError.node`` names, e.g. the worst layers) in float."""
    debugger = _debugger(model, options, representative, representative[:2], float_ops, float_nodes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return debugger.get_nondebug_quantized_model()
