"""Grounding engine: caption → phrases (offline) → boxes from any detector with `predict`."""

from dataclasses import dataclass, field

from rexomni_core.data.engines.grounding import chunk_noun_phrases, ground_caption, vocabulary_extractor
from rexomni_core.regions import Box, Point


def test_chunker_finds_noun_phrases_offline():
    caption = "A red car parked next to the old house, with two dogs on the grass."
    assert chunk_noun_phrases(caption) == ["red car", "old house", "dogs", "grass"]


def test_vocabulary_extractor_prefers_longer_phrases():
    extract = vocabulary_extractor(["car", "red car", "house"])
    assert extract("The Red Car and a house.") == ["red car", "house"]
    assert extract("nothing here") == []


@dataclass
class FakeDetector:
    calls: list = field(default_factory=list)

    def predict(self, image, task="detection", categories=()):
        self.calls.append((task, list(categories)))

        @dataclass
        class Answer:
            regions: list

        return Answer([Box("red car", [1, 2, 30, 40]), Point("grass", [5, 5]), Box("stray", [0, 0, 1, 1])])


def test_ground_caption_keeps_boxes_of_extracted_phrases():
    detector = FakeDetector()
    record = ground_caption("img", "A red car on the grass near an old house.", detector)
    assert detector.calls == [("detection", ["red car", "grass", "old house"])]
    assert [(r.phrase, r.coords) for r in record.regions] == [("red car", [1, 2, 30, 40])]
    assert record.absent == ["grass", "old house"]
    converted = record.to_record("img.png", 100, 80, name="c1")
    assert converted.annotations[0].category == "red car"
    assert converted.annotations[0].attributes["caption"].startswith("A red car")


def test_caption_without_phrases_asks_nothing():
    detector = FakeDetector()
    assert ground_caption("img", "it is there", detector).phrases == []
    assert detector.calls == []
