"""Training: a tiny end-to-end run whose folder `evaluate` accepts, resume, NaN stop, mixed precision and XLA."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tfsr.errors import TfsrError
from tfsr.imresize import imresize

SCALE = 2


def quiet(msg):
    pass


@pytest.fixture
def train_dir(tmp_path, rng):
    """Three smooth 48x48 HR images in a plain folder (LR made by bicubic, cached under tmp_path)."""
    folder = tmp_path / "train"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(imresize(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8), 4)).save(folder / f"t{i}.png")
    return folder


def tiny_config(train_dir, out, val, **overrides):
    from pipelines.train import TrainConfig

    settings = dict(model="slwsr16", scale=SCALE, data=str(train_dir), steps=4, steps_per_epoch=2, batch_size=2,
                    patch_size=12, out=str(out), val_data=str(val), lr_cache=str(Path(out).parent / "lrcache"),
                    crops_per_image=4, verbose=0)  # fmt: skip
    settings.update(overrides)
    return TrainConfig(**settings)


def _csv_rows(run):
    with open(run / "logs" / "train.csv") as f:
        return list(csv.DictReader(f))


def test_tiny_run_writes_a_folder_evaluate_scores_identically_and_resumes(tmp_path, train_dir, tiny_set):
    from pipelines.evaluate import EvaluateConfig
    from pipelines.evaluate import run as evaluate
    from pipelines.train import run

    out = tmp_path / "run"
    result = run(tiny_config(train_dir, out, tiny_set), log=quiet)
    assert sorted(p.name for p in out.iterdir()) == ["backup", "config.json", "logs", "metrics.json", "model.keras"]
    config = json.loads((out / "config.json").read_text())
    assert config["resolved"] == {
        "batch_size": 2, "lr_patch": 12, "hr_patch": 24, "learning_rate": 1e-4, "loss": "l1", "steps_per_epoch": 2,
        "epochs": 2, "total_steps": 4, "halve_every": 200_000, "adam_betas": [0.9, 0.999], "adam_epsilon": 1e-8,
        "augment": "flip+transpose",
    }  # fmt: skip  (s-LWSR's recipe: L1, Adam 1e-4, halved every 200 epochs of 1000 iterations)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == result.metrics
    assert metrics["steps"] == 4 and metrics["finished"] and metrics["epochs_this_run"] == 2
    rows = _csv_rows(out)
    assert [r["epoch"] for r in rows] == ["0", "1"]
    best = max(rows, key=lambda r: float(r["val_psnr_y"]))
    assert metrics["best"]["psnr_y"] == pytest.approx(float(best["val_psnr_y"]), abs=1e-9)

    # The run folder is what `cli.py evaluate` takes; its score is the best epoch's validation score exactly.
    scores = evaluate(EvaluateConfig([str(out)], [str(tiny_set)], scale=SCALE), log=quiet).scores["run"]["Tiny"]
    assert scores.psnr_y == pytest.approx(metrics["best"]["psnr_y"], abs=1e-6)
    assert scores.ssim_y == pytest.approx(metrics["best"]["ssim_y"], abs=1e-6)

    # Resuming with a larger budget continues from the backup: 2 more steps, one more epoch.
    again = run(tiny_config(train_dir, out, tiny_set, steps=6), log=quiet)
    assert again.metrics["resumed_from_step"] == 4
    assert again.metrics["steps"] == 6 and again.metrics["epochs_this_run"] == 1
    assert [r["epoch"] for r in _csv_rows(out)] == ["0", "1", "2"]
    assert again.metrics["best"]["psnr_y"] >= metrics["best"]["psnr_y"]
    with pytest.raises(TfsrError, match="trained with --steps-per-epoch 2, not 3: resume with the same value"):
        run(tiny_config(train_dir, out, tiny_set, steps=9, steps_per_epoch=3), log=quiet)
    with pytest.raises(TfsrError, match="trained with --batch-size 2, not 4: resume with the same value"):
        run(tiny_config(train_dir, out, tiny_set, steps=9, batch_size=4), log=quiet)


def test_the_best_model_is_replaced_only_by_a_better_finite_one(tmp_path):
    from tfsr.keras import keras
    from tfsr.training.callbacks import BestModelSaver

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    kept = []
    saver = BestModelSaver(tmp_path / "model.keras", lambda: model, best=25.0, on_best=lambda e, logs: kept.append(e))
    for epoch, psnr in enumerate([24.0, 26.0, 25.5, 26.0, float("nan"), 27.0]):  # 25.0: the best before a resume
        saver.on_epoch_end(epoch, {"loss": 0.1 if psnr == psnr else float("nan"), "val_psnr_y": psnr})
    assert kept == [1, 5] and saver.best == 27.0 and (tmp_path / "model.keras").is_file()


def test_progress_line_gives_the_whole_runs_eta_within_the_time_budget(monkeypatch):
    from types import SimpleNamespace

    from tfsr.training import callbacks

    now, step = SimpleNamespace(value=0.0), SimpleNamespace(value=0)
    monkeypatch.setattr(callbacks.time, "monotonic", lambda: now.value)
    lines = []
    model = SimpleNamespace(optimizer=SimpleNamespace(iterations=SimpleNamespace(numpy=lambda: step.value)))
    for budget in (None, 30.0):
        progress = callbacks.Progress(100, log=lines.append, time_budget=budget)
        progress.model = model
        now.value, step.value = 100.0, 0
        progress.on_train_begin()
        now.value, step.value = 110.0, 20  # 20 steps in 10 s: 80 more take 40 s, or what is left of a 30 s budget
        progress.on_epoch_end(0, {"loss": 0.25, "val_psnr_y": 30.123, "val_ssim_y": 0.9})
    assert lines == ["epoch 1: step 20/100, loss 0.25000, val 30.12 dB / 0.9000, 2.00 steps/s, ETA 0:00:40",
                     "epoch 1: step 20/100, loss 0.25000, val 30.12 dB / 0.9000, 2.00 steps/s, ETA 0:00:20"]  # fmt: skip


def test_learning_rate_halves_at_each_multiple_of_the_recipes_period():
    from pipelines.train import TrainConfig, _compile_model
    from tfsr.keras import keras
    from tfsr.registry import get_spec
    from tfsr.training.distribute import make_strategy

    settings = {"learning_rate": 1e-4, "halve_every": 3, "adam_betas": [0.9, 0.999], "adam_epsilon": 1e-8, "loss": "l1"}
    model, _ = _compile_model(TrainConfig(model="slwsr16", scale=SCALE), get_spec("slwsr16"), settings,
                              make_strategy("default"))  # fmt: skip
    schedule = keras.optimizers.schedules.deserialize(model.optimizer.get_config()["learning_rate"])
    rates = [float(schedule(step)) for step in (0, 2, 3, 5, 6)]
    assert rates == pytest.approx([1e-4, 1e-4, 5e-5, 5e-5, 2.5e-5])  # s-LWSR: halved every 200,000 steps


def test_losses_read_pixels_on_a_unit_scale():
    from tfsr.training.losses import charbonnier, get_loss, l1, l1_ssim, mse

    hr = np.full((1, 16, 16, 3), 100.0, np.float32)
    sr = hr + 25.5  # 0.1 on the unit scale
    assert float(l1(hr, sr)[0]) == pytest.approx(0.1)
    assert float(mse(hr, sr)[0]) == pytest.approx(0.01)
    assert float(charbonnier(hr, sr)[0]) == pytest.approx(np.sqrt(0.1**2 + 1e-3**2))
    assert float(charbonnier(hr, hr)[0]) == pytest.approx(1e-3)  # epsilon 1e-3 (LapSRN's)
    texture = hr + np.random.default_rng(0).normal(0, 20, hr.shape).astype(np.float32)
    assert float(l1_ssim(texture, texture)[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(l1_ssim(texture, sr)[0]) > float(l1(texture, sr)[0]) + 0.5  # the SSIM term of a flat guess
    with pytest.raises(TfsrError, match="unknown loss 'l2'; choose one of l1, mse, l1\\+ssim, charbonnier, mse"):
        get_loss("l2")


@pytest.fixture
def untrained_vgg16(monkeypatch):
    """LiteSRNet's perceptual loss on an untrained VGG16: its ImageNet weights are a download away."""
    from tfsr.training import losses

    monkeypatch.setattr(losses, "VGG16_WEIGHTS", None)


