"""Grounding engine: (image, caption) → phrase-grounding records, as the paper's engine does
(caption → candidate phrases → a detector grounds each phrase).

The phrase extractor is pluggable: any callable `caption → [phrase]`. The default works offline
with no model: it matches a given vocabulary when there is one, otherwise it chunks the caption
into runs of words between stop words ("a red car parked next to the old house" → "red car",
"old house"). The detector is any object with `predict(image, task="detection",
categories=[...])` returning something with `.regions` (each with `.phrase`, `.kind`, `.coords`),
such as `RexOmni`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ...annotations import Annotation
from ..formats.records import Record

PhraseExtractor = Callable[[str], list[str]]

# Words that end a noun phrase: articles, pronouns, prepositions, conjunctions, common verbs.
STOP_WORDS = frozenset(
    """
    a an the this that these those some any each every its his her their our my your
    of in on at to from with without by for into onto over under near next behind beside between
    above below across along around through and or but while as than then there here is are was
    were be been being has have had do does did can could will would should may might it they he
    she we you i who which what where when how sitting standing holding wearing looking parked
    lying walking running playing next up down out off very also just one two three four five
    """.split()
)
MAX_PHRASE_WORDS = 4
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*|[.,;:!?()]")


def chunk_noun_phrases(caption: str) -> list[str]:
    """Runs of up to MAX_PHRASE_WORDS words between stop words and punctuation, in caption order."""
    phrases, run = [], []
    for token in _WORD.findall(caption) + ["."]:
        word = token.lower()
        if word in STOP_WORDS or not word[0].isalpha():
            if run:
                phrases.append(" ".join(run[-MAX_PHRASE_WORDS:]))
            run = []
        else:
            run.append(word)
    return list(dict.fromkeys(phrases))


def vocabulary_extractor(vocabulary: Sequence[str]) -> PhraseExtractor:
    """An extractor that finds the given phrases in captions (longest first, whole words)."""
    ordered = sorted({v.strip().lower() for v in vocabulary if v.strip()}, key=len, reverse=True)
    patterns = [(v, re.compile(rf"\b{re.escape(v)}\b")) for v in ordered]

    def extract(caption: str) -> list[str]:
        text, found = caption.lower(), []
        for phrase, pattern in patterns:
            if pattern.search(text):
                found.append(phrase)
                text = pattern.sub(" ", text)  # "red car" found: "car" must not match again inside it
        return found

    return extract


class Detector(Protocol):
    def predict(self, image, task: str = "detection", categories: Sequence[str] = ...): ...


@dataclass
class GroundingRecord:
    """A caption with the phrases found in it and the boxes the detector gave them."""

    caption: str
    phrases: list[str]
    regions: list = field(default_factory=list)

    @property
    def absent(self) -> list[str]:
        grounded = {r.phrase for r in self.regions}
        return [p for p in self.phrases if p not in grounded]

    def to_record(self, image, width: int, height: int, name: str = "") -> Record:
        """As a format record (boxes only), to write as COCO, TSV or JSONL."""
        annotations = [Annotation(r.phrase, list(r.coords), attributes={"caption": self.caption}) for r in self.regions]
        return Record(image, width, height, annotations, name=name)


def ground_caption(image, caption: str, detector: Detector, extractor: PhraseExtractor = chunk_noun_phrases) -> GroundingRecord:
    """Extract phrases from `caption` and keep the boxes the detector gives for them."""
    phrases = extractor(caption)
    if not phrases:
        return GroundingRecord(caption, [])
    prediction = detector.predict(image, task="detection", categories=phrases)
    regions = [r for r in prediction.regions if r.kind == "box" and r.phrase in phrases]
    return GroundingRecord(caption, phrases, regions)
