import json
import random
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rexomni_core import Box, Keypoints, Point, Polygon, parse, serialize
from rexomni_core.coords import MAX_BIN
from rexomni_core.grammar import BOX_END, BOX_START, IM_END, REF_END, REF_START

# ---------------------------------------------------------------- the released parser's fixtures


def test_parse_examples_match_the_released_parser(shared):
    """shared/fixtures/parse_examples.json: texts and what the released Rex-Omni parser returns."""
    cases = json.loads((shared / "fixtures" / "parse_examples.json").read_text())["cases"]
    assert {c["task"] for c in cases} >= {"detection", "pointing", "ocr_polygon", "keypoint"}
    for case in cases:
        prediction = parse(case["text"], case["width"], case["height"], task=case["task"], decode="official")
        assert prediction.to_official() == case["expected"], case["task"]
        assert prediction.problems == []


def test_public_api_shape():
    p = parse(f"{REF_START}cat{REF_END}{BOX_START}<0><0><999><999>{BOX_END}{IM_END}", 100, 50)
    (region,) = p.regions
    assert (region.phrase, region.kind, region.text, region.score) == ("cat", "box", None, None)
    assert isinstance(region.coords, list) and region.coords == pytest.approx([0.5 / 999 * 100, 0.5 / 999 * 50, 100.0, 50.0])
    assert p.raw_text.endswith(IM_END) and p.problems == [] and p.well_formed


# ---------------------------------------------------------------- an independent oracle


def released_parser_oracle(text: str, w: float, h: float) -> dict:
    """The released parser's documented behaviour for box/point/polygon answers, written from
    its description: cut at <|im_end|>, append a missing final <|box_end|>, read each group,
    split regions at commas, classify by the number of coordinates (2 point, 4 box, even > 4
    polygon), decode bin / 999 * size, merge groups of the same phrase."""
    text = text.split(IM_END)[0]
    if not text.endswith(BOX_END):
        text += BOX_END
    out: dict = {}
    group = re.compile(r"<\|object_ref_start\|>\s*([^<]+?)\s*<\|object_ref_end\|>\s*<\|box_start\|>(.*?)<\|box_end\|>")
    for phrase, body in group.findall(text):
        regions = []
        for piece in body.split(","):
            bins = [int(b) for b in re.findall(r"<(\d+)>", piece)]
            xy = [b / 999.0 * (w if i % 2 == 0 else h) for i, b in enumerate(bins)]
            if len(bins) == 2:
                regions.append({"type": "point", "coords": xy})
            elif len(bins) == 4:
                regions.append({"type": "box", "coords": xy})
            elif len(bins) > 4 and len(bins) % 2 == 0:
                regions.append({"type": "polygon", "coords": [xy[i : i + 2] for i in range(0, len(xy), 2)]})
        out.setdefault(phrase.strip(), []).extend(regions)
    return out


# ---------------------------------------------------------------- strategies

phrases = st.sampled_from(["cat", "red circle", "the largest blue star", "Save button", "EXIT", "a b c"])
sizes = st.tuples(st.integers(16, 4000), st.integers(16, 4000))


@st.composite
def box_regions(draw, kind=None):
    w, h = draw(sizes)
    kind = kind or draw(st.sampled_from(["box", "point", "polygon"]))
    regions = []
    for _ in range(draw(st.integers(0, 6))):
        phrase = draw(phrases)
        if kind == "box":
            x0, x1 = sorted(draw(st.floats(0, w)) for _ in range(2))
            y0, y1 = sorted(draw(st.floats(0, h)) for _ in range(2))
            regions.append(Box(phrase, [x0, y0, x1, y1]))
        elif kind == "point":
            regions.append(Point(phrase, [draw(st.floats(0, w)), draw(st.floats(0, h))]))
        else:
            n = draw(st.integers(3, 8))
            regions.append(Polygon(phrase, [draw(st.floats(0, w if i % 2 == 0 else h)) for i in range(2 * n)]))
    return w, h, kind, regions