def test_litesrnet_loss_adds_a_hundredth_of_vgg16_feature_distances(untrained_vgg16):
    from tfsr.training.losses import MsePlusVgg16, get_loss, mse

    loss = get_loss("mse+0.01vgg16")
    assert isinstance(loss, MsePlusVgg16) and loss.features.trainable_weights == []  # VGG16 stays as it is
    hr = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    shapes = [tuple(f.shape[1:]) for f in loss.features(hr / 255.0)]
    assert shapes == [(32, 32, 64), (16, 16, 128), (8, 8, 256), (4, 4, 512)]
    # torchvision's features[:4], [4:9], [9:16], [16:23] end at relu1_2, relu2_2, relu3_3, relu4_3: Keras fuses each
    # ReLU into its conv
    assert loss.features.output_names == ["block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3"]
    sr = hr + 10.0
    assert np.all(loss(hr, hr).numpy() == 0.0)
    pixel, total = mse(hr, sr).numpy(), loss(hr, sr).numpy()
    loss.weight = 1.0  # the same network: the perceptual term alone
    perceptual = loss(hr, sr).numpy() - pixel
    assert np.all(perceptual > 0)
    np.testing.assert_allclose((total - pixel) / perceptual, 0.01, rtol=0.02)


def test_litesrnet_loss_fetches_keras_own_vgg16_file(monkeypatch):
    import tf_keras.src.applications.vgg16 as keras_vgg16

    from tfsr.keras import keras
    from tfsr.training.losses import MsePlusVgg16

    fetched = []
    monkeypatch.setattr(keras.utils, "get_file", lambda *args, **kwargs: fetched.append((args, kwargs)) or "/cache/vgg16.h5")
    assert MsePlusVgg16.fetch() == "/cache/vgg16.h5"
    (name, url), options = fetched[0]
    assert url == keras_vgg16.WEIGHTS_PATH_NO_TOP and name == url.rsplit("/", 1)[1]
    assert options == {"cache_subdir": "models", "file_hash": "6d6bbae143d832006294945121d1f1fc"}


