"""Referring expressions from a shapes scene: only those that pick out exactly one object.

An expression is a description ("circle", "red shape", "blue star", "shape") plus, when the
description alone matches several objects, a size superlative, a position extreme or a spatial
relation to a uniquely described anchor. Each rule demands a clear margin (a 1.3× area ratio, a
gap between boxes), so a human looking at the image would agree on the one answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..annotations import Annotation

SIZE_RATIO = 1.3  # the largest object's area must exceed the runner-up's by this factor


@dataclass(frozen=True)
class _Object:
    index: int
    colour: str
    shape: str
    area: float
    box: tuple[float, float, float, float]

    @property
    def centre(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)


def _objects(annotations: Sequence[Annotation]) -> list[_Object]:
    return [
        _Object(
            i,
            a.attributes["colour"],
            a.attributes["shape"],
            float(a.mask.bits.sum()) if a.mask is not None else (a.box[2] - a.box[0]) * (a.box[3] - a.box[1]),
            tuple(a.box),
        )
        for i, a in enumerate(annotations)
    ]


def _descriptions(objects: list[_Object]) -> dict[str, list[_Object]]:
    """Noun phrase → the objects it describes."""
    described: dict[str, list[_Object]] = {"shape": list(objects)}
    for o in objects:
        for noun in (o.shape, f"{o.colour} shape", f"{o.colour} {o.shape}"):
            described.setdefault(noun, []).append(o)
    return described


def _superlatives(noun: str, members: list[_Object]) -> list[tuple[str, int]]:
    by_area = sorted(members, key=lambda o: o.area)
    found = []
    if by_area[-1].area >= SIZE_RATIO * by_area[-2].area:
        found.append((f"the largest {noun}", by_area[-1].index))
    if by_area[1].area >= SIZE_RATIO * by_area[0].area:
        found.append((f"the smallest {noun}", by_area[0].index))
    return found


# Position extremes: the target's centre lies beyond the near edge of every other member's box.
_EXTREMES = (
    ("leftmost", lambda t, o: t.centre[0] < o.box[0]),
    ("rightmost", lambda t, o: t.centre[0] > o.box[2]),
    ("topmost", lambda t, o: t.centre[1] < o.box[1]),
    ("lowest", lambda t, o: t.centre[1] > o.box[3]),
)

# Relations of a target A to an anchor B: (strictly holds, clearly does not hold).
_RELATIONS = (
    ("left of", lambda a, b: a.box[2] <= b.box[0], lambda a, b: a.centre[0] >= b.centre[0]),
    ("right of", lambda a, b: a.box[0] >= b.box[2], lambda a, b: a.centre[0] <= b.centre[0]),
    ("above", lambda a, b: a.box[3] <= b.box[1], lambda a, b: a.centre[1] >= b.centre[1]),
    ("below", lambda a, b: a.box[1] >= b.box[3], lambda a, b: a.centre[1] <= b.centre[1]),
)
# The words expressions are built from besides colours and shapes (a new nano's tokenizer
# trains on them).
REFERRING_WORDS = ("the", "shape", "largest", "smallest") + tuple(word for word, *_ in _EXTREMES + _RELATIONS)


def _extremes(noun: str, members: list[_Object]) -> list[tuple[str, int]]:
    found = []
    for word, beyond in _EXTREMES:
        for target in members:
            if all(beyond(target, other) for other in members if other is not target):
                found.append((f"the {word} {noun}", target.index))
    return found


def _relations(described: dict[str, list[_Object]]) -> list[tuple[str, int]]:
    anchors = [(noun, members[0]) for noun, members in described.items() if len(members) == 1 and noun != "shape"]
    found = []
    for noun, members in described.items():
        for anchor_noun, anchor in anchors:
            others = [o for o in members if o is not anchor]
            if not others or anchor_noun == noun:
                continue
            for word, holds, clearly_not in _RELATIONS:
                hits = [o for o in others if holds(o, anchor)]
                if len(hits) == 1 and all(clearly_not(o, anchor) for o in others if o is not hits[0]):
                    found.append((f"the {noun} {word} the {anchor_noun}", hits[0].index))
    return found


def referring_expressions(annotations: Sequence[Annotation]) -> dict[str, list[tuple[str, int]]]:
    """Kind (`unique`, `size`, `position`, `relation`) → [(expression, annotation index)]."""
    objects = _objects(annotations)
    described = _descriptions(objects)
    found: dict[str, list[tuple[str, int]]] = {"unique": [], "size": [], "position": [], "relation": []}
    for noun, members in described.items():
        if len(members) == 1:
            found["unique"].append((f"the {noun}", members[0].index))
        else:
            found["size"] += _superlatives(noun, members)
            found["position"] += _extremes(noun, members)
    found["relation"] = _relations(described)
    return {kind: expressions for kind, expressions in found.items() if expressions}
