"""QAT configs for every custom layer, range calibration, QAT export, pruning, the Edge TPU rewrite."""
from __future__ import annotations

import os

import numpy as np
import pytest

from tfsr.keras import keras, layers, tf
from tfsr.layers import PixelShuffle
from tfsr.tflite import ConvertOptions, TFLitePredictor, audit_ops, convert, gzip_size
from test_tflite import psnr, smooth_image, tiny_sr

tfmot = pytest.importorskip("tensorflow_model_optimization")

from tfsr.quantization import configs  # noqa: E402
from tfsr.quantization.data import PatchPairs  # noqa: E402
from tfsr.quantization.edgetpu import edgetpu_rewrite, shuffle_kernel  # noqa: E402
from tfsr.quantization.qat import calibrate_ranges, fine_tune, range_variables  # noqa: E402


@pytest.fixture(scope="module")
def pairs():
    from tfsr.imresize import imresize

    rng = np.random.default_rng(7)
    hr = np.stack([smooth_image(rng, 32, 32) for _ in range(16)])
    lr = np.stack([imresize(h, 0.5) for h in hr])
    return PatchPairs(lr.astype(np.float32), hr.astype(np.float32))


def every_layer_model() -> keras.Model:
    """A small model using every tfsr custom layer and the stock layers tfmot does not cover by default."""
    from tfsr import layers as tl

    lr = keras.Input((None, None, 3))
    x = tl.MeanShift(-1)(lr)
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    y = layers.Conv2D(8, 3, strides=2, padding="valid")(x)
    y = tl.ResizeLike()([y, x])
    gate = layers.Conv2D(8, 1, activation="sigmoid")(tl.ContrastPooling()(x))
    x = layers.Multiply()([x, gate])
    spatial = layers.Conv2D(1, 3, padding="same", activation="sigmoid")(tl.ChannelMeanMax()(x))
    x = layers.Multiply()([x, spatial])
    x = layers.Add()([tl.LearnableScalar()(x), y])
    x = layers.Average()([x, layers.LeakyReLU(0.05)(y)])
    x = layers.Conv2D(12, 3, padding="same")(x)
    x = tl.MeanShift(+1)(PixelShuffle(2)(x))
    return keras.Model(lr, layers.ReLU(max_value=255.0)(x))


def test_patch_pairs_cut_aligned_crops_whose_lr_is_the_bicubic_of_their_hr(tmp_path):
    from PIL import Image

    from tfsr.imresize import imresize
    from tfsr.quantization.data import patch_pairs

    rng = np.random.default_rng(5)
    for i in range(3):
        Image.fromarray(smooth_image(rng, 40 + 8 * i, 44)).save(tmp_path / f"img{i}.png")
    pairs = patch_pairs(tmp_path, 7, (6, 5), 2, seed=1)
    assert pairs.lr.shape == (7, 6, 5, 3) and pairs.hr.shape == (7, 12, 10, 3)  # (height, width) for fixed shapes
    for lr, hr in zip(pairs.lr, pairs.hr):
        np.testing.assert_array_equal(lr, imresize(hr.astype(np.uint8), 0.5))  # HR crops of the images, LR made here
    again, other = patch_pairs(tmp_path, 7, (6, 5), 2, seed=1), patch_pairs(tmp_path, 7, (6, 5), 2, seed=2)
    assert np.array_equal(again.hr, pairs.hr) and not np.array_equal(other.hr, pairs.hr)


def test_every_custom_layer_has_a_quantize_config():
    assert set(configs.custom_layer_classes()) == set(configs.CUSTOM_LAYER_CONFIGS)


def test_qat_clones_every_custom_layer():
    model = every_layer_model()
    qmodel = configs.quantize_model(model)
    wrapped = {type(l.layer).__name__ for l in qmodel.layers if hasattr(l, "layer")}
    assert set(configs.custom_layer_classes()) <= wrapped
    x = smooth_image(np.random.default_rng(0), 20, 20)[None].astype(np.float32)
    assert qmodel(x).shape == model(x).shape == (1, 40, 40, 3)


