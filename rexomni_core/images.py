"""Images as the model reads them: any user image → an 8-bit RGB PIL image, or a clear refusal.

Torch-free, so data formats, evaluators and the app can load images the same way the model does.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError, MissingInputError

# Images outside these bounds are refused, by the Python API, the CLI and the app alike: below
# 8 pixels a side there is nothing to find (a 1×1 image once got seven confident boxes); a side
# above 16 384 is a mistake or a decompression bomb; Qwen's smart resize cannot keep an aspect
# ratio beyond 200. The app also caps uploads at MAX_UPLOAD_MB and shows images larger than
# MAX_APP_SIDE downscaled (the model resizes them far smaller anyway).
MIN_IMAGE_SIDE = 8
MAX_IMAGE_SIDE = 16384
MAX_ASPECT_RATIO = 200
MAX_UPLOAD_MB = 20
MAX_APP_SIDE = 2048

# Modes whose samples are wider than 8 bits: PIL's convert("RGB") clips them at 255, which turns
# a 16-bit greyscale PNG all white (its RGB sibling PIL already reduces to 8 bits itself).
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def load_image(image: Image.Image | np.ndarray | str | os.PathLike) -> Image.Image:
    """A PIL RGB image from a PIL image, an (H, W[, C]) uint8 array or a path.

    EXIF orientation is applied (coordinates then refer to the image as a viewer shows it);
    RGBA is composited on white; greyscale, palette, CMYK and 16-bit images are converted;
    absurd sizes, unreadable and truncated files are refused with an `InputError`.
    """
    if isinstance(image, (str, os.PathLike)):
        image = _open(Path(image))
    elif isinstance(image, np.ndarray):
        array = image
        if array.dtype != np.uint8:
            raise InputError(f"a numpy image must be uint8 (H, W) or (H, W, 3|4), got {array.dtype}")
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
            raise InputError(f"a numpy image must be (H, W) or (H, W, 3|4), got shape {array.shape}")
        image = Image.fromarray(array.squeeze(-1) if array.ndim == 3 and array.shape[2] == 1 else array)
    elif not isinstance(image, Image.Image):
        raise InputError(f"an image is a PIL image, a numpy array or a path, got {type(image).__name__}")
    image = ImageOps.exif_transpose(image)
    check_image_size(*image.size, source="image")
    if image.mode in _WIDE_MODES:
        image = _to_8_bits(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def _open(path: Path) -> Image.Image:
    with _opened(path) as opened:
        return opened.copy()


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file from its header, without decoding it; refused like
    `load_image` refuses (a missing, unreadable or absurdly large file)."""
    with _opened(Path(path)) as opened:
        return opened.size


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[Image.Image]:
    """The file opened by PIL with its size checked from the header; any failure to read it
    (here or while the caller decodes it) is an `InputError` naming the file."""
    if not path.is_file():
        raise MissingInputError(f"no image at {path}")
    try:
        with warnings.catch_warnings():
            # PIL warns (and only past twice the limit raises) on huge images; the size check
            # refuses them before any pixel is decoded.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                check_image_size(*opened.size, source=str(path))
                yield opened
    except InputError:
        raise
    except Image.DecompressionBombError as error:  # PIL refuses on its own far past our limit
        raise InputError(
            f"{path}: too large to open safely ({error}); sides must be between {MIN_IMAGE_SIDE} and "
            f"{MAX_IMAGE_SIDE} pixels"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise InputError(f"{path}: not a readable image ({type(error).__name__}: {error})") from None


def _to_8_bits(image: Image.Image) -> Image.Image:
    """Greyscale wider than 8 bits → 8-bit 'L', scaled (16-bit full range → 0..255), not clipped."""
    values = np.asarray(image, dtype=np.float64)
    peak = float(values.max(initial=0.0))
    if image.mode.startswith("I;16") or 255 < peak <= 65535:
        top = 65535.0  # 16-bit samples (PIL decodes some 16-bit files into its 32-bit modes)
    else:
        top = max(peak, 255.0)  # 8-bit values in a wide mode stay; wider ones scale to their peak
    return Image.fromarray(np.rint(values / top * 255.0).astype(np.uint8), mode="L")


def check_image_size(width: int, height: int, source: str) -> None:
    if min(width, height) < MIN_IMAGE_SIDE or max(width, height) > MAX_IMAGE_SIDE:
        raise InputError(
            f"{source} is {width}x{height}; sides must be between {MIN_IMAGE_SIDE} and {MAX_IMAGE_SIDE} pixels"
        )
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise InputError(
            f"{source} is {width}x{height}; an aspect ratio above {MAX_ASPECT_RATIO} cannot be "
            "resized for the vision encoder (crop or pad it first)"
        )
