"""tfsr command line: each command maps its options to a config dataclass and runs a pipeline."""
from __future__ import annotations

import sys

import click

from tfsr.errors import TfsrError

SCALE = click.IntRange(2, 4)


class TfsrGroup(click.Group):
    """Turns TfsrError (a user mistake) into one line on stderr and exit code 2, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except TfsrError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=TfsrGroup)
def cli():
    """tfsr: lightweight super-resolution, from training to int8 TFLite."""


@cli.command()
@click.option("--scale", type=SCALE, default=4, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--markdown", is_flag=True, help="Print a Markdown table.")
def models(scale, as_json, markdown):
    """List every registered model with its parameters and multiply-adds."""
    from pipelines.models import ModelsConfig, run

    click.echo(run(ModelsConfig(scale=scale, as_json=as_json, markdown=markdown)))


@cli.command()
@click.argument("models", nargs=-1, required=True)
@click.option("--data", "data", multiple=True, required=True, help="Benchmark folder or set name (repeatable).")
@click.option("--data-root", default=None, help="Where set names like Set5 are looked up (default $TFSR_DATA or ./data).")
@click.option("--scale", type=SCALE, default=None, help="Upscaling factor (default: the models').")
@click.option("--grey", "grey_mode", type=click.Choice(["as-is", "rgb"]), default="as-is", show_default=True,
              help="Grey images: score their grey values as-is, or replicate to RGB and score Y.")
@click.option("--rounded-y", is_flag=True, help="Round Y to integers, as MATLAB rgb2ycbcr does on uint8 images.")
@click.option("--json", "json_path", default=None, help="Also write the results (per image too) to this JSON file.")
@click.option("--csv", "csv_path", default=None, help="Also write the results (per image too) to this CSV file.")
@click.option("--markdown", is_flag=True, help="Print a Markdown table.")
@click.option("--self-ensemble", is_flag=True, help="Add a '+' row per model: the mean over 8 flips/rotations.")
@click.option("--save-images", default=None, metavar="DIR", help="Write the SR images and a comparison figure per image.")
@click.option("--tile", type=click.IntRange(min=1), default=None, help="Predict in tiles of N LR pixels (large images).")
@click.option("--overlap", type=click.IntRange(min=0), default=None,
              help="LR pixels of context around each tile [16; less for small fixed-shape models].")
def evaluate(models, data, data_root, scale, grey_mode, rounded_y, json_path, csv_path, markdown, self_ensemble,
             save_images, tile, overlap):
    """Y-PSNR / Y-SSIM of MODELS (bicubic, .keras files, run folders, .tflite files) side by side."""
    from pipelines.evaluate import EvaluateConfig, run

    config = EvaluateConfig(
        list(models), list(data), scale, data_root, grey_mode, rounded_y, json_path, markdown,
        csv_path=csv_path, self_ensemble=self_ensemble, save_images=save_images, tile=tile, overlap=overlap,
    )  # fmt: skip
    click.echo(run(config).table())


@cli.command()
@click.argument("model")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", required=True, help="Folder for the upscaled PNGs (<name>_x<scale>.png).")
@click.option("--scale", type=SCALE, default=None, help="Check the model's factor (needed for bicubic).")
@click.option("--tile", type=click.IntRange(min=1), default=None, help="Tile size in LR pixels (default: 256 for large images).")
@click.option("--overlap", type=click.IntRange(min=0), default=None,
              help="LR pixels of context around each tile [16; less for small fixed-shape models].")
@click.option("--overwrite", is_flag=True, help="Replace outputs that already exist.")
def upscale(model, inputs, out, scale, tile, overlap, overwrite):
    """Upscale image files or folders with MODEL (run folder, .keras, .tflite or bicubic)."""
    from pipelines.upscale import UpscaleConfig, run

    summary = run(UpscaleConfig(model, list(inputs), out, scale, tile, overlap, overwrite))
    click.echo(summary.line())
    if summary.failed:
        sys.exit(1)


@cli.command("import-weights")
@click.argument("model")
@click.argument("checkpoint", type=click.Path())
@click.option("--scale", type=SCALE, default=4, show_default=True)
@click.option("--out", required=True, help="The .keras file to write.")
def import_weights(model, checkpoint, scale, out):
    """Load an authors' PyTorch CHECKPOINT (.pth/.pt, or its tensors as .npz) into MODEL; write a .keras."""
    from pipelines.import_weights import ImportWeightsConfig, run

    click.echo(run(ImportWeightsConfig(model, checkpoint, out, scale)).summary())