def test_litesrnet_loss_without_its_weights_is_one_line_naming_the_way_out(monkeypatch, tmp_path, train_dir, tiny_set):
    from pipelines.train import run
    from tfsr.keras import keras
    from tfsr.training.losses import get_loss

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    message = (r"needs VGG16's ImageNet weights, .* \(URL fetch failure .*\); connect to the internet once, "
               r"or pass --loss mse$")  # fmt: skip
    with pytest.raises(TfsrError, match=message):
        get_loss("mse+0.01vgg16")
    with pytest.raises(TfsrError, match=message):  # before any folder or network is made
        run(tiny_config(train_dir, tmp_path / "run", tiny_set, model="litesrnet", steps=2), log=quiet)
    assert not (tmp_path / "run").exists()


def test_every_loss_is_a_cli_choice():
    from cli import cli
    from tfsr.training.losses import LOSSES

    loss_option = next(p for p in cli.commands["train"].params if p.name == "loss")
    assert list(loss_option.type.choices) == list(LOSSES)


def test_litesrnet_trains_with_its_recipes_perceptual_loss(tmp_path, train_dir, tiny_set, untrained_vgg16, monkeypatch):
    from pipelines.train import run
    from tfsr.keras import keras

    built, vgg16 = [], keras.applications.VGG16
    monkeypatch.setattr(keras.applications, "VGG16", lambda **kwargs: built.append(kwargs) or vgg16(**kwargs))
    result = run(tiny_config(train_dir, tmp_path / "run", tiny_set, model="litesrnet", steps=2), log=quiet)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["resolved"]["loss"] == "mse+0.01vgg16"
    assert result.metrics["steps"] == 2 and np.isfinite(result.metrics["last"]["loss"])
    assert (tmp_path / "run" / "model.keras").is_file()
    assert built == [{"include_top": False, "weights": None}]  # once, inside the strategy's scope


@pytest.mark.fault
def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_model(tmp_path, train_dir, tiny_set, monkeypatch):
    from pipelines.train import run
    from tfsr.keras import tf
    from tfsr.predictors import load_keras_model
    from tfsr.training import losses
    from tfsr.training.callbacks import backed_up_step

    calls = tf.Variable(0, dtype=tf.int64)

    def l1_then_nan(y_true, y_pred):  # finite for 4 steps, then NaN, as a diverging run
        calls.assign_add(1)
        return losses.l1(y_true, y_pred) + tf.where(calls > 4, np.nan, 0.0)

    monkeypatch.setitem(losses.LOSSES, "l1", l1_then_nan)
    out = tmp_path / "run"
    with pytest.raises(TfsrError, match=rf"NaN or infinite at step 5; kept {out / 'model.keras'} from step 4"):
        run(tiny_config(train_dir, out, tiny_set, steps=8), log=quiet)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stopped_on_non_finite_loss_at_step"] == 5 and not metrics["finished"]
    assert metrics["best"]["step"] == 4
    model = load_keras_model(out / "model.keras")
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert backed_up_step(out / "backup") == 4  # the backup holds the last finite state, not the diverged one


@pytest.mark.slow
def test_mixed_precision_with_xla_builds_and_trains_a_step(tmp_path, train_dir):
    from pipelines.train import run
    from tfsr.keras import keras
    from tfsr.predictors import load_keras_model

    out = tmp_path / "mixed_xla"
    result = run(tiny_config(train_dir, out, "none", steps=1, steps_per_epoch=1, mixed_precision=True, xla=True), log=quiet)
    assert result.metrics["steps"] == 1 and np.isfinite(result.metrics["last"]["loss"])
    model = load_keras_model(out / "model.keras")
    assert model.layers[-1].compute_dtype == "float16" and model.layers[-1].variable_dtype == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"  # the policy does not leak


def test_multi_output_model_trains_every_output_and_saves_the_final_one(tmp_path, train_dir, tiny_set):
    from pipelines.train import run
    from tfsr.predictors import load_keras_model
    from tfsr.registry import get_spec

    assert get_spec("hfdn").recipe.loss == "l1+ssim" and "training_outputs" in get_spec("hfdn").options()
    out = tmp_path / "hfdn"
    result = run(tiny_config(train_dir, out, tiny_set, model="hfdn", steps=1, steps_per_epoch=1), log=quiet)
    assert json.loads((out / "config.json").read_text())["resolved"]["loss"] == "l1+ssim"
    losses = {k for k in result.metrics["last"] if k.endswith("_loss")}
    assert len(losses) == 4  # one L1 + SSIM term per SR output (final, shallow, middle, deep)
    model = load_keras_model(out / "model.keras")
    assert len(model.outputs) == 1 and model.output_shape == (None, None, None, 3)
    assert result.metrics["best"]["psnr_y"] > 0