def test_qat_takes_relu6_convs_and_quantizes_their_weights(pairs):
    # s-LWSR's compressed blocks: DepthwiseConv2D(activation="relu6"), which tfmot's activation wrapper refuses.
    x = keras.Input((None, None, 3))
    y = layers.DepthwiseConv2D(3, padding="same", activation="relu6", name="dw")(x)
    y = layers.Conv2D(12, 3, padding="same", activation="relu6", name="conv")(y)
    model = keras.Model(x, PixelShuffle(2, name="shuffle")(layers.Conv2D(12, 1, name="out")(y)))
    qmodel = configs.quantize_model(model)
    names = [v.name for v in qmodel.weights]
    assert any(n.endswith("depthwise_kernel_min:0") for n in names) and any("conv/kernel_min" in n for n in names)
    calibrate_ranges(qmodel, pairs.lr[:4], passes=2)
    data = convert(qmodel, ConvertOptions("int8-qat", "int8"), list(pairs.lr))
    assert audit_ops(data).problems == []


def test_fine_tuning_takes_l2_and_a_cosine_learning_rate(pairs):
    qmodel = configs.quantize_model(tiny_sr(2))
    calibrate_ranges(qmodel, pairs.lr, passes=2)
    logged = []
    losses = fine_tune(qmodel, pairs, steps=4, batch=4, learning_rate=1e-3, log=logged.append, loss="l2", cosine=True)
    assert qmodel.loss == "mean_squared_error" and "L2" in logged[-1] and all(np.isfinite(losses))
    # the 4th and last step ran at the cosine's value for step 3 of 4: 1e-3 * (1 + cos(3 pi / 4)) / 2
    assert int(qmodel.optimizer.iterations) == 4
    assert float(qmodel.optimizer.learning_rate) == pytest.approx(1e-3 * (1 + np.cos(0.75 * np.pi)) / 2)
    with pytest.raises(ValueError, match="loss must be one of"):
        fine_tune(qmodel, pairs, steps=1, loss="huber")


def test_distillation_fine_tunes_towards_the_teacher_on_a_stream_of_batches(pairs, tmp_path):
    from tfsr.quantization.qat import Distillation, distillation_pairs, pairs_dataset

    teacher = tiny_sr(2, seed=1)
    student = tiny_sr(2, seed=2)  # another function: far from the teacher
    stream = pairs_dataset(pairs, 4).map(lambda lr, hr: (lr, tf.zeros_like(hr)))  # targets that must be ignored

    def distance():
        return float(np.mean((student.predict(pairs.lr, verbose=0) - teacher.predict(pairs.lr, verbose=0)) ** 2))

    before, teacher_weights = distance(), teacher.get_weights()
    losses = fine_tune(student, stream, steps=20, learning_rate=1e-3, log=lambda m: None, loss="l2", teacher=teacher)
    assert len(losses) == 10 and losses[-1] < losses[0]
    assert all(np.array_equal(a, b) for a, b in zip(teacher.get_weights(), teacher_weights))
    assert distance() < 0.8 * before  # towards the teacher, not towards the zero targets
    trained = Distillation(student, teacher)
    trained.compile(optimizer=keras.optimizers.Adam(1e-9), loss="mse")
    # BackupAndRestore (fine_tune's backups) builds the optimizer on the model's trainable variables up front
    trained.fit(stream, steps_per_epoch=1, verbose=0, callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path))])
    # Adam's step counter and two slots per student weight: none for the teacher's, which are not trained
    assert len(trained.optimizer.variables) == 1 + 2 * len(student.trainable_variables)
    # precomputed targets (what quantize does with a fixed patch set) give the same first loss as the stream
    first = fine_tune(tiny_sr(2, seed=2), distillation_pairs(teacher, pairs.lr), steps=1, batch=16, log=lambda m: None,
                      loss="l2")  # fmt: skip
    streamed = fine_tune(tiny_sr(2, seed=2), pairs_dataset(pairs, 16), steps=1, log=lambda m: None, loss="l2",
                         teacher=teacher)  # fmt: skip
    assert first[0] == pytest.approx(streamed[0], rel=1e-4)


def test_fine_tuning_stops_on_a_non_finite_loss(pairs):
    from tfsr.errors import TfsrError
    from tfsr.quantization.qat import FineTuningDiverged

    broken = PatchPairs(pairs.lr, np.full_like(pairs.hr, np.nan))
    with pytest.raises(FineTuningDiverged, match="the loss became NaN or infinite at step 1: lower --lr") as caught:
        fine_tune(tiny_sr(2), broken, steps=5, batch=4, log=lambda m: None)
    assert isinstance(caught.value, TfsrError) and caught.value.step == 1