def _within_one_bin(a, b, w, h):
    return all(abs(x - y) <= (w if i % 2 == 0 else h) / MAX_BIN + 1e-6 for i, (x, y) in enumerate(zip(a, b)))


# ---------------------------------------------------------------- round trips


@given(box_regions(), st.lists(phrases, max_size=3))
@settings(max_examples=300, deadline=None)
def test_round_trip_of_boxes_points_and_polygons(case, asked):
    w, h, kind, regions = case
    text = serialize(regions, w, h, phrases=asked)
    prediction = parse(text + IM_END, w, h)
    assert prediction.problems == []
    assert sorted(prediction.phrases) == sorted(set(asked) | {r.phrase for r in regions})
    assert set(prediction.absent) == set(asked) - {r.phrase for r in regions}
    # Each phrase keeps its regions, each within one bin of where it was.
    for phrase in prediction.phrases:
        originals = sorted((r.coords for r in regions if r.phrase == phrase), key=lambda c: c[:2])
        parsed = [r for r in prediction.regions if r.phrase == phrase]
        assert all(r.kind == kind for r in parsed)
        assert len(parsed) == len(originals)
        for r in parsed:
            assert any(_within_one_bin(r.coords, o, w, h) for o in originals)
    # Centre decoding re-encodes to the very same text.
    assert serialize(prediction.regions, w, h, phrases=asked) == text


@given(box_regions(kind="box"))
@settings(max_examples=100, deadline=None)
def test_boxes_of_a_phrase_are_written_by_x0(case):
    w, h, _, regions = case
    prediction = parse(serialize(regions, w, h), w, h)
    for phrase in prediction.phrases:
        x0s = [r.coords[0] for r in prediction.regions if r.phrase == phrase]
        assert x0s == sorted(x0s)


@given(box_regions(kind="box"), st.sampled_from(["ocr_box", "ocr_polygon"]))
@settings(max_examples=100, deadline=None)
def test_ocr_round_trip_keeps_each_instance_in_its_own_group(case, task):
    w, h, _, boxes = case
    regions = boxes if task == "ocr_box" else [
        Polygon(b.phrase, [b.coords[0], b.coords[1], b.coords[2], b.coords[1], b.coords[2], b.coords[3], b.coords[0], b.coords[3]])
        for b in boxes
    ]
    text = serialize(regions, w, h, task=task)
    assert text.count(REF_START) == len(regions)
    prediction = parse(text, w, h, task=task)
    assert prediction.problems == [] and len(prediction.regions) == len(regions)
    assert all(r.text == r.phrase for r in prediction.regions)
    assert serialize(prediction.regions, w, h, task=task) == text


keypoint_names = ["nose", "left eye", "right eye", "left ankle", "right ankle"]


@given(sizes, st.data())
@settings(max_examples=100, deadline=None)
def test_keypoint_round_trip(size, data):
    w, h = size
    instances = []
    for _ in range(data.draw(st.integers(0, 3))):
        coords = {
            name: None if data.draw(st.booleans()) else [data.draw(st.floats(0, w)), data.draw(st.floats(0, h))]
            for name in keypoint_names
        }
        box = sorted(data.draw(st.floats(0, w)) for _ in range(2)), sorted(data.draw(st.floats(0, h)) for _ in range(2))
        instances.append(Keypoints("person", coords, box=[box[0][0], box[1][0], box[0][1], box[1][1]]))
    fence = data.draw(st.booleans())
    from rexomni_core.grammar import serialize_keypoints

    text = serialize_keypoints(instances, w, h, fence=fence)
    prediction = parse(text + IM_END, w, h, task="keypoint")
    assert prediction.problems == []
    assert [r.instance_id for r in prediction.regions] == [f"person{i + 1}" for i in range(len(instances))]
    for parsed, original in zip(prediction.regions, instances):
        assert parsed.phrase == "person"
        assert _within_one_bin(parsed.box, original.box, w, h)
        for name in keypoint_names:
            assert (parsed.coords[name] is None) == (original.coords[name] is None)
            if original.coords[name] is not None:
                assert _within_one_bin(parsed.coords[name], original.coords[name], w, h)
    assert serialize_keypoints(prediction.regions, w, h, fence=fence) == text


