"""Training benchmarks (measured, not asserted): input pipeline vs training step, tfsr vs PyTorch step time,
and quality after a fixed wall-clock budget.

    python scripts/bench_training.py pipeline            # patches/s of the input pipeline vs the training step
    python scripts/bench_training.py step                # slwsr16 batch 16 LR 48: tfsr vs plain PyTorch (if installed)
    python scripts/bench_training.py quality --budget 3600   # slwsr16 x4 on train291 for 1 hour, Set5/Set14 vs bicubic

Each part prints a table and writes its numbers to --json (default bench_training_<part>.json).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.report import format_table, write_json  # noqa: E402

SHARED_DATA = ROOT.parent / "shared" / "data"


def _train_step_time(model, batch: int, lr_patch: int, scale: int, steps: int) -> float:
    """Seconds per compiled training step (L1, Adam) on random patches, after two warm-up steps."""
    import numpy as np

    from tfsr.keras import keras, tf
    from tfsr.training.losses import l1

    rng = np.random.default_rng(0)
    lr = tf.constant(rng.uniform(0, 255, (batch, lr_patch, lr_patch, 3)).astype("float32"))
    hr = tf.constant(rng.uniform(0, 255, (batch, lr_patch * scale, lr_patch * scale, 3)).astype("float32"))
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=l1)
    for _ in range(2):
        model.train_on_batch(lr, hr)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(lr, hr)
    return (time.perf_counter() - start) / steps


def _torch_slwsr(n_feats: int = 16, scale: int = 4):
    """Plain PyTorch s-LWSR (act_mode "all", trainable mean-shift convs): the network of tfsr.models.slwsr."""
    import torch
    from torch import nn

    def conv(cin, cout, k, bias=True):
        return nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(conv(n_feats, n_feats, 3), nn.ReLU(), conv(n_feats, n_feats, 3))

        def forward(self, x):
            return x + self.body(x)

    class SLWSR(nn.Module):
        def __init__(self):
            super().__init__()
            self.sub_mean, self.add_mean = conv(3, 3, 1), conv(3, 3, 1)
            self.head = conv(3, n_feats, 3)
            self.first = nn.ModuleList(nn.ModuleList(Block() for _ in range(3)) for _ in range(4))
            self.feat6 = nn.ModuleList(Block() for _ in range(2))
            self.pool = conv(6 * n_feats, n_feats, 1, bias=False)
            self.fuse = nn.ModuleList(conv(2 * n_feats, n_feats, 1) for _ in range(4))
            self.second = nn.ModuleList(nn.ModuleList(Block() for _ in range(3)) for _ in range(4))
            tail = []
            for _ in range(scale // 2):
                tail += [conv(n_feats, 4 * n_feats, 3), nn.PixelShuffle(2)]
            self.tail = nn.Sequential(*tail, conv(n_feats, 3, 3))

        def forward(self, x):
            x1 = self.head(self.sub_mean(x))
            t, ends, pool = x1, [], [x1]
            for level, (b1, b2, b3) in enumerate(self.first):
                first = b1(t)
                last = b3(b2(first))
                ends.append(last)
                if level > 0:
                    pool.append(first)
                t = first + last
            a6 = self.feat6[0](t)
            b6 = self.feat6[1](a6)
            p = self.pool(torch.cat(pool + [a6, b6], 1))
            o = b6
            for fuse, (b1, b2, b3), skip in zip(self.fuse, self.second, reversed(ends)):
                o = b3(b2(b1(fuse(torch.cat([o, 0.5 * (skip + p)], 1)))))
            return self.add_mean(self.tail(o + x1))

    return SLWSR()


def _torch_step_time(steps: int, batch: int = 16, lr_patch: int = 48, scale: int = 4) -> float:
    import torch

    model = _torch_slwsr(16, scale)
    optimizer = torch.optim.Adam(model.parameters(), 1e-4)
    lr = torch.rand(batch, 3, lr_patch, lr_patch) * 255
    hr = torch.rand(batch, 3, lr_patch * scale, lr_patch * scale) * 255

    def train_step():
        optimizer.zero_grad()
        loss = torch.nn.functional.l1_loss(model(lr) / 255, hr / 255)
        loss.backward()
        optimizer.step()

    for _ in range(2):
        train_step()
    start = time.perf_counter()
    for _ in range(steps):
        train_step()
    return (time.perf_counter() - start) / steps


@click.group()
def cli():
    """Training benchmarks."""


@cli.command()
@click.option("--data", default=str(SHARED_DATA / "train291"), show_default=True)
@click.option("--batches", default=300, show_default=True, help="Batches timed after the first pass over the images.")
@click.option("--steps", default=10, show_default=True, help="Training steps timed.")
@click.option("--json", "json_path", default="bench_training_pipeline.json", show_default=True)
def pipeline(data, batches, steps, json_path):
    """Input-pipeline patches/s vs training-step patches/s (slwsr16 x4, batch 16, LR patch 48)."""
    from tfsr.data.patches import PatchConfig, decoded_pairs, patch_dataset
    from tfsr.data.sources import SkipLog, find_source
    from tfsr.registry import build_model

    batch, lr_patch, scale = 16, 48, 4
    source = find_source(data, scale)
    skips = SkipLog(warn=lambda msg: None)
    dataset = patch_dataset(decoded_pairs(source, lr_patch, skips), scale, PatchConfig(lr_patch, batch))
    batches_iter = iter(dataset)
    start = time.perf_counter()
    first_pass = max(1, len(source.images) * PatchConfig().crops_per_image // batch)  # fills the decode cache
    for _ in range(first_pass):
        next(batches_iter)
    first_pass_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(batches):
        next(batches_iter)
    pipeline_rate = batches * batch / (time.perf_counter() - start)
    step_s = _train_step_time(build_model("slwsr16", scale), batch, lr_patch, scale, steps)
    step_rate = batch / step_s
    result = {
        "data": source.describe(),
        "skipped": len(skips.skipped),
        "first_pass_batches": first_pass,
        "first_pass_s": round(first_pass_s, 2),
        "pipeline_patches_per_s": round(pipeline_rate, 1),
        "train_step_s": round(step_s, 4),
        "train_patches_per_s": round(step_rate, 1),
        "ratio": round(pipeline_rate / step_rate, 2),
    }
    click.echo(format_table(["measure", "value"], list(result.items())))
    write_json(json_path, result)


@cli.command()
@click.option("--steps", default=10, show_default=True)
@click.option("--json", "json_path", default="bench_training_step.json", show_default=True)
def step(steps, json_path):
    """Training-step time of slwsr16 x4 at batch 16, LR 48: tfsr vs a plain PyTorch port (optional)."""
    from tfsr.registry import build_model

    tfsr_s = _train_step_time(build_model("slwsr16", 4), 16, 48, 4, steps)
    result = {"tfsr_step_s": round(tfsr_s, 4)}
    try:
        import torch  # noqa: F401
    except ImportError:
        click.echo("PyTorch is not installed: only the tfsr step was timed (pip install torch to compare)")
    else:
        torch_s = _torch_step_time(steps)
        result.update(torch_step_s=round(torch_s, 4), tfsr_over_torch=round(tfsr_s / torch_s, 2))
    click.echo(format_table(["measure", "value"], list(result.items())))
    write_json(json_path, result)


@cli.command()
@click.option("--budget", default=3600.0, show_default=True, help="Wall-clock seconds of training.")
@click.option("--data", default=str(SHARED_DATA / "train291"), show_default=True)
@click.option("--out", default="saved_models/bench_slwsr16_x4", show_default=True)
@click.option("--steps-per-epoch", default=200, show_default=True, help="Steps between validations on Set5.")
@click.option("--resume", is_flag=True, help="Continue the run in --out (its backup) for another budget.")
@click.option("--json", "json_path", default="bench_training_quality.json", show_default=True)
def quality(budget, data, out, steps_per_epoch, resume, json_path):
    """slwsr16 x4 trained on train291 for a wall-clock budget; Set5/Set14 Y-PSNR vs bicubic."""
    from pipelines.evaluate import EvaluateConfig
    from pipelines.evaluate import run as evaluate
    from pipelines.train import TrainConfig
    from pipelines.train import run as train

    from tfsr.data.sources import BadTrainingImage, find_source, load_pair

    source = find_source(data, 4)
    for image in source.images:  # make the cached bicubic LR files first: a one-time cost outside the budget
        try:
            load_pair(image, source, 48)
        except BadTrainingImage:
            pass
    config = TrainConfig("slwsr16", 4, data=data, out=out, resume=resume, steps_per_epoch=steps_per_epoch,
                         val_data=str(SHARED_DATA / "Set5"), time_budget=budget, verbose=2)  # fmt: skip
    trained = train(config)
    sets = [str(SHARED_DATA / "Set5"), str(SHARED_DATA / "Set14")]
    scores = evaluate(EvaluateConfig(["bicubic", out], sets, scale=4))
    click.echo(scores.table())
    result = {"budget_s": budget, "steps": trained.metrics["steps"], "resumed_from_step": trained.metrics["resumed_from_step"],
              "seconds": trained.metrics["seconds_this_run"],
              "best": trained.metrics["best"], "scores": scores.to_json()}  # fmt: skip
    write_json(json_path, result)
    click.echo(json.dumps({k: result[k] for k in ("budget_s", "steps", "resumed_from_step", "seconds")}))


if __name__ == "__main__":
    cli()