@pytest.mark.fault
def test_pruning_killed_then_resumed_from_its_backup_reaches_its_sparsity(pairs, tmp_path, monkeypatch):
    from tfsr.quantization import pruning

    class Killed(Exception):
        pass

    class KillAtStep(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations) == 13:
                raise Killed  # after the backup of step 12 (each logged step, 2 steps here, ends with one)

    fine_tune_once = pruning.fine_tune
    monkeypatch.setattr(pruning, "fine_tune", lambda *a, callbacks=(), **k: fine_tune_once(*a, callbacks=[*callbacks, KillAtStep()], **k))
    model, backup = tiny_sr(2, width=16), tmp_path / "backup"
    with pytest.raises(Killed):
        pruning.prune(model, pairs, 0.5, steps=20, batch=4, log=lambda m: None, backup_dir=backup)
    monkeypatch.setattr(pruning, "fine_tune", fine_tune_once)
    logged = []
    pruned = pruning.prune(model, pairs, 0.5, steps=20, batch=4, log=logged.append, backup_dir=backup)
    assert [line.split(":")[0] for line in logged[1:]] == [f"fine-tuning step {s}/20" for s in range(14, 21, 2)]
    assert abs(pruning.kernel_sparsity(pruned) - 0.5) < 0.02  # the schedule went on from step 12, not from 0
    assert not (backup / "chief").exists()


@pytest.mark.fault
def test_killed_cosine_fine_tuning_resumes_on_its_schedule(pairs, tmp_path):
    class Killed(Exception):
        pass

    class KillAtStep(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations) == 13:
                raise Killed  # after the backup of step 12

    model, backup = tiny_sr(2), tmp_path / "backup"
    options = dict(steps=20, batch=4, learning_rate=1e-3, cosine=True, backup_dir=backup, backup_every=2)
    with pytest.raises(Killed):
        fine_tune(model, pairs, callbacks=[KillAtStep()], log=lambda m: None, **options)
    logged = []
    fine_tune(model, pairs, log=logged.append, **options)
    # Steps 13-20 ran at the cosine's values for steps 12-19 of 20, not at a schedule restarted from 1e-3.
    rates = {int(line.split("/")[0].split()[-1]): line.split("lr ")[-1] for line in logged}
    assert rates == {s: f"{1e-3 * (1 + np.cos(np.pi * (s - 1) / 20)) / 2:.2g}" for s in range(14, 21, 2)}


def test_range_calibration_converges_and_qat_export_matches(pairs):
    model = tiny_sr(2)
    qmodel = configs.quantize_model(model)
    ranges = range_variables(qmodel)
    assert ranges and max(abs(float(v.numpy())) for v in ranges) == 6.0  # tfmot starts at [-6, 6]
    calibration = calibrate_ranges(qmodel, pairs.lr, passes=6)
    input_max = [v for v in ranges if v.name.startswith("quantize_layer") and v.name.endswith("_max:0")][0]
    assert float(input_max.numpy()) > 200  # the LR pixels' real range, not 6
    assert calibration.final_change < 1e-3 or calibration.passes == 6  # it stops only once no range moves
    x = pairs.lr[:4]
    assert psnr(qmodel(x), model(x)) > 40.0
    losses = fine_tune(qmodel, pairs, steps=4, batch=4, log=lambda m: None)
    assert len(losses) == 4 and all(np.isfinite(losses))
    assert qmodel.loss == "mean_absolute_error" and float(qmodel.optimizer.learning_rate) == pytest.approx(1e-5)
    data = convert(qmodel, ConvertOptions("int8-qat", "int8"))
    audit = audit_ops(data)
    assert audit.input_types == ["INT8"] and audit.problems == []
    image = pairs.lr[0].astype(np.uint8)
    assert psnr(TFLitePredictor(data, "qat")(image), qmodel(image[None].astype(np.float32))[0]) > 40.0