# ---------------------------------------------------------------- compatibility with the released parser


@given(box_regions(), st.lists(phrases, max_size=2), st.data())
@settings(max_examples=300, deadline=None)
def test_to_official_matches_the_released_parser_on_whole_and_cut_answers(case, asked, data):
    w, h, _, regions = case
    text = serialize(regions, w, h, phrases=asked)
    # Every place where a region, a group or the whole answer ends is a clean cut point.
    cuts = [m.end() for m in re.finditer(r">(?=,)|,|<\|box_end\|>", text)] + [len(text)]
    cut = data.draw(st.sampled_from(cuts))
    answer = text[:cut] + (IM_END if cut == len(text) else "")
    ours = parse(answer, w, h, decode="official").to_official()
    assert ours == released_parser_oracle(answer, w, h)


def test_cut_answer_is_flagged_but_keeps_its_complete_regions():
    text = f"{REF_START}dog{REF_END}{BOX_START}<1><2><3><4>,<5><6><7>"
    prediction = parse(text, 999, 999)
    assert [r.coords for r in prediction.regions] == [[1.5, 2.5, 3.5, 4.5]]
    reasons = [p.reason for p in prediction.problems]
    assert "region with 3 coordinates" in reasons
    assert any("truncated" in r for r in reasons)


# ---------------------------------------------------------------- what the released model emits


@pytest.mark.parametrize(
    "text",
    [
        f"{REF_START} cat {REF_END} {BOX_START} <1><2><3><4> , <5> <6> <7> <8> {BOX_END}",
        f"{REF_START}cat{REF_END}{BOX_START}<1><2><3><4>,<5><6><7><8>{BOX_END}{IM_END}<|endoftext|>",
        f"{REF_START}cat{REF_END}{BOX_START}<1><2><3><4>,\n<5><6><7><8>{BOX_END}, ",
    ],
)
def test_whitespace_and_stop_tokens_are_accepted(text):
    prediction = parse(text, 999, 999)
    assert prediction.problems == []
    assert [r.coords[0] for r in prediction.regions] == [1.5, 5.5]


@pytest.mark.parametrize(
    "text, reason",
    [
        (f"Sure! {REF_START}cat{REF_END}{BOX_START}<1><2><3><4>{BOX_END}", "stray text ignored"),
        (f"{REF_START}cat{REF_END}{BOX_START}<1><2><3><4>{BOX_END}{IM_END}more", "text after <|im_end|> ignored"),
        (f"{REF_START}cat{REF_END}{BOX_START}<1><2><3><4>{BOX_END} and {REF_START}dog{REF_END}{BOX_START}<5><6><7><8>{BOX_END}", "stray text ignored"),
    ],
)
def test_stray_text_is_read_past_and_reported(text, reason):
    prediction = parse(text, 999, 999)
    assert prediction.regions and prediction.regions[0].coords[0] == 1.5
    assert reason in [p.reason for p in prediction.problems]