@cli.command()
@click.argument("models", nargs=-1, required=True)
@click.option("--input-size", default="320x180", show_default=True, help="LR input WxH (320x180 at x4 = 1280x720 out).")
@click.option("--scale", type=SCALE, default=4, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads (default: the runtimes' own).")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(["keras", "float32", "float16", "int8"]),
              help="Variants of Keras models to time (repeatable; default keras, float32 and int8).")
@click.option("--repeats", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=2, show_default=True)
@click.option("--data", default=None, help="Score trained models on this set (needed by --plot).")
@click.option("--data-root", default=None, help="Where set names like Set5 are looked up.")
@click.option("--json", "json_path", default=None, help="Also write the results to this JSON file.")
@click.option("--plot", "plot_path", default=None, metavar="FILE.png", help="Draw PSNR against params and latency.")
@click.option("--markdown", is_flag=True, help="Print a Markdown table.")
def benchmark(models, input_size, scale, threads, kinds, repeats, warmup, data, data_root, json_path, plot_path,
              markdown):
    """Params, multiply-adds, file size and latency of MODELS (registry names, .keras, run folders, .tflite)."""
    from pipelines.benchmark import DEFAULT_KINDS, BenchmarkConfig, run
    from pipelines.report import parse_size

    config = BenchmarkConfig(list(models), parse_size(input_size, "WxH"), scale, threads, tuple(kinds) or DEFAULT_KINDS, repeats,
                             warmup, data, data_root, json_path, plot_path, markdown)  # fmt: skip
    click.echo(run(config).table())


@cli.command()
@click.argument("model")
@click.option("--scale", type=SCALE, default=4, show_default=True)
@click.option("--data", default="div2k", show_default=True,
              help="Training images: a folder (DIV2K layout, HR/ + LR/, or any images), 'div2k' (downloaded under "
                   "--data-root if absent) or 'tfds:div2k' (tensorflow-datasets).")
@click.option("--data-root", default=None, help="Where div2k and set names live (default $TFSR_DATA or ./data).")
@click.option("--steps", type=int, default=None, help="Total iterations (default: the paper's).")
@click.option("--epochs", type=int, default=None, help="Epochs of --steps-per-epoch iterations (instead of --steps).")
@click.option("--steps-per-epoch", type=int, default=None, help="Iterations between validations [1000].")
@click.option("--batch-size", type=int, default=None, help="Default: the paper's.")
@click.option("--patch-size", type=int, default=None, help="LR patch side (default: the paper's).")
@click.option("--lr", type=float, default=None, help="Initial learning rate (default: the paper's).")
@click.option("--loss", type=click.Choice(["l1", "mse", "l1+ssim", "charbonnier", "mse+0.01vgg16"]), default=None,
              help="Default: the paper's (mse+0.01vgg16: LiteSRNet's, MSE + VGG16 perceptual).")
@click.option("--resume/--fresh", default=True, show_default=True, help="Continue from the run folder's backup, or start over.")
@click.option("--out", default=None, help="Run folder (default saved_models/MODEL_xS).")
@click.option("--mixed-precision", is_flag=True, help="float16 compute with float32 weights (GPUs).")
@click.option("--xla", is_flag=True, help="Compile the training step with XLA.")
@click.option("--strategy", type=click.Choice(["default", "mirrored", "multiworker", "tpu"]), default="default",
              show_default=True, help="tf.distribute strategy (multiworker reads TF_CONFIG).")
@click.option("--val-data", default=None, help="Benchmark folder or set name for validation (default Set5; 'none').")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--crops-per-image", type=int, default=16, show_default=True, help="Patches cut per decoded image visit.")
@click.option("--cache", default="memory", show_default=True, help="Decoded images: 'memory', 'none' or a cache file path.")
@click.option("--backup-every", type=int, default=100, show_default=True, help="Steps between resumable backups.")
def train(model, scale, data, data_root, steps, epochs, steps_per_epoch, batch_size, patch_size, lr, loss, resume,
          out, mixed_precision, xla, strategy, val_data, seed, crops_per_image, cache, backup_every):
    """Train MODEL with its paper's recipe; resumable, validated each epoch, best model kept."""
    from pipelines.train import TrainConfig, run

    config = TrainConfig(model, scale, data, data_root, steps, epochs, steps_per_epoch, batch_size, patch_size, lr,
                         loss, resume, out, mixed_precision, xla, strategy, val_data, seed, crops_per_image, cache,
                         backup_every=backup_every)
    click.echo(run(config).out)


@cli.command()
@click.argument("model", required=False)
@click.option("--method", type=click.Choice(["ptq", "qat", "ptq16x8"]), default="ptq", show_default=True,
              help="Post-training quantization with real calibration patches, quantization-aware fine-tuning, or "
                   "PTQ with int16 activations and int8 weights (16x8: CPU/DSP targets that accept it; int16 I/O, "
                   "or float32 with --io float32).")
@click.option("--prune", type=float, default=None, help="Magnitude-prune to this sparsity (0-1) before quantizing.")
@click.option("--target", type=click.Choice(["generic", "edgetpu", "nnapi"]), default="generic", show_default=True,
              help="Op audit target; edgetpu also fixes the shape and rewrites pixel shuffle and LeakyReLU.")
@click.option("--input-size", default=None, help="Fixed LR input HxW (default: dynamic; 64x64 for edgetpu).")
@click.option("--io", type=click.Choice(["int8", "uint8", "float32"]), default="int8", show_default=True)
@click.option("--calib-data", default=None, help="Image folder for calibration/fine-tuning (default ../shared/data/train291).")
@click.option("--calib-count", type=int, default=None,
              help="Calibration (and fine-tuning) patches; QAT calibrates on the first 200x48x48 LR pixels of "
                   "them.  [default: 200; 1000 with --method qat]")
@click.option("--train-data", default=None,
              help="QAT/pruning: fine-tune on the training pipeline's patch stream of this source (as train's --data: "
                   "div2k, an image folder, tfds:div2k) instead of --calib-count patches of --calib-data.")
@click.option("--calib-seed", type=int, default=0, show_default=True,
              help="Which calibration patches are drawn: another seed, another sample of --calib-data.")
@click.option("--patch", type=int, default=48, show_default=True, help="LR patch size for calibration and fine-tuning.")
@click.option("--epochs", type=int, default=1, show_default=True, help="Fine-tuning epochs (QAT, pruning).")
@click.option("--steps", type=int, default=None,
              help="Fine-tuning steps per epoch (QAT, pruning).  [default: 200; 1000 with --method qat]")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Fine-tuning batch size (QAT, pruning).")
@click.option("--data", multiple=True, help="Benchmark folder (repeatable; default Set5 and Set14 of ../shared/data).")
@click.option("--out", default=None, help="Output .tflite (default: next to the model).")
@click.option("--strict", is_flag=True, help="Fail when the op audit finds float ops, inner (de)quantize or unsupported ops.")
@click.option("--ranges", type=click.Choice(["mse", "mean-batch", "minmax"]), default="mse", show_default=True,
              help="Activation ranges: MSE-optimal from histograms of the calibration patches (QAT: kept while "
                   "fine-tuning), the mean of per-batch min/max (QAT: tfmot's moving averages), or (PTQ only) the "
                   "converter's plain min/max.")
@click.option("--concat-scales", type=click.Choice(["own", "shared"]), default="own", show_default=True,
              help="PTQ: a concatenation input that also feeds other ops keeps its own int8 scale and is "
                   "requantized (QUANTIZE int8->int8) into the concatenation, or all take the concatenation's scale.")
@click.option("--qat-target", type=click.Choice(["float", "hr"]), default="float", show_default=True,
              help="QAT fine-tuning targets: the float model's own outputs (the int8 model learns its float self) "
                   "or the HR patches (also retrains the float weights on the calibration images).")
@click.option("--lr", type=float, default=5e-5, show_default=True,
              help="QAT fine-tuning learning rate (Adam).")
@click.option("--lr-schedule", type=click.Choice(["constant", "cosine"]), default="constant", show_default=True,
              help="QAT fine-tuning: keep --lr, or decay it to 0 along a cosine over --epochs x --steps.")
@click.option("--fold-residuals/--no-fold-residuals", default=True, show_default=True,
              help="PTQ/QAT: fold each identity residual conv(x) + x into its conv (exact), so that equalization "
                   "can scale the block outputs freely.")
@click.option("--split-sums/--no-split-sums", default=False, show_default=True,
              help="PTQ/QAT: split each conv that reads a sum, conv(a + b) = conv(a) + conv(b) (exact), so that each "
                   "term keeps its own int8 scale and equalization gain; one conv more per split.")
@click.option("--equalize", type=float, default=1.0, show_default=True,
              help="Channel-equalization strength (0 = off, 1 = full) folded into the weights before PTQ or QAT: "
                   "the same float model, smaller int8 error.")
@click.option("--weight-rounding", type=click.Choice(["nearest", "reconstruct"]), default="nearest", show_default=True,
              help="int8 weights rounded to the nearest step, or chosen layer by layer on the calibration "
                   "patches so that each conv reproduces its float output from the int8 network's inputs "
                   "(GPTQ rounding and bias correction; minutes). PTQ converts them, QAT starts from them.")
def quantize(model, method, prune, target, input_size, io, calib_data, calib_count, train_data, calib_seed, patch, epochs,
             steps, batch_size, data, out, strict, ranges, concat_scales, qat_target, lr, lr_schedule, fold_residuals, split_sums,
             equalize, weight_rounding):  # fmt: skip
    """int8 TFLite from MODEL (.keras or run folder; default: the newest run in saved_models/), with its report."""
    from pipelines.quantize import QuantizeConfig, run

    config = QuantizeConfig(model, method, prune, target, input_size, io, calib_data, calib_count, patch, epochs, steps,
                            batch=batch_size, out=out, strict=strict, data=list(data), equalize=equalize, ranges=ranges,
                            concat_scales=concat_scales, qat_target=qat_target, learning_rate=lr, lr_schedule=lr_schedule,
                            fold_residuals=fold_residuals, split_sums=split_sums, calib_seed=calib_seed,
                            train_data=train_data, weight_rounding=weight_rounding)  # fmt: skip
    click.echo(run(config).table())


if __name__ == "__main__":
    cli()