def test_edgetpu_rewrite_is_exact():
    rng = np.random.default_rng(0)
    for r, channels in ((2, 3), (3, 4), (4, 3)):
        x = tf.constant(rng.normal(size=(1, 5, 7, channels * r * r)).astype(np.float32) * 100)
        deconv = layers.Conv2DTranspose(channels, r, strides=r, use_bias=False)
        deconv.build(x.shape)
        deconv.set_weights([shuffle_kernel(channels, r)])
        np.testing.assert_array_equal(deconv(x).numpy(), PixelShuffle(r)(x).numpy())
    model = tiny_sr(2)
    rewritten = edgetpu_rewrite(model)
    assert not any(isinstance(l, PixelShuffle) for l in rewritten.layers)
    lr = smooth_image(rng, 11, 9)[None].astype(np.float32)
    np.testing.assert_array_equal(rewritten(lr).numpy(), model(lr).numpy())
    x = keras.Input((None, None, 3))
    leaky = keras.Model(x, layers.LeakyReLU(0.05)(layers.Conv2D(4, 3, padding="same")(x)))
    as_prelu = edgetpu_rewrite(leaky)
    assert [type(l).__name__ for l in as_prelu.layers] == ["InputLayer", "Conv2D", "PReLU"]
    np.testing.assert_array_equal(as_prelu(lr * 2 - 255).numpy(), leaky(lr * 2 - 255).numpy())


def test_edgetpu_rewrite_removes_depth_to_space(pairs):
    model = tiny_sr(2)
    options = ConvertOptions("int8", "uint8", input_hw=(16, 16))
    before = audit_ops(convert(model, options, list(pairs.lr)), "edgetpu")
    assert any(p.startswith("DEPTH_TO_SPACE") for p in before.problems)
    data = convert(edgetpu_rewrite(model), options, list(pairs.lr))
    after = audit_ops(data, "edgetpu")
    assert "DEPTH_TO_SPACE" not in after.counts() and after.counts()["TRANSPOSE_CONV"] == 1
    assert after.problems == []
    image = pairs.lr[1].astype(np.uint8)
    assert psnr(TFLitePredictor(data, "edgetpu")(image), model(image[None].astype(np.float32))[0]) > 40.0


FAKE_EDGETPU_COMPILER = """#!/bin/sh
# as edgetpu_compiler -s -o DIR FILE: writes DIR/<stem>_edgetpu.tflite; fails on a file that says "bad", and
# after writing it on one that says "half"
if grep -q bad "$4"; then echo "Edge TPU Compiler version 16.0"; echo "Internal compiler error. Aborting!"; exit 1; fi
cp "$4" "$3/$(basename "$4" .tflite)_edgetpu.tflite"
if grep -q half "$4"; then echo "Segmentation fault"; exit 139; fi
echo "Model compiled successfully in 12 ms."; echo "Number of operations that will run on Edge TPU: 7"
"""


def fake_edgetpu_compiler(folder, monkeypatch):
    compiler = folder / "edgetpu_compiler"
    compiler.write_text(FAKE_EDGETPU_COMPILER)
    compiler.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


def test_edgetpu_compiler_runs_when_on_path_and_says_what_became_of_the_file(tmp_path, monkeypatch):
    from tfsr.quantization.edgetpu import run_edgetpu_compiler

    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    absent = run_edgetpu_compiler(tmp_path / "model.tflite").to_json()
    assert absent == {"ran": False, "ok": False, "output": None,
                      "summary": "edgetpu_compiler is not on PATH: only the op audit was run"}  # fmt: skip
    monkeypatch.undo()
    fake_edgetpu_compiler(tmp_path, monkeypatch)
    (tmp_path / "good.tflite").write_text("good")
    good = run_edgetpu_compiler(tmp_path / "good.tflite")
    assert good.ok and good.output == tmp_path / "good_edgetpu.tflite" and good.output.read_text() == "good"
    assert good.summary() == f"compiled to {good.output} (Number of operations that will run on Edge TPU: 7)"
    (tmp_path / "bad.tflite").write_text("bad")
    bad = run_edgetpu_compiler(tmp_path / "bad.tflite")
    assert not bad.ok and bad.output is None
    assert bad.summary() == "failed (exit 1): Internal compiler error. Aborting!"
    (tmp_path / "half.tflite").write_text("half")
    half = run_edgetpu_compiler(tmp_path / "half.tflite")  # a file written by a compiler that then crashed
    assert not half.ok and half.summary() == "failed (exit 139): Segmentation fault"


def test_an_edgetpu_compiler_that_hangs_or_cannot_start_is_a_failed_result(tmp_path, monkeypatch):
    from tfsr.quantization.edgetpu import run_edgetpu_compiler

    compiler = tmp_path / "edgetpu_compiler"
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    compiler.write_text("#!/bin/sh\nexec sleep 5\n")
    compiler.chmod(0o755)
    hung = run_edgetpu_compiler(tmp_path / "model.tflite", timeout=0.5)
    assert not hung.ok and hung.summary() == f"failed (did not finish): {compiler} ran over 0.5 s and was stopped"
    compiler.write_bytes(b"\x7fELF not really")  # executable, but no program
    broken = run_edgetpu_compiler(tmp_path / "model.tflite")
    assert not broken.ok and broken.summary().startswith(f"failed (did not finish): {compiler} could not be started: ")