@pytest.mark.parametrize(
    "body, reason",
    [
        ("<1><2><3>", "region with 3 coordinates"),
        ("<1><2><3><4><5>", "region with 5 coordinates"),
        ("<1><2><1000><4>", "coordinate bin above 999"),
        ("<1><2>x<3><4>", "region is not a run of coordinate tokens"),
        ("<01><2><3><4>", "region is not a run of coordinate tokens"),
        ("<1><2><3><4>,None", "region is not a run of coordinate tokens"),
        ("<1><2><3><4>,", "region is not a run of coordinate tokens"),
    ],
)
def test_malformed_regions_are_dropped_and_recorded_never_guessed(body, reason):
    text = f"{REF_START}cat{REF_END}{BOX_START}{body}{BOX_END}, {REF_START}dog{REF_END}{BOX_START}<9><9><99><99>{BOX_END}"
    prediction = parse(text, 999, 999)
    assert reason in [p.reason for p in prediction.problems]
    dog = [r for r in prediction.regions if r.phrase == "dog"]
    assert len(dog) == 1 and dog[0].coords == [9.5, 9.5, 99.5, 99.5]
    cat = [r for r in prediction.regions if r.phrase == "cat"]
    assert all(len(r.coords) in (2, 4) or len(r.coords) > 4 for r in cat)
    assert len(cat) <= 1


def test_group_problems():
    cases = {
        f"{REF_START}{REF_END}{BOX_START}<1><2><3><4>{BOX_END}": "empty phrase; group dropped",
        f"{REF_START}cat{REF_END}{BOX_START}{BOX_END}": "group without regions; dropped",
        f"{REF_START}cat{BOX_START}<1><2><3><4>{BOX_END}": "phrase never closed; group dropped",
        f"{REF_START}cat{REF_END}<1><2><3><4>{BOX_END}": "text between phrase and regions ignored",
        f"{REF_START}cat{REF_END}{BOX_START}<1><2><3><4>{REF_START}dog{REF_END}{BOX_START}None{BOX_END}": "missing <|box_end|> before next group",
        f"{REF_START}cat": "answer ends inside a phrase; group dropped",
        f"{BOX_END}": "marker outside a group ignored",
    }
    for text, reason in cases.items():
        prediction = parse(text, 100, 100)
        assert reason in [p.reason for p in prediction.problems], text


def test_marker_inside_regions_does_not_join_neighbouring_tokens():
    text = f"{REF_START}cat{REF_END}{BOX_START}<1><2>{BOX_START}<3><4>{BOX_END}"
    prediction = parse(text, 999, 999)
    assert prediction.regions == []
    assert "unexpected marker inside regions" in [p.reason for p in prediction.problems]


def test_none_marks_absent_phrases_and_repeated_phrases_merge():
    text = (
        f"{REF_START}cat{REF_END}{BOX_START}<1><2><3><4>{BOX_END}, {REF_START}dog{REF_END}{BOX_START}None{BOX_END}, "
        f"{REF_START}cat{REF_END}{BOX_START}<5><6><7><8>{BOX_END}"
    )
    prediction = parse(text, 999, 999, decode="official")
    assert prediction.phrases == ["cat", "dog"] and prediction.absent == ["dog"]
    assert list(prediction.to_official()) == ["cat", "dog"]
    assert len(prediction.to_official()["cat"]) == 2


def test_keypoint_answers_malformed_pieces():
    bad = {
        "no json here": "no JSON object in keypoint answer",
        '{"person1": {"bbox": " <1> <2> <3> <4> ", "keypoints": {"nose": " <1> <2> "}': "keypoint JSON does not parse",
        '{"person1": {"bbox": " <1> <2> <3> ", "keypoints": {}}}': "instance bbox is not 4 coordinate tokens; dropped",
        '{"person1": {"keypoints": {}}}': "instance needs 'bbox' and 'keypoints'; dropped",
        "[1, 2]": "no JSON object in keypoint answer",
    }
    for text, reason in bad.items():
        prediction = parse(text, 100, 100, task="keypoint")
        assert any(p.reason.startswith(reason) for p in prediction.problems), text
        assert prediction.regions == []
    text = '{"person1": {"bbox": " <1> <2> <3> <4> ", "keypoints": {"nose": "<1>", "left eye": "unvisible", "right eye": " <5> <6> "}}}'
    (person,) = parse(text, 999, 999, task="keypoint").regions
    assert person.coords == {"left eye": None, "right eye": [5.5, 6.5]}


