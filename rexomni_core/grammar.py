"""Answer text <-> regions, for every task of FORMAT.md.

`serialize` writes training targets; `parse` reads model text. The parser is total: it never
raises on model text. Whatever it cannot read exactly (a region with the wrong number of
coordinates, a bin above 999, a phrase that is never closed, stray words, a truncated tail) is
dropped and recorded in `Prediction.problems`; nothing is guessed.

Where this parser is stricter than the released one (`rex_omni.parse_prediction`), on malformed
text only:
- a region whose piece holds anything but coordinate tokens (`<1>x<2>`), a bin above 999, or a
  non-canonical bin (`<007>`) is dropped; the released parser reads the numbers regardless;
- a group with an empty phrase or no regions at all (`<|box_start|><|box_end|>`) is dropped;
  the released parser keeps the key with an empty list;
- a keypoint whose value is neither " <x> <y> " nor "unvisible" is dropped; the released parser
  turns it into "unvisible";
- stray text, a missing final `<|box_end|>` and text after `<|im_end|>` are read past but
  reported, so `Prediction.well_formed` is False for them.
On well-formed answers, and on answers cut off at a region boundary, `Prediction.to_official()`
equals the released parser's output when parsed with `decode="official"`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

from .coords import MAX_BIN, bins_in, check_decoder, check_size, dequantize_xy, quantize_xy, tokens_text
from .regions import Box, Keypoints, ParseProblem, Point, Polygon, Prediction, Region
from .tasks import get_task

REF_START, REF_END = "<|object_ref_start|>", "<|object_ref_end|>"
BOX_START, BOX_END = "<|box_start|>", "<|box_end|>"
IM_END = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"
NONE_ANSWER = "None"
UNVISIBLE = "unvisible"

_MARKER = re.compile(r"<\|(object_ref_start|object_ref_end|box_start|box_end)\|>")
_STOP = re.compile(r"<\|(?:im_end|endoftext)\|>")
_REGION = re.compile(r"\s*(?:<(?:0|[1-9][0-9]*)>\s*)+")
_FENCE = "```"
_INSTANCE_CATEGORY = re.compile(r"^([a-zA-Z_]+)")


# --------------------------------------------------------------------------- serialize


def serialize(
    regions: Sequence[Region],
    width: float,
    height: float,
    task: str = "detection",
    phrases: Sequence[str] | None = None,
) -> str:
    """Regions in pixels → the answer text a model should write (without `<|im_end|>`).

    Groups follow `phrases` (every asked phrase; those without regions are answered `None`),
    or the order in which phrases first appear. Regions of one phrase are ordered by x0 then y0
    (in bins), as the released training targets are. OCR writes one group per text instance,
    in reading order (top to bottom, then left to right).
    """
    check_size(width, height)
    spec = get_task(task)
    if spec.region_kind == "keypoints":
        return serialize_keypoints(regions, width, height)
    encoded = [(region, quantize_xy(_flat_coords(region), width, height)) for region in regions]
    if spec.ocr:
        encoded.sort(key=lambda item: (item[1][1], item[1][0]))
        return ", ".join(_group(region.phrase, [bins]) for region, bins in encoded)
    order = list(dict.fromkeys(list(phrases or []) + [region.phrase for region in regions]))
    groups = []
    for phrase in order:
        phrase_bins = sorted(bins for region, bins in encoded if region.phrase == phrase)
        groups.append(_group(phrase, phrase_bins))
    return ", ".join(groups)


def serialize_keypoints(
    instances: Sequence[Region], width: float, height: float, fence: bool = False
) -> str:
    """Keypoint instances → the JSON answer (instance names `<phrase><n>` when not given)."""
    check_size(width, height)
    answer: dict[str, dict] = {}
    counts: dict[str, int] = {}
    for region in instances:
        if not isinstance(region, Keypoints):
            raise ValueError(f"serialize_keypoints needs Keypoints regions, got {region.kind}")
        counts[region.phrase] = counts.get(region.phrase, 0) + 1
        name = region.instance_id or f"{region.phrase}{counts[region.phrase]}"
        box = region.bounds()
        answer[name] = {
            "bbox": _spaced_tokens(quantize_xy(box, width, height)),
            "keypoints": {
                kp: UNVISIBLE if xy is None else _spaced_tokens(quantize_xy(xy, width, height))
                for kp, xy in region.coords.items()
            },
        }
    text = json.dumps(answer)
    return f"```json\n{text}\n```" if fence else text


def _flat_coords(region: Region) -> list[float]:
    if region.kind == "keypoints":
        raise ValueError("keypoint regions are written by serialize_keypoints (task 'keypoint')")
    return list(region.coords)


def _group(phrase: str, regions_bins: Iterable[Sequence[int]]) -> str:
    body = ",".join(tokens_text(bins) for bins in regions_bins) or NONE_ANSWER
    return f"{REF_START}{phrase}{REF_END}{BOX_START}{body}{BOX_END}"


def _spaced_tokens(bins: Sequence[int]) -> str:
    return " " + " ".join(f"<{b}>" for b in bins) + " "


# --------------------------------------------------------------------------- parse


def parse(
    text: str,
    width: float,
    height: float,
    task: str = "detection",
    decode: str = "center",
) -> Prediction:
    """Model text → `Prediction` with regions in original-image pixels.

    Never raises on `text`; raises `ValueError` only for a bad `width`, `height`, `task` or
    `decode`, which are the caller's inputs, not the model's.
    """
    check_size(width, height)
    check_decoder(decode)
    spec = get_task(task)
    prediction = Prediction(
        regions=[], raw_text=text, problems=[], width=width, height=height, task=task, decode=decode
    )
    if not isinstance(text, str):
        prediction.problems.append(ParseProblem("answer is not text", repr(text)))
        prediction.raw_text = ""
        return prediction
    body = _cut_at_stop(text, prediction)
    if spec.region_kind == "keypoints":
        _parse_keypoints(body, prediction)
    else:
        _parse_groups(body, prediction, ocr=spec.ocr)
    return prediction


def _cut_at_stop(text: str, prediction: Prediction) -> str:
    stop = _STOP.search(text)
    if stop is None:
        return text
    tail = _STOP.sub("", text[stop.end():])
    if tail.strip():
        prediction.problems.append(ParseProblem("text after <|im_end|> ignored", tail.strip()))
    return text[: stop.start()]


def _parse_groups(body: str, prediction: Prediction, ocr: bool) -> None:
    """A small state machine over the four group markers; plain text between them."""
    pieces = _MARKER.split(body)
    # re.split with one group alternates: text, marker name, text, marker name, …
    texts, markers = pieces[0::2], pieces[1::2]
    problems = prediction.problems

    def stray(fragment: str) -> None:
        if fragment.strip(" \t\r\n,"):
            problems.append(ParseProblem("stray text ignored", fragment.strip()))

    state, phrase, content = "outside", "", ""
    stray(texts[0])
    for marker, following in zip(markers, texts[1:]):
        if state == "outside":
            if marker == "object_ref_start":
                state, phrase = "phrase", following
            else:
                problems.append(ParseProblem("marker outside a group ignored", f"<|{marker}|>"))
                stray(following)
        elif state == "phrase":
            if marker == "object_ref_end":
                state = "after_phrase"
                if following.strip():
                    problems.append(
                        ParseProblem("text between phrase and regions ignored", following.strip())
                    )
            elif marker == "object_ref_start":
                problems.append(ParseProblem("phrase never closed; group dropped", phrase))
                phrase = following
            else:
                problems.append(ParseProblem("phrase never closed; group dropped", phrase))
                state = "outside"
                stray(following)
        elif state == "after_phrase":
            if marker == "box_start":
                state, content = "regions", following
            else:
                problems.append(ParseProblem("phrase without regions; group dropped", phrase))
                state, phrase = ("phrase", following) if marker == "object_ref_start" else ("outside", "")
                if state == "outside":
                    stray(following)
        else:  # regions
            if marker == "box_end":
                _add_group(phrase, content, prediction, ocr, truncated=False)
                state = "outside"
                stray(following)
            elif marker == "object_ref_start":
                problems.append(ParseProblem("missing <|box_end|> before next group", phrase))
                _add_group(phrase, content, prediction, ocr, truncated=True)
                state, phrase = "phrase", following
            else:
                # Keep the marker in the content so the region holding it is dropped, not joined.
                problems.append(ParseProblem("unexpected marker inside regions", f"<|{marker}|>"))
                content += f"<|{marker}|>" + following
    if state == "phrase":
        problems.append(ParseProblem("answer ends inside a phrase; group dropped", phrase))
    elif state == "after_phrase":
        problems.append(ParseProblem("answer ends before regions; group dropped", phrase))
    elif state == "regions":
        problems.append(ParseProblem("missing final <|box_end|> (truncated answer)", phrase))
        _add_group(phrase, content, prediction, ocr, truncated=True)


def _add_group(raw_phrase: str, content: str, prediction: Prediction, ocr: bool, truncated: bool) -> None:
    phrase = raw_phrase.strip()
    if not phrase:
        prediction.problems.append(ParseProblem("empty phrase; group dropped", content))
        return
    if content.strip() == NONE_ANSWER:
        _note_phrase(prediction, phrase)
        return
    pieces = content.split(",")
    if truncated and len(pieces) > 1 and not pieces[-1].strip():
        pieces = pieces[:-1]  # cut off right after a comma: the last region was complete
    regions = []
    for piece in pieces:
        region = _read_region(piece, phrase, prediction, ocr)
        if region is not None:
            regions.append(region)
    if not regions and not any(p.strip() for p in pieces):
        prediction.problems.append(ParseProblem("group without regions; dropped", phrase))
        return
    _note_phrase(prediction, phrase)
    prediction.regions.extend(regions)


def _note_phrase(prediction: Prediction, phrase: str) -> None:
    if phrase not in prediction.phrases:
        prediction.phrases.append(phrase)


def _read_region(piece: str, phrase: str, prediction: Prediction, ocr: bool) -> Region | None:
    problems = prediction.problems
    if not _REGION.fullmatch(piece):
        problems.append(ParseProblem("region is not a run of coordinate tokens", piece.strip()))
        return None
    bins = bins_in(piece)
    if any(b > MAX_BIN for b in bins):
        problems.append(ParseProblem(f"coordinate bin above {MAX_BIN}", piece.strip()))
        return None
    count = len(bins)
    if count == 2:
        cls = Point
    elif count == 4:
        cls = Box
    elif count > 4 and count % 2 == 0:
        cls = Polygon
    else:
        problems.append(ParseProblem(f"region with {count} coordinates", piece.strip()))
        return None
    coords = dequantize_xy(bins, prediction.width, prediction.height, prediction.decode)
    return cls(phrase=phrase, coords=coords, text=phrase if ocr else None)


def _parse_keypoints(body: str, prediction: Prediction) -> None:
    problems = prediction.problems
    json_text = _fenced_json(body)
    if json_text is None:
        start, end = body.find("{"), body.rfind("}")
        if start == -1 or end <= start:
            if body.strip():
                problems.append(ParseProblem("no JSON object in keypoint answer", body.strip()))
            return
        json_text = body[start : end + 1]
    try:
        instances = json.loads(json_text)
    except (json.JSONDecodeError, RecursionError) as error:
        problems.append(ParseProblem(f"keypoint JSON does not parse ({error})", json_text))
        return
    if not isinstance(instances, dict):
        problems.append(ParseProblem("keypoint answer is not a JSON object", json_text))
        return
    for instance_id, instance in instances.items():
        region = _read_instance(str(instance_id), instance, prediction)
        if region is not None:
            _note_phrase(prediction, region.phrase)
            prediction.regions.append(region)


def _fenced_json(body: str) -> str | None:
    """The text between the first "```" (or "```json") and the next "```", stripped; None when
    there is no closing fence. Found with str.find: the regex it replaces backtracked cubically
    on a long run of whitespace after an unclosed fence."""
    opening = body.find(_FENCE)
    if opening == -1:
        return None
    start = opening + len(_FENCE)
    if body.startswith("json", start):
        start += len("json")
    closing = body.find(_FENCE, start)
    return None if closing == -1 else body[start:closing].strip()


def _read_instance(instance_id: str, instance, prediction: Prediction) -> Keypoints | None:
    problems = prediction.problems
    if not isinstance(instance, dict) or "bbox" not in instance or "keypoints" not in instance:
        problems.append(ParseProblem("instance needs 'bbox' and 'keypoints'; dropped", instance_id))
        return None
    box = _read_tokens(instance["bbox"], 4, prediction)
    if box is None:
        problems.append(ParseProblem("instance bbox is not 4 coordinate tokens; dropped", instance_id))
        return None
    keypoints = instance["keypoints"]
    if not isinstance(keypoints, dict):
        problems.append(ParseProblem("instance keypoints is not an object; dropped", instance_id))
        return None
    coords: dict[str, list[float] | None] = {}
    for name, value in keypoints.items():
        if value == UNVISIBLE:
            coords[str(name)] = None
            continue
        xy = _read_tokens(value, 2, prediction)
        if xy is None:
            problems.append(ParseProblem(f"keypoint {name!r} of {instance_id} dropped", repr(value)))
        else:
            coords[str(name)] = xy
    category = _INSTANCE_CATEGORY.match(instance_id)
    phrase = category.group(1) if category else "keypoint_instance"
    return Keypoints(phrase=phrase, coords=coords, box=box, instance_id=instance_id)


def _read_tokens(value, count: int, prediction: Prediction) -> list[float] | None:
    if not isinstance(value, str) or not _REGION.fullmatch(value):
        return None
    bins = bins_in(value)
    if len(bins) != count or any(b > MAX_BIN for b in bins):
        return None
    return dequantize_xy(bins, prediction.width, prediction.height, prediction.decode)
