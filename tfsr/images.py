"""Reading and writing images, with errors that name the file."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from tfsr.atomic import atomic_path
from tfsr.errors import TfsrError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
GREY_MODES = ("L", "LA", "I", "I;16", "I;16B", "I;16L", "1", "F")


@dataclass
class ImageData:
    """An image as uint8 RGB, with what it was: grey images are replicated to RGB, alpha kept aside."""

    rgb: np.ndarray  # HxWx3 uint8
    is_grey: bool
    alpha: np.ndarray | None = None  # HxW uint8 when the file had an alpha channel


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        return np.clip(np.floor(arr * 255.0 + 0.5) if arr.max() <= 1.0 else arr, 0, 255).astype(np.uint8)
    # 16-bit (and 32-bit integer) images: scale the full range onto 0..255.
    top = 65535 if arr.max() > 255 or arr.dtype == np.uint16 else 255
    return np.clip(np.floor(arr.astype(np.float64) * 255.0 / top + 0.5), 0, 255).astype(np.uint8)


def read_image(path: str | Path) -> ImageData:
    """Decode any image Pillow reads, respecting EXIF orientation. Raises TfsrError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise TfsrError(f"image {path} does not exist")
    if path.stat().st_size == 0:
        raise TfsrError(f"image {path} is an empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im = ImageOps.exif_transpose(im)
                im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise TfsrError(f"image {path} is too large to decode safely (over {Image.MAX_IMAGE_PIXELS} pixels)") from None
    except Image.UnidentifiedImageError:
        raise TfsrError(f"{path} is not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise TfsrError(f"image {path} is damaged or truncated ({exc})") from None
    alpha = None
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA"):
        alpha = np.asarray(im.getchannel("A"))
    is_grey = im.mode in GREY_MODES
    if is_grey:
        grey = _to_uint8(np.asarray(im.getchannel(0) if im.mode == "LA" else im))
        rgb = np.repeat(grey[..., None], 3, axis=2)
    else:
        rgb = _to_uint8(np.asarray(im.convert("RGB")))
    return ImageData(np.ascontiguousarray(rgb), is_grey, alpha)


def write_image(path: str | Path, rgb: np.ndarray, alpha: np.ndarray | None = None, grey: bool = False) -> None:
    """Write a uint8 image atomically (temporary file, then rename): never a half-written file."""
    if grey:
        data = rgb[..., 0] if alpha is None else np.stack([rgb[..., 0], alpha], axis=-1)
    else:
        data = rgb if alpha is None else np.concatenate([rgb, alpha[..., None]], axis=-1)
    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(data)).save(tmp, format=fmt)


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
