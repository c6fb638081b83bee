"""The single place tfsr imports Keras.

tensorflow-model-optimization only accepts Keras 2 models, so tfsr builds everything with ``tf_keras``.
Setting TF_USE_LEGACY_KERAS before TensorFlow loads also makes ``tf.keras`` agree with it, so users
need not set anything themselves.
"""
import contextlib
import os
import re
import sys
import tempfile

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Lines TensorFlow's native code prints on import whatever TF_CPP_MIN_LOG_LEVEL says (absl logs before init).
_IMPORT_NOISE = re.compile(rb"^(WARNING: All log messages before absl|[IW]0000 |E0000 .*cuInit)")


@contextlib.contextmanager
def _filtered_native_stderr():
    """Capture fd 2 while native libraries load; replay every line that is not known start-up noise."""
    try:
        saved = os.dup(2)
    except OSError:  # no usable stderr: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().splitlines(keepends=True) if not _IMPORT_NOISE.match(line)]
            if kept:
                sys.stderr.flush()
                os.write(2, b"".join(kept))


with _filtered_native_stderr():
    import tensorflow as tf
    import tf_keras as keras

    tf.constant(0.0) + 1.0  # device initialisation logs land here too

# Grappler's remapper fuses Conv2D + BiasAdd + Add + LeakyRelu into one oneDNN op that ignores the LeakyReLU's
# alpha (it applies 0.2): RFDN's residual blocks (alpha 0.05) computed something else in fit, predict and every
# tf.function than in eager mode and in TFLite (tests/test_zoo.py::test_graph_mode_computes_what_eager_mode_computes).
tf.config.optimizer.set_experimental_options({"remapping": False})

layers = keras.layers

__all__ = ["keras", "layers", "tf"]