def test_bad_caller_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="width"):
        parse("x", 0, 10)
    with pytest.raises(ValueError, match="decode"):
        parse("x", 10, 10, decode="floor")
    with pytest.raises(ValueError, match="unknown task"):
        parse("x", 10, 10, task="segmentation")


def test_non_text_answer_is_a_problem_not_a_crash():
    prediction = parse(None, 10, 10)  # type: ignore[arg-type]
    assert prediction.regions == [] and prediction.problems[0].reason == "answer is not text"


# ---------------------------------------------------------------- fuzz

_PIECES = [REF_START, REF_END, BOX_START, BOX_END, IM_END, "<|endoftext|>", "None", ",", ", ", " ", "\n",
           "<0>", "<999>", "<1000>", "<12>", "<007>", "<", ">", "<|", "|>", "cat", "{", "}", '"', "```json",
           '"bbox": ', '"keypoints": ', '"unvisible"', "person1", ":", "\\", "\x00", "é"]


def _fuzz_strings(n: int, seed: int = 0):
    rng = random.Random(seed)
    w, h = 640, 480
    seeds = [
        serialize([Box("cat", [10, 20, 300, 400]), Box("dog", [50, 60, 70, 80])], w, h, phrases=["cow"]),
        serialize([Point("cat", [10, 20])], w, h, task="pointing"),
        serialize([Polygon("EXIT", [1, 2, 30, 4, 50, 60, 7, 80])], w, h, task="ocr_polygon"),
        '```json\n{"person1": {"bbox": " <1> <2> <300> <400> ", "keypoints": {"nose": " <5> <6> ", "left eye": "unvisible"}}}\n```',
    ]
    for i in range(n):
        kind = i % 3
        if kind == 0:  # random soup of grammar pieces
            text = "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 40)))
        elif kind == 1:  # random characters
            text = "".join(chr(rng.randint(0, 0x2FF)) for _ in range(rng.randint(0, 80)))
        else:  # a valid answer, mutated
            chars = list(rng.choice(seeds))
            for _ in range(rng.randint(1, 6)):
                op, at = rng.randint(0, 2), rng.randint(0, max(len(chars) - 1, 0))
                if op == 0 and chars:
                    del chars[at]
                elif op == 1:
                    chars.insert(at, rng.choice(_PIECES))
                else:
                    chars = chars[:at]
            text = "".join(chars)
        yield text


_TASKS = ("detection", "pointing", "ocr_polygon", "keypoint")
_LONG_NUMBER = "1" * 5000  # Python refuses int() of a string of over 4300 digits
# Inputs that once took seconds (nested quantifiers backtracking) or raised, and their relatives.
_ADVERSARIAL = [
    "```json" + " " * 4000,
    "```" + "\n" * 4000,
    "```json" + " " * 4000 + "x",
    "```" * 4000,
    "```json\n{" * 2000,
    f"{REF_START}cat{REF_END}{BOX_START}<{_LONG_NUMBER}><1><2><3>{BOX_END}",
    f"{REF_START}cat{REF_END}{BOX_START}<1><2><3><{'0' * 5000}5>{BOX_END}",
    '{"person1": {"bbox": " <' + _LONG_NUMBER + '> <2> <3> <4> ", "keypoints": {"nose": " <' + _LONG_NUMBER + '> <5> "}}}',
    "<" * 100_000,
    "<" + "9" * 100_000,
    REF_START * 20_000,
    f"{REF_START}cat{REF_END}{BOX_START}" + "<1>" * 50_000 + f"{BOX_START}" * 20_000,
    "{" * 50_000 + "}" * 50_000,
]


def _xy_pairs(region):
    """Every (x, y) a region holds: a keypoint instance's box corners and visible keypoints too."""
    if region.kind == "keypoints":
        flat = region.box + [v for xy in region.coords.values() if xy for v in xy]
    else:
        flat = region.coords
    return zip(flat[0::2], flat[1::2])