def test_pruning_reaches_sparsity_and_compresses(pairs):
    from tfsr.quantization.pruning import check_sparsity, kernel_sparsity, prune

    model = tiny_sr(2, width=16)  # the 16x16 body conv is the one layer big enough to prune
    pruned = prune(model, pairs, 0.5, steps=8, batch=4, log=lambda m: None)
    assert abs(kernel_sparsity(pruned) - 0.5) < 0.02
    assert kernel_sparsity(model) == 0.0
    options = ConvertOptions("int8", "int8")
    dense_size = gzip_size(convert(model, options, list(pairs.lr)))
    pruned_size = gzip_size(convert(pruned, options, list(pairs.lr)))
    assert pruned_size < dense_size
    with pytest.raises(Exception, match="between 0 and 1"):
        check_sparsity(1.5)


def test_prune_preserving_qat_takes_transposed_convs(pairs):
    # LiteSRNet's upsampler: tfmot's prune-preserve scheme has no config of its own for Conv2DTranspose.
    x = keras.Input((None, None, 3))
    y = layers.Conv2D(16, 3, padding="same", activation="relu", name="body")(x)
    model = keras.Model(x, layers.Conv2DTranspose(3, 2, strides=2, name="up")(y))
    qmodel = configs.quantize_model(model, preserve_sparsity=True)
    assert "up" in {l.layer.name for l in qmodel.layers if hasattr(l, "layer")}
    calibrate_ranges(qmodel, pairs.lr[:4], passes=2)
    assert audit_ops(convert(qmodel, ConvertOptions("int8-qat", "int8"), list(pairs.lr))).problems == []


def test_per_layer_error_report_names_layers(pairs):
    from tfsr.quantization.debug import layer_errors

    rows = layer_errors(tiny_sr(2), ConvertOptions("int8", "int8"), list(pairs.lr[:8]), list(pairs.lr[8:12]))
    assert [r.rmse for r in rows] == sorted((r.rmse for r in rows), reverse=True)
    by_op = {r.op: r for r in rows}
    assert {"CONV_2D", "CONCATENATION", "DEPTH_TO_SPACE"} <= set(by_op)
    assert by_op["CONCATENATION"].rmse == 0.0  # requantization-free ops add no error of their own
    convs = [r for r in rows if r.op == "CONV_2D"]
    assert all(r.rmse > 0 for r in convs) and any("body" in r.tensor for r in convs)
    for r in convs:
        assert r.rmse_over_scale == pytest.approx(r.rmse / r.scale)
        if "clip_output" not in r.tensor:  # the error a ReLU conv adds is its rounding: about step / sqrt(12)
            assert 0.15 < r.rmse_over_scale < 0.5


def test_propagated_errors_follow_int8_through_the_network(pairs):
    from tfsr.quantization.debug import propagated_errors
    from tfsr.quantization.ranges import calibrated_model, quantize_calibrated

    options = ConvertOptions("int8", "uint8")
    calibrated = calibrated_model(tiny_sr(2), options, list(pairs.lr[:8]))
    int8 = quantize_calibrated(calibrated, options)
    rows = {r.tensor: r for r in propagated_errors(calibrated, int8, list(pairs.lr[8:10]))}
    assert all(r.rmse == r.snr_db - r.snr_db == 0 for r in propagated_errors(calibrated, calibrated, list(pairs.lr[8:9])))
    [head] = [r for name, r in rows.items() if name.endswith("/head/Relu")]
    [body] = [r for name, r in rows.items() if name.endswith("/body/Relu")]
    assert head.rmse > 0 and body.snr_db < head.snr_db - 3  # int8 rounding accumulates
    assert head.abs_max > 10 and 20 < head.snr_db < 60 and head.bias_rms < 0.6 * head.rmse  # rounding is mostly unbiased
    [output] = [r for name, r in rows.items() if name.startswith("StatefulPartitionedCall")]
    assert output.abs_max == 255.0 and 0 < output.rmse < 2.5  # uint8 output: int8 SR within ~40 dB of float


