"""Pictures people look at instead of tables, drawn with Pillow alone (no plotting library).

- ``comparison_figure``: an HR overview with the crop marked, then the same crop from each method, captioned.
- ``scatter_figure``: labelled points (e.g. PSNR against parameters) with the Pareto front, one panel per x axis.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
MARK = (230, 40, 40)
GRID = (225, 225, 225)
FRONT = (40, 110, 220)


def font(size: int = 14) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, fnt) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=fnt)
    return right - left, bottom - top


def pick_crop(hr: np.ndarray, size: int) -> tuple[int, int, int]:
    """(top, left, side) of the square of ``size`` pixels with the most detail (gradient energy) in ``hr``."""
    side = min(size, hr.shape[0], hr.shape[1])
    grey = hr.astype(np.float64).mean(axis=2) if hr.ndim == 3 else hr.astype(np.float64)
    energy = np.zeros_like(grey)
    energy[:, 1:] += np.abs(np.diff(grey, axis=1))
    energy[1:, :] += np.abs(np.diff(grey, axis=0))
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = integral[side:, side:] - integral[:-side, side:] - integral[side:, :-side] + integral[:-side, :-side]
    top, left = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(top), int(left), side


@dataclass
class Panel:
    image: np.ndarray  # the crop, side x side x 3 uint8
    caption: str


def comparison_figure(hr: np.ndarray, crop: tuple[int, int, int], panels: list[Panel], title: str,
                      panel_px: int = 192) -> Image.Image:
    """The HR image with ``crop`` marked, followed by each panel's crop (nearest-upsampled) and its caption."""
    top, left, side = crop
    title_font, caption_font = font(16), font(13)
    overview = Image.fromarray(hr)
    overview.thumbnail((panel_px, panel_px))
    ratio = overview.width / hr.shape[1]
    ImageDraw.Draw(overview).rectangle(
        [left * ratio, top * ratio, (left + side) * ratio - 1, (top + side) * ratio - 1], outline=MARK, width=2
    )
    tiles = [(overview, "HR (crop marked)")] + [
        (Image.fromarray(p.image).resize((panel_px, panel_px), Image.NEAREST),
         p.caption)
        for p in panels
    ]  # fmt: skip
    pad, caption_h, title_h = 8, 40, 28
    width = pad + len(tiles) * (panel_px + pad)
    figure = Image.new("RGB", (width, title_h + panel_px + caption_h + pad), BACKGROUND)
    draw = ImageDraw.Draw(figure)
    draw.text((pad, 6), title, fill=INK, font=title_font)
    for i, (tile, caption) in enumerate(tiles):
        x = pad + i * (panel_px + pad)
        figure.paste(tile, (x + (panel_px - tile.width) // 2, title_h + (panel_px - tile.height) // 2))
        for j, line in enumerate(caption.split("\n")[:2]):
            draw.text((x, title_h + panel_px + 4 + 17 * j), line, fill=INK, font=caption_font)
    return figure


@dataclass
class Point:
    label: str
    x: float
    y: float


def pareto_front(points: list[Point]) -> list[Point]:
    """Points no other point beats on both axes (smaller x, larger y), in order of x."""
    front, best = [], -math.inf
    for p in sorted(points, key=lambda p: (p.x, -p.y)):
        if p.y > best:
            front.append(p)
            best = p.y
    return front


def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    if hi <= lo:  # a single value: give it a range to sit in
        lo, hi = (lo / 2, hi * 2) if log else (lo - 0.5, hi + 0.5)
    if log:
        decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
        steps = (1, 2, 5) if len(decades) <= 3 else (1,)
        ticks = [m * 10.0**e for e in decades for m in steps]
        return [t for t in ticks if t <= 10.0 ** decades[-1]]
    step = 10 ** math.floor(math.log10(max(hi - lo, 1e-9)))
    if (hi - lo) / step < 3:
        step /= 5
    return [step * k for k in range(math.floor(lo / step), math.ceil(hi / step) + 1)]


def _tick_label(value: float) -> str:
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"


def _draw_panel(draw, box, points: list[Point], x_label: str, y_label: str, log_x: bool) -> None:
    x0, y0, x1, y1 = box
    fnt = font(12)
    xs = [p.x for p in points]
    ys = [p.y for p in points]
    tx = _ticks(min(xs), max(xs), log_x)
    ty = _ticks(min(ys), max(ys), False)
    fx = (lambda v: math.log10(v)) if log_x else (lambda v: v)
    x_lo, x_hi = fx(tx[0]), fx(tx[-1]) if fx(tx[-1]) > fx(tx[0]) else fx(tx[0]) + 1
    y_lo, y_hi = ty[0], ty[-1] if ty[-1] > ty[0] else ty[0] + 1

    def at(x, y):
        return (x0 + (fx(x) - x_lo) / (x_hi - x_lo) * (x1 - x0), y1 - (y - y_lo) / (y_hi - y_lo) * (y1 - y0))

    for t in tx:
        px, _ = at(t, y_lo)
        draw.line([px, y0, px, y1], fill=GRID)
        label = _tick_label(t)
        draw.text((px - _text_size(draw, label, fnt)[0] / 2, y1 + 4), label, fill=INK, font=fnt)
    for t in ty:
        _, py = at(tx[0], t)
        draw.line([x0, py, x1, py], fill=GRID)
        label = f"{t:g}"
        draw.text((x0 - 6 - _text_size(draw, label, fnt)[0], py - 7), label, fill=INK, font=fnt)
    draw.rectangle([x0, y0, x1, y1], outline=INK)
    draw.text(((x0 + x1) / 2 - _text_size(draw, x_label, fnt)[0] / 2, y1 + 22), x_label, fill=INK, font=fnt)
    draw.text((x0, y0 - 18), y_label, fill=INK, font=fnt)
    front = [at(p.x, p.y) for p in pareto_front(points)]
    if len(front) > 1:
        draw.line(front, fill=FRONT, width=2)
    taken: list[tuple[float, float, float, float]] = []  # label boxes drawn so far: move down past them
    for p in sorted(points, key=lambda p: -p.y):
        px, py = at(p.x, p.y)
        draw.ellipse([px - 4, py - 4, px + 4, py + 4], fill=MARK)
        w, h = _text_size(draw, p.label, fnt)
        ty = py - 14
        while any(px + 6 < b[2] and b[0] < px + 6 + w and ty < b[3] and b[1] < ty + h + 2 for b in taken):
            ty += h + 2
        taken.append((px + 6, ty, px + 6 + w, ty + h + 2))
        draw.text((px + 6, ty), p.label, fill=INK, font=fnt)


def scatter_figure(title: str, y_label: str, panels: list[tuple[str, list[Point]]], log_x: bool = True,
                   panel_size: tuple[int, int] = (420, 320)) -> Image.Image:
    """One scatter panel per ``(x_label, points)``, sharing the y axis label; the Pareto front is drawn in blue."""
    pw, ph = panel_size
    margin_left, margin_top, margin_bottom, gap = 60, 56, 48, 90
    width = margin_left + len(panels) * pw + (len(panels) - 1) * gap + 40
    figure = Image.new("RGB", (width, margin_top + ph + margin_bottom), BACKGROUND)
    draw = ImageDraw.Draw(figure)
    draw.text((margin_left, 8), title, fill=INK, font=font(16))
    for i, (x_label, points) in enumerate(panels):
        x0 = margin_left + i * (pw + gap)
        if points:
            _draw_panel(draw, (x0, margin_top, x0 + pw, margin_top + ph), points, x_label, y_label, log_x)
    return figure