def test_fuzz_never_raises_and_is_fast():
    cases = [(text, _TASKS[i % 4]) for i, text in enumerate(_fuzz_strings(12_000))]
    cases += [(text, task) for text in _ADVERSARIAL for task in _TASKS]
    start = time.perf_counter()
    for i, (text, task) in enumerate(cases):
        prediction = parse(text, 640, 480, task=task, decode=("center", "official")[i % 2])
        for region in prediction.regions:  # whatever is kept is a valid region in the image
            assert all(0 <= x <= 640 and 0 <= y <= 480 for x, y in _xy_pairs(region))
        prediction.to_official()
    elapsed = time.perf_counter() - start
    print(f"parsed {len(cases)} fuzzed strings in {elapsed:.2f} s")
    assert elapsed < 5.0



@pytest.mark.parametrize("task", _TASKS)
@pytest.mark.parametrize("text", _ADVERSARIAL, ids=range(len(_ADVERSARIAL)))
def test_adversarial_text_parses_in_linear_time(text, task):
    # ≈ 0.1 s each on one idle core; the bound is generous for a loaded CI machine and still far
    # below the cubic fence regex (45-64 s on the first input).
    start = time.perf_counter()
    parse(text, 640, 480, task=task).to_official()
    assert time.perf_counter() - start < 5.0


def test_a_coordinate_too_long_for_a_bin_drops_its_region_and_keeps_the_rest():
    text = f"{REF_START}cat{REF_END}{BOX_START}<{_LONG_NUMBER}><1><2><3>,<9><9><99><99>{BOX_END}"
    prediction = parse(text, 999, 999)
    assert [r.coords for r in prediction.regions] == [[9.5, 9.5, 99.5, 99.5]]
    assert [p.reason for p in prediction.problems] == ["coordinate bin above 999"]
    keypoints = '{"person1": {"bbox": " <1> <2> <30> <40> ", "keypoints": {"nose": " <' + _LONG_NUMBER + '> <5> "}}}'
    (person,) = parse(keypoints, 999, 999, task="keypoint").regions
    assert person.coords == {}


_OLD_JSON_FENCE = re.compile(r"```(?:json)?\s*(.*?)\s*```", re.DOTALL)  # the former, backtracking rule


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["`", "```", "json", "js", " ", "\n", "\u00a0", "\x1c", "{", "}", "x", '"a"', ":"]), max_size=14))
def test_fenced_json_reads_what_the_former_regex_read(pieces):
    from rexomni_core.grammar import _fenced_json

    body = "".join(pieces)
    old = _OLD_JSON_FENCE.search(body)
    assert _fenced_json(body) == (old.group(1) if old else None)

def test_parse_command_prints_regions_and_the_official_shape(capsys, shared):
    from rexomni_core.cli import main

    case = json.loads((shared / "fixtures" / "parse_examples.json").read_text())["cases"][0]
    assert main(["parse", "--width", str(case["width"]), "--height", str(case["height"]), "--official", case["text"]]) == 0
    assert json.loads(capsys.readouterr().out) == case["expected"]
    assert main(["parse", "--width", "1280", "--height", "720", case["text"]]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["absent"] == ["laptop"] and printed["problems"] == []
    assert printed["regions"][0]["coords"][0] == pytest.approx(12.5 / 999 * 1280)


def test_parse_command_reports_bad_size_in_one_line(capsys):
    from rexomni_core.cli import main

    assert main(["parse", "--width", "0", "--height", "10", "x"]) == 2
    assert "image width must be a positive number" in capsys.readouterr().err


def test_non_ascii_digits_are_not_coordinates():
    # int() reads Arabic-Indic digits, so a permissive regex once took "<١٣>" for bin 13.
    text = f"{REF_START}cat{REF_END}{BOX_START}<١><٢><٣><٤>{BOX_END}"
    prediction = parse(text, 100, 100)
    assert prediction.regions == [] and prediction.problems