def test_qat_output_conv_takes_the_clip_range(pairs):
    """The conv before the pixel shuffle and the output clip quantizes straight to the clip's [0, 255] (step 1):
    with a learned range of its own the int8 graph would round twice at its very end."""
    model = tiny_sr(2)
    assert configs.clip_producers(model) == {"up"}
    # tfmot's strip_pruning clones a model reusing its layers: each then has nodes in two models
    assert configs.clip_producers(keras.models.clone_model(model, clone_function=lambda layer: layer)) == {"up"}
    every = every_layer_model()
    mean_shift = every.layers[-2]  # weightless, after the pixel shuffle: its output range is fixed too
    assert type(mean_shift).__name__ == "MeanShift" and configs.clip_producers(every) == {mean_shift.name}
    qmodel = configs.quantize_model(model)
    assert not [v for v in range_variables(qmodel) if "/up/" in v.name or v.name.startswith("quant_up/")]
    calibrate_ranges(qmodel, pairs.lr[:4], passes=2)
    data = convert(qmodel, ConvertOptions("int8-qat", "int8"), list(pairs.lr))
    audit = audit_ops(data)
    assert [op.name for op in audit.ops[-2:]] == ["CONV_2D", "DEPTH_TO_SPACE"] and audit.problems == []
    from ai_edge_litert.interpreter import Interpreter

    details = {d["name"]: d["quantization"] for d in Interpreter(model_content=data).get_tensor_details()}
    [conv_out] = [q for name, q in details.items() if "quant_up/BiasAdd" in name and q[0] > 0]
    assert conv_out == pytest.approx((1.0, -128))


def test_mse_ranges_set_the_searched_range_of_each_tensors_histogram(pairs, monkeypatch):
    from tfsr.quantization import ranges
    from tfsr.quantization.qat import mse_ranges

    qmodel = configs.quantize_model(tiny_sr(2))
    calibrate_ranges(qmodel, pairs.lr, passes=2)
    searched = []

    def a_third_of_the_extremes(hist, lo, hi):  # stands in for the search: what it returns must become the range
        searched.append((int(hist.sum()), lo, hi))
        return lo / 3, hi / 3

    monkeypatch.setattr(ranges, "mse_range", a_third_of_the_extremes)
    assert mse_ranges(qmodel, pairs.lr) == len(searched) > 0
    values = pairs.lr.shape[0] * pairs.lr.shape[1] * pairs.lr.shape[2]
    assert all(count % values == 0 and lo <= 0.0 < hi for count, lo, hi in searched)  # every value of the tensor
    set_maxima = [float(v.numpy()) for v in range_variables(qmodel) if v.name.endswith("_max:0")]
    assert all(any(m == pytest.approx(hi / 3) for m in set_maxima) for _, _, hi in searched)


def test_mse_ranges_replace_moving_averages_and_stay_while_fine_tuning(pairs):
    from tfsr.quantization.qat import mse_ranges

    model = tiny_sr(2)
    qmodel = configs.quantize_model(model)
    calibrate_ranges(qmodel, pairs.lr, passes=4)
    data = convert(qmodel, ConvertOptions("int8-qat", "int8"), list(pairs.lr))
    ema = {v.name: float(v.numpy()) for v in range_variables(qmodel)}
    image = pairs.lr[0].astype(np.uint8)
    reference = model(image[None].astype(np.float32))[0]
    ema_psnr = psnr(TFLitePredictor(data, "ema")(image), reference)
    assert mse_ranges(qmodel, pairs.lr) == len(ema) // 2 - 1  # all but the input's
    mse = {v.name: float(v.numpy()) for v in range_variables(qmodel)}
    input_range = [n for n in mse if n.startswith("quantize_layer")]
    assert input_range and all(mse[n] == ema[n] for n in input_range)
    assert any(mse[n] != pytest.approx(ema[n], rel=0.02) for n in mse if n not in input_range)
    data = convert(qmodel, ConvertOptions("int8-qat", "int8"), list(pairs.lr))
    assert psnr(TFLitePredictor(data, "mse")(image), reference) > ema_psnr
    fine_tune(qmodel, pairs, steps=3, batch=4, log=lambda m: None, freeze_ranges=True)
    assert {v.name: float(v.numpy()) for v in range_variables(qmodel)} == mse
    fine_tune(qmodel, pairs, steps=3, batch=4, log=lambda m: None)
    assert {v.name: float(v.numpy()) for v in range_variables(qmodel)} != mse  # tfmot's moving averages
