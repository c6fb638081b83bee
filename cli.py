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
@click.option("--markdown", is_flag=True, help="Print a Markdown table.")
def evaluate(models, data, data_root, scale, grey_mode, rounded_y, json_path, markdown):
    """Y-PSNR / Y-SSIM of MODELS (bicubic, .keras files, run folders) side by side."""
    from pipelines.evaluate import EvaluateConfig, run

    config = EvaluateConfig(list(models), list(data), scale, data_root, grey_mode, rounded_y, json_path, markdown)
    click.echo(run(config).table())


if __name__ == "__main__":
    cli()
