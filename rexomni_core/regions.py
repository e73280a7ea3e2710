"""Typed regions and the prediction that holds them, with converters to other ecosystems.

All coordinates are in ORIGINAL-image pixels. `coords` is a flat list of floats for boxes
(`[x0, y0, x1, y1]`), points (`[x, y]`) and polygons (`[x0, y0, x1, y1, …]`), and a mapping
`name → [x, y] | None` (None: not visible) for keypoints. For OCR the phrase is the recognised
text and `text` repeats it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from .errors import InputError


@dataclass
class _FlatRegion:
    """Fields shared by the regions whose coordinates are a flat list of floats."""

    phrase: str
    coords: list[float]
    text: str | None = None
    score: float | None = None


@dataclass
class Box(_FlatRegion):
    kind: ClassVar[str] = "box"

    def bounds(self) -> list[float]:
        return list(self.coords)


@dataclass
class Point(_FlatRegion):
    kind: ClassVar[str] = "point"

    def bounds(self) -> list[float]:
        x, y = self.coords
        return [x, y, x, y]


@dataclass
class Polygon(_FlatRegion):
    kind: ClassVar[str] = "polygon"

    @property
    def vertices(self) -> list[list[float]]:
        return [[self.coords[i], self.coords[i + 1]] for i in range(0, len(self.coords), 2)]

    def bounds(self) -> list[float]:
        xs, ys = self.coords[0::2], self.coords[1::2]
        return [min(xs), min(ys), max(xs), max(ys)]


@dataclass
class Keypoints:
    """One instance (e.g. `person1`): its box and its named keypoints (None = not visible)."""

    phrase: str
    coords: dict[str, list[float] | None]
    box: list[float] | None = None
    instance_id: str | None = None
    text: str | None = None
    score: float | None = None
    kind: ClassVar[str] = "keypoints"

    def bounds(self) -> list[float]:
        if self.box is not None:
            return list(self.box)
        visible = [xy for xy in self.coords.values() if xy is not None]
        if not visible:
            return [0.0, 0.0, 0.0, 0.0]
        xs, ys = [p[0] for p in visible], [p[1] for p in visible]
        return [min(xs), min(ys), max(xs), max(ys)]


Region = Box | Point | Polygon | Keypoints


def group_by_phrase(regions: Iterable[Region]) -> dict[str, list[Region]]:
    """Regions grouped by phrase, phrases in order of first appearance, regions in order."""
    grouped: dict[str, list[Region]] = {}
    for region in regions:
        grouped.setdefault(region.phrase, []).append(region)
    return grouped


@dataclass(frozen=True)
class ParseProblem:
    """A piece of model text the parser dropped, and why."""

    reason: str
    fragment: str

    def __str__(self) -> str:
        fragment = self.fragment if len(self.fragment) <= 80 else self.fragment[:77] + "..."
        return f"{self.reason}: {fragment!r}"


@dataclass(frozen=True)
class PhraseOutcomes:
    """An answer against the phrases a prompt asked for (`Prediction.outcomes`)."""

    found: list[str]
    not_found: list[str]
    unasked: list[str]


@dataclass
class Prediction:
    """What one answer says: regions in original-image pixels, the raw text, what was dropped.

    `phrases` lists every phrase the answer speaks of, in order of first appearance, including
    those answered `None` (absent). Generation fields are filled by `RexOmni.predict`.
    """

    regions: list[Region]
    raw_text: str
    problems: list[ParseProblem]
    width: float
    height: float
    task: str = "detection"
    decode: str = "center"
    phrases: list[str] = field(default_factory=list)
    prompt: str | None = None
    seconds: float | None = None
    num_prompt_tokens: int | None = None
    num_output_tokens: int | None = None

    @property
    def absent(self) -> list[str]:
        """Phrases the answer names without any region (answered `None`)."""
        present = {r.phrase for r in self.regions}
        return [p for p in self.phrases if p not in present]

    def outcomes(self, asked: Sequence[str]) -> PhraseOutcomes:
        """Which asked phrases the answer found, which it did not (answered `None` or never
        mentioned), and which phrases it wrote without being asked."""
        present = {r.phrase for r in self.regions}
        return PhraseOutcomes(
            found=[p for p in asked if p in present],
            not_found=[p for p in asked if p not in present],
            unasked=[p for p in dict.fromkeys(r.phrase for r in self.regions) if p not in asked],
        )

    @property
    def well_formed(self) -> bool:
        return not self.problems

    def by_phrase(self) -> dict[str, list[Region]]:
        """Every phrase of the answer (absent ones with no regions) → its regions, in order."""
        return {phrase: [] for phrase in self.phrases} | group_by_phrase(self.regions)

    def filtered(self, score_threshold: float | None = None, max_regions: int | None = None) -> Prediction:
        """A copy with the regions scoring at least `score_threshold`, and of those the
        `max_regions` highest-scoring (ties: answer order), in answer order. A region without a
        score passes any threshold and ranks last. Nothing is re-run, so a confidence slider can
        call this on the prediction it holds; phrases left without regions read as `absent`."""
        check_region_filter(score_threshold, max_regions)
        kept = [r for r in self.regions if score_threshold is None or r.score is None or r.score >= score_threshold]
        if max_regions is not None and len(kept) > max_regions:
            ranked = sorted(range(len(kept)), key=lambda i: (kept[i].score is None, -(kept[i].score or 0.0), i))
            best = set(ranked[:max_regions])
            kept = [region for i, region in enumerate(kept) if i in best]
        return replace(self, regions=kept, problems=list(self.problems), phrases=list(self.phrases))

    def parsed_dict(self) -> dict[str, Any]:
        """What the answer says, JSON-ready: regions, absent phrases, parse problems."""
        return {
            "regions": [region_to_dict(r) for r in self.regions],
            "absent": self.absent,
            "problems": [str(p) for p in self.problems],
        }

    def to_dict(self) -> dict[str, Any]:
        """`parsed_dict()` with the task, image size, decoder and generation facts."""
        return {
            "task": self.task,
            "image_size": [self.width, self.height],
            "decode": self.decode,
            **self.parsed_dict(),
            "prompt": self.prompt,
            "raw_text": self.raw_text,
            "seconds": self.seconds,
            "num_prompt_tokens": self.num_prompt_tokens,
            "num_output_tokens": self.num_output_tokens,
        }

    def to_official(self) -> dict[str, list[dict[str, Any]]]:
        """The released wrapper's `extracted_predictions`: phrase → list of region dicts.

        Same keys, order and shapes as `rex_omni.parse_prediction` (points `[x, y]`, polygons as
        `[[x, y], …]`, keypoints with `bbox`, `keypoints` (`"unvisible"` for hidden ones) and
        `instance_id`). The values equal the released parser's when parsed with
        `decode="official"`.
        """
        official: dict[str, list[dict[str, Any]]] = {}
        for phrase, regions in self.by_phrase().items():
            official[phrase] = [_official_region(r) for r in regions]
        return official

    def to_supervision(self):
        """`sv.Detections` for boxes and polygons, `sv.KeyPoints` for points and keypoints.

        Detections carry `data["class_name"]` (the phrases), `class_id` (index of the phrase in
        `phrases`), `confidence` when every region has a score, polygons in `data["polygon"]`
        and OCR text in `data["text"]`. Points become one-keypoint `KeyPoints`.
        """
        import numpy as np
        import supervision as sv

        kinds = {r.kind for r in self.regions}
        class_ids = {p: i for i, p in enumerate(self.phrases)}
        for r in self.regions:
            class_ids.setdefault(r.phrase, len(class_ids))
        if kinds & {"point", "keypoints"}:
            if kinds - {"point", "keypoints"} or kinds == {"point", "keypoints"}:
                raise InputError(
                    f"to_supervision() needs one family of regions, got {sorted(kinds)}"
                )
            return _keypoints_to_supervision(self.regions, class_ids, np, sv)
        regions = self.regions
        xyxy = np.array([r.bounds() for r in regions], dtype=np.float32).reshape(-1, 4)
        scores = [r.score for r in regions]
        confidence = (
            np.array(scores, dtype=np.float32) if regions and None not in scores else None
        )
        data = {"class_name": np.array([r.phrase for r in regions], dtype=object)}
        if "polygon" in kinds:
            polygons = np.empty(len(regions), dtype=object)
            for i, r in enumerate(regions):
                polygons[i] = np.array(r.vertices if r.kind == "polygon" else [], dtype=np.float32)
            data["polygon"] = polygons
        if any(r.text is not None for r in regions):
            data["text"] = np.array([r.text for r in regions], dtype=object)
        return sv.Detections(
            xyxy=xyxy,
            class_id=np.array([class_ids[r.phrase] for r in regions], dtype=int),
            confidence=confidence,
            data=data,
        )

    def to_coco(
        self, image_id: int, category_ids: Mapping[str, int], unknown: str = "error"
    ) -> list[dict[str, Any]]:
        """COCO result records (`bbox` as xywh; `segmentation` for polygons; `keypoints` as
        x, y, v triplets; `point` for points). Regions without a score get score 1.0.

        A phrase missing from `category_ids` raises (`unknown="error"`) or is left out
        (`unknown="skip"`).
        """
        from .coco import result_record  # coco.py builds on the region types defined here

        if unknown not in ("error", "skip"):
            raise InputError(f"unknown must be 'error' or 'skip', got {unknown!r}")
        missing = sorted({r.phrase for r in self.regions} - set(category_ids))
        if missing and unknown == "error":
            raise InputError(
                f"phrases without a category id: {missing}; pass them in category_ids "
                "or use unknown='skip'"
            )
        return [
            result_record(region, image_id, category_ids[region.phrase])
            for region in self.regions
            if region.phrase in category_ids
        ]


def check_region_filter(score_threshold: float | None, max_regions: int | None, cap: str = "max_regions") -> None:
    """`score_threshold` a number in [0, 1] and `max_regions` (named `cap` in the message) a
    whole number ≥ 1, or None."""
    if score_threshold is not None and (
        isinstance(score_threshold, bool) or not isinstance(score_threshold, (int, float)) or not 0 <= score_threshold <= 1
    ):
        raise InputError(f"score_threshold must be a number in [0, 1], got {score_threshold!r}")
    if max_regions is not None and (isinstance(max_regions, bool) or not isinstance(max_regions, int) or max_regions < 1):
        raise InputError(f"{cap} must be a whole number ≥ 1, got {max_regions!r}")


def region_to_dict(region: Region) -> dict[str, Any]:
    record: dict[str, Any] = {"phrase": region.phrase, "kind": region.kind, "coords": region.coords}
    if region.kind == "keypoints":
        record.update(box=region.box, instance_id=region.instance_id)
    if region.text is not None:
        record["text"] = region.text
    if region.score is not None:
        record["score"] = region.score
    return record


def region_from_dict(record: Mapping[str, Any]) -> Region:
    """The inverse of `region_to_dict` (for regions stored as JSON, e.g. GRPO ground truth)."""
    common = {"phrase": record["phrase"], "text": record.get("text"), "score": record.get("score")}
    if record["kind"] == "keypoints":
        return Keypoints(coords=record["coords"], box=record.get("box"), instance_id=record.get("instance_id"), **common)
    kinds = {"box": Box, "point": Point, "polygon": Polygon}
    if record["kind"] not in kinds:
        raise InputError(f"unknown region kind {record['kind']!r}; expected box, point, polygon or keypoints")
    return kinds[record["kind"]](coords=list(record["coords"]), **common)


def _official_region(region: Region) -> dict[str, Any]:
    if region.kind == "keypoints":
        return {
            "type": "keypoint",
            "bbox": list(region.box) if region.box is not None else None,
            "keypoints": {
                name: list(xy) if xy is not None else "unvisible"
                for name, xy in region.coords.items()
            },
            "instance_id": region.instance_id,
        }
    if region.kind == "polygon":
        return {"type": "polygon", "coords": region.vertices}
    return {"type": region.kind, "coords": list(region.coords)}


def _keypoints_to_supervision(regions: Sequence[Region], class_ids, np, sv):
    if not regions:
        return sv.KeyPoints.empty()
    if regions[0].kind == "point":
        xy = np.array([[r.coords] for r in regions], dtype=np.float32)
        visible = np.ones(xy.shape[:2], dtype=bool)
    else:
        names = [list(r.coords) for r in regions]
        if any(n != names[0] for n in names):
            raise InputError("to_supervision() needs every keypoint instance to name the same keypoints")
        xy = np.array(
            [[xy if xy is not None else [0.0, 0.0] for xy in r.coords.values()] for r in regions],
            dtype=np.float32,
        )
        visible = np.array([[xy is not None for xy in r.coords.values()] for r in regions], dtype=bool)
    return sv.KeyPoints(
        xy=xy,
        visible=visible,
        class_id=np.array([class_ids[r.phrase] for r in regions], dtype=int),
        data={"class_name": np.array([r.phrase for r in regions], dtype=object)},
    )
