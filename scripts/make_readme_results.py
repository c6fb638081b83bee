"""Regenerate the README's results tables from the project's own commands, so it never states a number the code
did not produce.

Each table sits in README.md between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->``, with the commands
that produced it. Parts whose inputs are missing (``../shared`` data or official weights) are skipped with a
note and their blocks keep what they held. Intermediate files (imported models, TFLite files, JSON) go to --work.

    python scripts/make_readme_results.py                      # every part whose inputs exist
    python scripts/make_readme_results.py --parts zoo,bicubic  # some parts only
    python scripts/make_readme_results.py --dry-run            # print the blocks, leave README.md alone
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data"
WEIGHTS = SHARED / "weights"
README = ROOT / "README.md"
SETS = ("Set5", "Set14")
# (registry name, official checkpoint, how to call it in the tables)
OFFICIAL = (
    ("erfdn", WEIGHTS / "erfdn_x4_official.npz", "E-RFDN x4 (official AIM 2020 weights)"),
    ("slwsr32", WEIGHTS / "slwsr32_x4_epoch1_official.npz", "s-LWSR32 x4 (official epoch-1 checkpoint)"),
)
# imported file stem -> its entry in ../shared/weights/reference_scores.json (the official PyTorch model's scores)
OFFICIAL_REFERENCE = {"erfdn_x4": "erfdn_x4_official", "slwsr32_x4": "slwsr32_x4_epoch1_official"}
PARTS = ("zoo", "bicubic", "official", "int8", "latency")


def relative(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(Path("..") / path.relative_to(ROOT.parent)) if ROOT.parent in path.parents else str(path)


def cli(*args) -> str:
    """Run ``python cli.py ARGS`` in the project root; its stdout, or exit with its error."""
    words = [relative(a) if isinstance(a, Path) else str(a) for a in args]
    print(f"$ python cli.py {' '.join(words)}", file=sys.stderr, flush=True)
    started = time.time()
    done = subprocess.run([sys.executable, "cli.py", *words], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"python cli.py {' '.join(words)} failed:\n{done.stderr.strip()}")
    print(f"  ({time.time() - started:.0f} s)", file=sys.stderr)
    return done.stdout


def notes_apart(text: str) -> str:
    """A blank line between a Markdown table and the note lines after it (else they render as table rows)."""
    lines = text.strip().splitlines()
    out = []
    for i, line in enumerate(lines):
        if i and lines[i - 1].startswith("|") and not line.startswith("|"):
            out.append("")
        out.append(line)
    return "\n".join(out)


def command_note(*commands: str) -> str:
    return "Produced by:\n\n```bash\n" + "\n".join(commands) + "\n```"


def part_zoo(work: Path) -> str:
    table = notes_apart(cli("models", "--scale", 4, "--markdown"))
    return f"{table}\n\n{command_note('python cli.py models --scale 4 --markdown')}"


def part_bicubic(work: Path) -> str:
    scores = {}
    for scale in (2, 3, 4):
        out = work / f"bicubic_x{scale}.json"
        cli("evaluate", "bicubic", *[a for s in SETS for a in ("--data", s)], "--data-root", DATA, "--scale", scale,
            "--json", out)  # fmt: skip
        scores[scale] = json.loads(out.read_text())["results"]["bicubic"]
    rows = ["| set | x2 | x3 | x4 |", "|---|---|---|---|"]
    for name in SETS:
        rows.append(f"| {name} | " + " | ".join(f"{scores[s][name]['psnr_y']:.2f} / {scores[s][name]['ssim_y']:.4f}"
                                                for s in (2, 3, 4)) + " |")  # fmt: skip
    return "\n".join(rows) + "\n\n" + command_note(
        f"python cli.py evaluate bicubic --data Set5 --data Set14 --data-root {relative(DATA)} --scale S --json FILE"
    )


def imported_models(work: Path) -> list[tuple[str, Path, str]]:
    """The official checkpoints that exist, imported once into .keras files under ``work``."""
    models = []
    for name, checkpoint, title in OFFICIAL:
        if not checkpoint.is_file():
            print(f"note: {relative(checkpoint)} is absent: {title} left out", file=sys.stderr)
            continue
        out = work / f"{name}_x4.keras"
        if not out.is_file():
            cli("import-weights", name, checkpoint, "--scale", 4, "--out", out)
        models.append((name, out, title))
    return models


def part_official(work: Path) -> str:
    models = imported_models(work)
    out = work / "official_x4.json"
    cli("evaluate", "bicubic", *[m for _, m, _ in models], *[a for s in SETS for a in ("--data", s)],
        "--data-root", DATA, "--scale", 4, "--json", out)  # fmt: skip
    results = json.loads(out.read_text())["results"]
    reference = json.loads((WEIGHTS / "reference_scores.json").read_text())
    rows = ["| model | Set5 x4 | Set14 x4 | official PyTorch, Set5 x4 |", "|---|---|---|---|"]
    for label, title in [("bicubic", "bicubic")] + [(p.stem, t) for _, p, t in models]:
        ref = reference.get(OFFICIAL_REFERENCE.get(label, ""), {}).get("Set5_x4")
        cells = [f"{results[label][s]['psnr_y']:.2f} / {results[label][s]['ssim_y']:.4f}" for s in SETS]
        rows.append(f"| {title} | {' | '.join(cells)} | "
                    + (f"{ref['mean_psnr_y']:.2f}" + (f" / {ref['mean_ssim_y']:.4f}" if "mean_ssim_y" in ref else "")
                       if ref else "-") + " |")  # fmt: skip
    commands = [f"python cli.py import-weights {n} {relative(c)} --out {relative(p)}" for (n, p, _), (_, c, _) in
                zip(models, [o for o in OFFICIAL if o[1].is_file()])]  # fmt: skip
    commands.append(f"python cli.py evaluate bicubic {' '.join(relative(p) for _, p, _ in models)} "
                    f"--data Set5 --data Set14 --data-root {relative(DATA)} --scale 4")  # fmt: skip
    return "\n".join(rows) + "\n\n" + command_note(*commands)


def part_int8(work: Path) -> str:
    rows = ["| model | float Keras Set5 | int8 TFLite Set5 | drop | float Keras Set14 | int8 TFLite Set14 | drop | int8 size |",
            "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    commands = []
    for _, keras_file, title in imported_models(work):
        out = work / f"{keras_file.stem}_int8.tflite"
        cli("quantize", keras_file, "--out", out)
        commands.append(f"python cli.py quantize {relative(keras_file)} --out {relative(out)}")
        summary = json.loads(out.with_suffix(".json").read_text())
        scores = summary["scores"]
        cells = []
        for s in SETS:
            cells += [f"{scores['float keras'][s]['psnr_y']:.2f}", f"{scores['int8 tflite'][s]['psnr_y']:.2f}",
                      f"{summary['drop_db'][s]:.2f} dB"]  # fmt: skip
        rows.append(f"| {title} | {' | '.join(cells)} | {summary['sizes']['int8 tflite']['raw'] / 1024:.0f} KiB |")
    return "\n".join(rows) + "\n\n" + command_note(*commands)


def part_latency(work: Path) -> str:
    models = [p for _, p, _ in imported_models(work)] + ["slwsr16", "litesrnet"]
    args = ["benchmark", *models, "--input-size", "320x180", "--data", "Set5", "--data-root", DATA, "--json",
            work / "benchmark.json", "--plot", work / "pareto.png", "--markdown"]  # fmt: skip
    table = notes_apart(cli(*args))
    command = "python cli.py " + " ".join(relative(a) if isinstance(a, Path) else str(a) for a in args)
    return f"{table}\n\n{command_note(command)}"


def replace_block(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- results:{name} -->\n).*?(\n<!-- /results:{name} -->)", re.S)
    if not pattern.search(text):
        sys.exit(f"README.md has no <!-- results:{name} --> ... <!-- /results:{name} --> block")
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, among {', '.join(PARTS)}")
    parser.add_argument("--work", type=Path, default=ROOT / "saved_models" / "readme_results")
    parser.add_argument("--dry-run", action="store_true", help="print the blocks instead of writing README.md")
    args = parser.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {', '.join(unknown)}; choose among {', '.join(PARTS)}")
    args.work.mkdir(parents=True, exist_ok=True)
    text = README.read_text()
    for part in parts:
        if part != "zoo" and not DATA.is_dir():
            print(f"note: {relative(DATA)} is absent: part {part} skipped", file=sys.stderr)
            continue
        body = globals()[f"part_{part}"](args.work)
        if args.dry_run:
            print(f"<!-- results:{part} -->\n{body}\n<!-- /results:{part} -->\n")
        else:
            text = replace_block(text, part, body)
            README.write_text(text)  # after each part: a later failure keeps the finished ones
    print("done", file=sys.stderr)


if __name__ == "__main__":
    main()
