"""Text similarity of OCR regions: what a text region reads, and how far two texts are apart.

On the ground floor beside `geometry` (which holds the region similarities: IoU, OKS, point
hits), so that the OCR evaluator and the OCR reward read text the same way.
"""

from __future__ import annotations

from .regions import Box, Polygon

TextRegion = Box | Polygon


def text_of(region: TextRegion) -> str:
    """The text a region reads: its `text`, else its phrase (the answer grammar writes the
    recognised text as the phrase)."""
    return region.text if region.text is not None else region.phrase


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions), one row at a time."""
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def normalised_edit_distance(a: str, b: str) -> float:
    """Edit distance over the longer length: 0 identical, 1 nothing in common."""
    longest = max(len(a), len(b))
    return edit_distance(a, b) / longest if longest else 0.0
