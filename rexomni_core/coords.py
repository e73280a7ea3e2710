"""Coordinates: pixels <-> the 1000 bins `<0>` … `<999>` that Rex-Omni writes.

Every coordinate is relative to the ORIGINAL image size. Encoding floors, as the released
checkpoint was trained: `bin = floor(clamp(x / size, 0, 1) * 999)`. Two decoders:

- `center` (default): the centre of the interval a bin covers, `(bin + 0.5) / 999 * size`,
  clamped to the image. A perfect model then loses almost nothing to quantisation.
- `official`: `bin / 999 * size`, exactly what the released parser returns. Every edge lands on
  the low end of its bin, half a bin off on average, which caps IoU ≥ 0.95 on small boxes
  (see `iou_ceiling` and METRICS.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

from .errors import InputError

NUM_BINS = 1000
MAX_BIN = NUM_BINS - 1
DECODERS = ("center", "official")

# Every coordinate token, in bin order; `<k>` for k in 0..999.
COORDINATE_TOKENS = tuple(f"<{k}>" for k in range(NUM_BINS))
_TOKEN = re.compile(r"<([0-9]+)>")  # ASCII digits: int() would also read "٣"


def check_decoder(decode: str) -> str:
    if decode not in DECODERS:
        raise InputError(f"decode must be one of {DECODERS}, got {decode!r}")
    return decode


def check_size(width: float, height: float) -> None:
    for name, value in (("width", width), ("height", height)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise InputError(f"image {name} must be a positive number, got {value!r}")


def quantize(value: float, size: float) -> int:
    """Pixel coordinate → bin (floor encoding, clamped to 0..999)."""
    fraction = min(max(value / size, 0.0), 1.0)
    return min(max(int(math.floor(fraction * MAX_BIN)), 0), MAX_BIN)


def dequantize(bin_index: int, size: float, decode: str = "center") -> float:
    """Bin → pixel coordinate with the chosen decoder (see module docstring)."""
    if decode == "official":
        return bin_index / MAX_BIN * size
    if decode == "center":
        return min((bin_index + 0.5) / MAX_BIN * size, float(size))
    raise InputError(f"decode must be one of {DECODERS}, got {decode!r}")


def quantize_xy(coords: Sequence[float], width: float, height: float) -> list[int]:
    """Flat [x0, y0, x1, y1, …] in pixels → flat bins (x by width, y by height)."""
    return [quantize(v, width if i % 2 == 0 else height) for i, v in enumerate(coords)]


def dequantize_xy(
    bins: Sequence[int], width: float, height: float, decode: str = "center"
) -> list[float]:
    """Flat bins → flat pixel coordinates (x by width, y by height)."""
    return [dequantize(b, width if i % 2 == 0 else height, decode) for i, b in enumerate(bins)]


def coordinate_token(bin_index: int) -> str:
    if not 0 <= bin_index <= MAX_BIN:
        raise InputError(f"a coordinate bin is in 0..{MAX_BIN}, got {bin_index}")
    return f"<{bin_index}>"


def tokens_text(bins: Iterable[int]) -> str:
    """Bins → `<x0><y0>…` text, the form used inside answers and visual prompts."""
    return "".join(coordinate_token(b) for b in bins)


def bins_in(text: str) -> list[int]:
    """Every `<k>` number in `text`, in order. Range is not checked here, but a number above the
    last bin reads as NUM_BINS whatever its size: its exact value never matters, and int() of a
    long digit string costs quadratic time (Python refuses it past 4 300 digits)."""
    return [_bin_value(digits) for digits in _TOKEN.findall(text)]


def _bin_value(digits: str) -> int:
    significant = digits.lstrip("0") or "0"
    return int(significant) if len(significant) <= len(str(MAX_BIN)) else NUM_BINS


def roundtrip_xy(
    coords: Sequence[float], width: float, height: float, decode: str = "center"
) -> list[float]:
    """What a perfect model's answer decodes to: coordinates quantised, then dequantised."""
    return dequantize_xy(quantize_xy(coords, width, height), width, height, decode)
