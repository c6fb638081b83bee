"""Edge TPU rewrites (pixel shuffle -> fixed transposed convolution, LeakyReLU -> PReLU) and its compiler.

The Edge TPU has no DEPTH_TO_SPACE. A transposed convolution with kernel r and stride r whose kernel routes input
channel ``(i*r + j)*C + c`` to output pixel ``(i, j)`` of channel ``c`` (weight 1, everything else 0) computes
exactly ``tf.nn.depth_to_space`` with TensorFlow's channel order: each output is one input times 1.0.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfsr.keras import keras, layers
from tfsr.layers import PixelShuffle


def shuffle_kernel(out_channels: int, r: int) -> np.ndarray:
    """The Conv2DTranspose kernel (r, r, C, C*r*r) equal to depth_to_space(r) on C*r*r channels."""
    kernel = np.zeros((r, r, out_channels, out_channels * r * r), dtype=np.float32)
    for i in range(r):
        for j in range(r):
            for c in range(out_channels):
                kernel[i, j, c, (i * r + j) * out_channels + c] = 1.0
    return kernel


def edgetpu_rewrite(model: keras.Model) -> keras.Model:
    """A clone of ``model`` with only Edge TPU ops, computing exactly the same function:

    - every PixelShuffle becomes its fixed-weight Conv2DTranspose (TRANSPOSE_CONV);
    - every LeakyReLU(a) becomes a PReLU with alpha = a on every channel (PRELU; the Edge TPU has no LEAKY_RELU).
    """

    def clone(layer):
        if isinstance(layer, PixelShuffle):
            channels = layer.input_shape[-1] // layer.scale**2
            return layers.Conv2DTranspose(channels, layer.scale, strides=layer.scale, padding="valid", use_bias=False,
                                          trainable=False, name=layer.name)  # fmt: skip
        if isinstance(layer, layers.LeakyReLU):
            return layers.PReLU(shared_axes=[1, 2], trainable=False, name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    rewritten = keras.models.clone_model(model, clone_function=clone)
    for old, new in zip(model.layers, rewritten.layers):
        if isinstance(old, PixelShuffle):
            new.set_weights([shuffle_kernel(new.filters, old.scale)])
        elif isinstance(old, layers.LeakyReLU):
            new.set_weights([np.full(new.weights[0].shape, float(old.alpha), dtype=np.float32)])
        else:
            new.set_weights(old.get_weights())
    return rewritten


@dataclass
class CompilerResult:
    ran: bool
    returncode: int | None  # None: not run
    output: Path | None  # the compiled ``*_edgetpu.tflite``, when the compiler wrote one
    log: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.output is not None

    def summary(self) -> str:
        """One line: what became of the compilation (the compiler's last line says how much maps to the TPU)."""
        if not self.ran:
            return self.log
        last = self.log.strip().splitlines()[-1] if self.log.strip() else "no output"
        if self.ok:
            return f"compiled to {self.output} ({last})"
        return f"failed ({'did not finish' if self.returncode is None else f'exit {self.returncode}'}): {last}"

    def to_json(self) -> dict:
        return {"ran": self.ran, "ok": self.ok, "output": self.output and str(self.output), "summary": self.summary()}


def run_edgetpu_compiler(tflite_path: Path, timeout: int = 600) -> CompilerResult:
    """Run ``edgetpu_compiler`` on the file when it is on PATH; otherwise say so (the op audit still applies)."""
    compiler = shutil.which("edgetpu_compiler")
    if compiler is None:
        return CompilerResult(False, None, None, "edgetpu_compiler is not on PATH: only the op audit was run")
    out_dir = tflite_path.parent
    try:
        proc = subprocess.run([compiler, "-s", "-o", str(out_dir), str(tflite_path)], capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        return CompilerResult(True, None, None, f"{compiler} ran over {timeout} s and was stopped")
    except OSError as exc:
        return CompilerResult(True, None, None, f"{compiler} could not be started: {exc.strerror or exc}")
    compiled = out_dir / f"{tflite_path.stem}_edgetpu.tflite"
    return CompilerResult(True, proc.returncode, compiled if compiled.is_file() else None, proc.stdout + proc.stderr)
