"""Generation-time logic: the keyword arguments of `generate`, coordinate-mass decoding, and
grammar-constrained decoding.

Constrained decoding runs a small token-level automaton per answer beside `generate`
(`GrammarConstraint`): at every step it masks every token the answer grammar of FORMAT.md does
not allow there, for the task and the phrases asked. Literal text is allowed only in its
canonical tokenization (the pieces between marker and coordinate tokens, each tokenized whole, as
training targets are), so a model writes what it was trained to write, or nothing.

What the groups grammar (every task but keypoints) constrains:
- phrases only from those asked, each at most once, in any order (a phrase is several tokens:
  the automaton walks the token sequences of the phrases still unanswered); OCR phrases, which
  are the text read, are any plain text (no marker or coordinate token), non-blank, bounded;
- coordinates only inside `<|box_start|>…<|box_end|>`, in runs of the task's length (box 4,
  point 2, polygon an even number ≥ 6), with x1 ≥ x0 and y1 ≥ y0 for boxes; no box whose IoU
  with one already written for the same phrase exceeds `AnswerLimits.duplicate_iou`, no point
  identical to one already written (OCR: against every earlier region, whatever its text);
  polygons are not checked for duplicates;
- `None` only as a whole group (not for OCR); OCR groups hold one region each;
- `max_regions` per answer and per phrase; `<|im_end|>` only once every asked phrase has its
  group (OCR: at any group boundary), or once the answer holds `max_regions` regions.
What the keypoint grammar constrains: the whole JSON text as `grammar.serialize_keypoints`
writes it (json.dumps spacing, with or without a ```json fence, instance names
`<category><n>` numbered in order, the schema's keypoint names in schema order, each a point or
"unvisible"), boxes as above. It does not accept other layouts (indentation, other key orders).

Both grammars finish inside `max_new_tokens`: each state knows the fewest tokens that still
complete the answer, and when the budget runs short only moves that leave enough are allowed, so
no answer is cut off mid-group.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList, RepetitionPenaltyLogitsProcessor

from ..coords import NUM_BINS
from ..geometry import box_iou_matrix
from ..grammar import BOX_END, BOX_START, IM_END, NONE_ANSWER, REF_END, REF_START, UNVISIBLE
from ..tasks import Task
from .configuration import DEFAULT_GENERATION


class CoordinateMassProcessor(LogitsProcessor):
    """Inside `<|box_start|>…<|box_end|>`, decide *whether* to write a coordinate by the summed
    probability of all bins, then which bin as usual: where the bins together outweigh the
    likeliest other token, every other token is masked; otherwise the bins are. Elsewhere (phrases,
    separators) decoding is untouched. A model sure of its bins decodes exactly as plain greedy."""

    def __init__(self, coordinate_ids: Sequence[int], box_start_id: int, box_end_id: int):
        self.coordinate_ids = torch.as_tensor(list(coordinate_ids))
        self.box_start_id, self.box_end_id = box_start_id, box_end_id
        self._is_coordinate: torch.Tensor | None = None  # vocabulary mask, built at the first step
        self._span = coordinate_span(coordinate_ids)

    def _coordinate_mask(self, vocab_size: int, device: torch.device) -> torch.Tensor:
        mask = self._is_coordinate
        if mask is None or mask.shape[0] != vocab_size or mask.device != device:
            mask = torch.zeros(vocab_size, dtype=torch.bool, device=device)
            mask[self.coordinate_ids.to(device)] = True
            self._is_coordinate = mask
        return mask

    def _inside_box(self, tokens: list[int]) -> bool:
        """Whether the latest box marker of `tokens` opens a box (a scan back to it: a few tokens)."""
        for token in reversed(tokens):
            if token == self.box_end_id:
                return False
            if token == self.box_start_id:
                return True
        return False

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        inside = [self._inside_box(row) for row in input_ids.tolist()]
        if not any(inside):
            return scores  # phrases and separators: nothing to decide
        inside_box = torch.tensor(inside, device=scores.device)[:, None]
        is_coordinate = self._coordinate_mask(scores.shape[-1], scores.device)
        probs = scores.float().softmax(dim=-1)
        if self._span is not None:  # the same sum and maximum, read in place
            coordinate_mass = probs[:, self._span].sum(dim=-1)
            others = [part for part in (probs[:, : self._span.start], probs[:, self._span.stop:]) if part.shape[1]]
            best_other = torch.stack([part.max(dim=-1).values for part in others]).max(dim=0).values
        else:
            coordinate_mass = probs[:, self.coordinate_ids.to(scores.device)].sum(dim=-1)
            best_other = probs.masked_fill(is_coordinate, 0).max(dim=-1).values
        write_coordinate = (coordinate_mass > best_other)[:, None]
        banned = torch.where(write_coordinate, ~is_coordinate, is_coordinate) & inside_box
        return scores.masked_fill(banned, float("-inf"))


def coordinate_span(coordinate_ids: Sequence[int]) -> slice | None:
    """The coordinate ids as one slice of the vocabulary when they are an ascending run (nano's
    `<0>`…`<999>` are, added in order), so a step reads the bins' scores in place rather than
    gathering them; None otherwise."""
    ids = [int(i) for i in coordinate_ids]
    if ids and ids == list(range(ids[0], ids[0] + len(ids))):
        return slice(ids[0], ids[0] + len(ids))
    return None


def generation_settings(checkpoint_max_new_tokens: int | None, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`generate`'s keyword arguments: the released demo's decoding with the checkpoint's own
    max_new_tokens when it sets one, then the caller's `overrides`."""
    settings = dict(DEFAULT_GENERATION)
    if checkpoint_max_new_tokens:
        settings["max_new_tokens"] = checkpoint_max_new_tokens
    settings.update(overrides)
    return settings


def with_processors(
    settings: Mapping[str, Any],
    recorder: LogitsProcessor | None = None,
    constraint: LogitsProcessor | None = None,
    coordinate_mass: CoordinateMassProcessor | None = None,
    prompt_padding: torch.Tensor | None = None,
) -> dict[str, Any]:
    """`settings` with this package's logits processors, run in this order: `recorder` (it must
    see the model's own logits), the repetition penalty, the caller's `logits_processor`s,
    `constraint`, `coordinate_mass` (which then weighs only the tokens the grammar allows).

    With a recorder the repetition penalty moves from `generate` (which would run it before every
    custom processor) into this list; `prompt_padding`, the left padding of each row, keeps it off
    the padding as `generate`'s own does. The tokens are those `generate` would choose itself.
    """
    settings = dict(settings)
    processors = LogitsProcessorList()
    if recorder is not None:
        processors.append(recorder)
        penalty = settings.get("repetition_penalty")
        settings["repetition_penalty"] = 1.0  # also overrides a penalty in the checkpoint's generation_config
        if penalty is not None and penalty != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(penalty, prompt_ignore_length=prompt_padding))
    processors.extend(settings.get("logits_processor") or [])
    processors.extend(p for p in (constraint, coordinate_mass) if p is not None)
    if processors:
        settings["logits_processor"] = processors
    return settings


# --------------------------------------------------------------------------- constrained decoding

# Two boxes of one phrase overlapping more than this are one object written twice (the looping
# failure of fine-tuned checkpoints); genuinely distinct objects of one class rarely do.
DUPLICATE_IOU = 0.9


@dataclass(frozen=True)
class AnswerLimits:
    """Bounds the grammar puts on an answer (None: unbounded)."""

    max_regions: int | None = None  # per answer (keypoints: instances)
    max_regions_per_phrase: int | None = None
    duplicate_iou: float = DUPLICATE_IOU
    max_phrase_tokens: int = 48  # OCR text of one group
    max_polygon_coordinates: int = 64  # 32 vertices


class AnswerVocabulary:
    """What the automata need of a tokenizer: marker ids, coordinate ids and bins, the canonical
    tokens of literal text, and which tokens are plain text. Built once per model."""

    def __init__(self, tokenizer, coordinate_ids: Sequence[int]):
        self.tokenizer = tokenizer
        ids = tokenizer.convert_tokens_to_ids([REF_START, REF_END, BOX_START, BOX_END, IM_END])
        self.ref_start, self.ref_end, self.box_start, self.box_end, self.im_end = ids
        self.coordinate_ids = torch.as_tensor(list(coordinate_ids), dtype=torch.long)
        self.bin_of = {int(token): b for b, token in enumerate(coordinate_ids)}
        self.region_separator = self.encode(",")
        self.group_separator = self.encode(", ")
        self.none_answer = self.encode(NONE_ANSWER)
        self.markers = frozenset((self.ref_start, self.ref_end, self.box_start, self.box_end))

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one vocabulary per model, as long-lived
    def encode(self, text: str) -> tuple[int, ...]:
        """The canonical tokens of a piece of literal text."""
        return tuple(self.tokenizer.encode(text, add_special_tokens=False))

    @functools.lru_cache(maxsize=65536)  # noqa: B019
    def is_blank(self, token: int) -> bool:
        """Whether a token is whitespace only (the parser reads `<1> <2>` as one region)."""
        return not self.tokenizer.decode([token]).strip()

    @functools.cached_property
    def _plain_text(self) -> torch.Tensor:
        """Mask of the tokens free text (OCR) is made of: all but added tokens (markers, the
        chat's control tokens) and coordinates."""
        plain = torch.ones(len(self.tokenizer), dtype=torch.bool)
        plain[list(self.tokenizer.added_tokens_decoder)] = False
        plain[self.coordinate_ids] = False
        return plain

    def plain_text_move(self) -> Move:
        return Move(self._plain_text, int(self._plain_text.nonzero()[0]))

    @functools.cached_property
    def _visible_text(self) -> torch.Tensor:
        """Plain-text tokens that are not blank (decoded once, the first time OCR is constrained)."""
        ids = self._plain_text.nonzero().flatten().tolist()
        visible = torch.zeros_like(self._plain_text)
        visible[[i for i, text in zip(ids, self.tokenizer.batch_decode([[i] for i in ids])) if text.strip()]] = True
        return visible

    def visible_text_move(self) -> Move:
        return Move(self._visible_text, int(self._visible_text.nonzero()[0]))


@dataclass(frozen=True)
class Move:
    """Tokens that lead to the same next state (up to the bin a coordinate token writes): `ids`
    (token ids, or a boolean mask over the tokenizer's vocabulary) and one `example` of them."""

    ids: torch.Tensor
    example: int

    def allows(self, token: int) -> bool:
        if self.ids.dtype == torch.bool:
            return token < len(self.ids) and bool(self.ids[token])
        return bool((self.ids == token).any())


def _tokens(*ids: int) -> Move:
    return Move(_id_tensor(ids), ids[0])


@functools.lru_cache(maxsize=4096)
def _id_tensor(ids: tuple[int, ...]) -> torch.Tensor:
    return torch.tensor(ids, dtype=torch.long)


class _Automaton:
    """A token-level automaton over one answer: `moves()` now, `advance(token)`, and `cost()`,
    the fewest tokens that still complete the answer (0 once `<|im_end|>` is written). Its fields
    are immutable values, so a shallow copy is an independent state (used to price moves)."""

    done = False
    vocab: AnswerVocabulary
    limits: AnswerLimits
    _offered: list[Move] | None = None

    def moves(self) -> list[Move]:
        raise NotImplementedError

    def _advance(self, token: int) -> None:
        raise NotImplementedError

    def cost(self) -> int:
        raise NotImplementedError

    def slack(self) -> int:
        """An upper bound on how much one token can raise `cost()` beyond the one it spends."""
        raise NotImplementedError

    def offer(self, budget: int) -> list[Move]:
        """The moves after which the answer can still finish within `budget` tokens (this one
        included); the cheapest moves when none can. `advance` then takes only one of them."""
        moves = self.moves()
        if budget <= self.cost() + self.slack():
            costs = []
            for move in moves:
                probe = copy.copy(self)
                probe._offered = None
                probe.advance(move.example)
                costs.append(probe.cost())
            affordable = [move for move, cost in zip(moves, costs) if 1 + cost <= budget]
            moves = affordable or [move for move, cost in zip(moves, costs) if cost == min(costs)]
        self._offered = moves
        return moves

    def advance(self, token: int) -> None:
        """Take the token written. One the grammar did not offer (every token was masked, or
        another processor forced it) ends the constraint for this answer."""
        if self.done:
            return
        offered, self._offered = self._offered, None
        if offered is not None and not any(move.allows(token) for move in offered):
            self.done = True
            return
        self._advance(token)

    # --- coordinates shared by both grammars

    def _coordinate_move(self, lowest: int = 0, banned: np.ndarray | None = None) -> Move:
        """Coordinate tokens of the bins from `lowest` up, but those `banned` (bool over bins)."""
        ids = self.vocab.coordinate_ids[lowest:]  # a view: coordinate ids are held in bin order
        if banned is not None and banned[lowest:].any():
            ids = ids[~torch.from_numpy(banned[lowest:])]
        return Move(ids, int(ids[0]))

    def _box_coordinate_move(self, written: tuple[int, ...], earlier: Sequence[tuple[int, ...]]) -> Move:
        """The next bin of a box: x1 ≥ x0 and y1 ≥ y0, and the finished box no duplicate of
        an `earlier` box (IoU above the limit, or identical)."""
        k = len(written)
        if k < 2:
            return self._coordinate_move()
        lowest = written[k - 2]
        if k < 3 or not earlier:
            return self._coordinate_move(lowest)
        x0, y0, x1 = written
        candidates = np.column_stack([np.full(NUM_BINS, x0), np.full(NUM_BINS, y0), np.full(NUM_BINS, x1), np.arange(NUM_BINS)])
        previous = np.asarray(earlier, dtype=np.float64)
        duplicate = (box_iou_matrix(candidates, previous) > self.limits.duplicate_iou).any(axis=1)
        duplicate |= (candidates[:, None, :] == previous[None, :, :]).all(axis=2).any(axis=1)
        duplicate[y0] &= not duplicate[y0:].all()  # every y1 repeats a box: the box must still end
        return self._coordinate_move(lowest, duplicate)


def _under(limit: int | None, count: int) -> bool:
    return limit is None or count < limit


class GroupAnswer(_Automaton):
    """The groups grammar: `<|object_ref_start|>phrase<|object_ref_end|><|box_start|>regions
    <|box_end|>` joined by ", ", then `<|im_end|>` (every task but keypoints)."""

    def __init__(self, vocab: AnswerVocabulary, task: Task, phrases: Sequence[str], limits: AnswerLimits):
        self.vocab, self.limits = vocab, limits
        self.free_text = task.ocr
        self.polygon = task.region_kind == "polygon"
        self.length = {"box": 4, "point": 2, "polygon": 6}[task.region_kind]  # polygons: at least
        self.phrase_tokens = {} if self.free_text else {p: vocab.encode(p) for p in dict.fromkeys(phrases)}
        self.unanswered = tuple(self.phrase_tokens)
        self.mode = "open"
        self.first_group = True
        self.chunk: tuple[int, ...] = ()  # literal tokens still to write, then `after_chunk`
        self.after_chunk = ""
        self.phrase = ""  # the group's phrase (OCR: its tokens as text are not needed)
        self.prefix: tuple[int, ...] = ()  # tokens of the phrase written so far
        self.region: tuple[int, ...] = ()  # bins of the region being written
        self.regions: tuple[tuple[str, tuple[int, ...]], ...] = ()  # (phrase, bins) written
        self.none_length = len(vocab.none_answer) if not self.free_text else None

    # --- bookkeeping

    def _count(self, phrase: str | None = None) -> int:
        return sum(1 for p, _ in self.regions if phrase is None or p == phrase)

    def _cap_reached(self) -> bool:
        return not _under(self.limits.max_regions, self._count())

    def _can_open(self) -> bool:
        return not self._cap_reached() and (self.free_text or bool(self.unanswered))

    def _can_end(self) -> bool:
        return self.free_text or not self.unanswered or self._cap_reached()

    def _region_complete(self) -> bool:
        k = len(self.region)
        return k >= self.length and k % 2 == 0 if self.polygon else k == self.length

    def _can_add_region(self) -> bool:
        """Another region in this group, after the one just completed."""
        return (
            not self.free_text
            and _under(self.limits.max_regions, self._count() + 1)
            and _under(self.limits.max_regions_per_phrase, self._count(self.phrase) + 1)
        )

    def _earlier(self) -> list[tuple[int, ...]]:
        """Regions the current one must not duplicate (OCR: all, else those of its phrase)."""
        return [bins for p, bins in self.regions if self.free_text or p == self.phrase]

    # --- moves

    def moves(self) -> list[Move]:
        v = self.vocab
        mode = self.mode
        if mode == "chunk":
            return [_tokens(self.chunk[0])]
        if mode == "open":
            moves = []
            if self._can_open():
                moves.append(_tokens(v.ref_start if self.first_group else v.group_separator[0]))
            if self._can_end():
                moves.append(_tokens(v.im_end))
            return moves
        if mode == "phrase":
            return self._phrase_moves()
        if mode == "box_start":
            return [_tokens(v.box_start)]
        if mode == "regions_open":
            first = [self._region_coordinate_move()]
            return first + ([_tokens(v.none_answer[0])] if self.none_length else [])
        # mode == "region"
        moves = []
        k = len(self.region)
        if not self._region_complete() or (self.polygon and k < self.limits.max_polygon_coordinates):
            moves.append(self._region_coordinate_move())
        if self._region_complete():
            if self._can_add_region():
                moves.append(_tokens(v.region_separator[0]))
            moves.append(_tokens(v.box_end))
        return moves

    def _phrase_moves(self) -> list[Move]:
        v = self.vocab
        if self.free_text:
            # OCR text opens with a visible token (a blank phrase would be dropped by the parser).
            if not self.prefix:
                return [v.visible_text_move()]
            moves = [v.plain_text_move()] if len(self.prefix) < self.limits.max_phrase_tokens else []
            return moves + [_tokens(v.ref_end)]
        depth = len(self.prefix)
        following = []
        ends = False
        for phrase in self.unanswered:
            tokens = self.phrase_tokens[phrase]
            if tokens[:depth] == self.prefix:
                if len(tokens) == depth:
                    ends = True
                elif tokens[depth] not in following:
                    following.append(tokens[depth])
        # One move for all next tokens of the phrases: which phrase comes first does not change
        # how many tokens the answer still needs (every unanswered phrase gets a group).
        moves = [_tokens(*following)] if following else []
        return moves + ([_tokens(v.ref_end)] if ends else [])

    def _region_coordinate_move(self) -> Move:
        if self.length == 4:
            return self._box_coordinate_move(self.region, self._earlier())
        if self.length == 2 and len(self.region) == 1:  # no point identical to an earlier one
            taken = np.zeros(NUM_BINS, dtype=bool)
            for bins in self._earlier():
                if bins[0] == self.region[0]:
                    taken[bins[1]] = True
            return self._coordinate_move(banned=None if taken.all() else taken)  # all taken: nothing distinct is left
        return self._coordinate_move()

    # --- transitions

    def _advance(self, token: int) -> None:
        v = self.vocab
        mode = self.mode
        if mode == "chunk":
            self.chunk = self.chunk[1:]
            if not self.chunk:
                self._enter(self.after_chunk)
        elif mode == "open":
            if token == v.im_end:
                self.done = True
            elif token == v.ref_start:
                self._enter("phrase")
            else:
                self._start_chunk(v.group_separator[1:] + (v.ref_start,), "phrase")
        elif mode == "phrase":
            if token == v.ref_end:
                if not self.free_text:
                    self.phrase = next(p for p in self.unanswered if self.phrase_tokens[p] == self.prefix)
                    self.unanswered = tuple(p for p in self.unanswered if p != self.phrase)
                self.mode = "box_start"
            else:
                self.prefix += (token,)
        elif mode == "box_start":
            self.mode = "regions_open"
        elif mode == "regions_open" and token not in v.bin_of:
            self._start_chunk(v.none_answer[1:] + (v.box_end,), "open")
        elif token in v.bin_of:
            self.mode = "region"
            self.region += (v.bin_of[token],)
        else:  # closing the region: another one, or the group's end
            self.regions += ((self.phrase, self.region),)
            self.region = ()
            if token == v.box_end:
                self._enter("open")
            else:
                self._start_chunk(v.region_separator[1:], "region")

    def _start_chunk(self, tokens: tuple[int, ...], after: str) -> None:
        if tokens:
            self.mode, self.chunk, self.after_chunk = "chunk", tokens, after
        else:
            self._enter(after)

    def _enter(self, mode: str) -> None:
        if mode == "open":
            self.first_group = False
        elif mode == "phrase":
            self.prefix, self.phrase = (), ""
        self.mode = mode

    # --- cost

    def _regions_cost(self) -> int:
        """Fewest tokens of a group's regions: `None`, or one region, whichever is shorter."""
        return min(self.none_length, self.length) if self.none_length else self.length

    def _group_cost(self, phrase_tokens: int) -> int:
        return 1 + phrase_tokens + 1 + 1 + self._regions_cost() + 1  # ref, phrase, ref, box, …, box end

    def _rest_cost(self, unanswered: Sequence[str], first: bool) -> int:
        """Tokens from a group boundary to the end: a group for every unanswered phrase."""
        if self.free_text or not unanswered or self._cap_reached():
            return 1
        separators = len(self.vocab.group_separator) * (len(unanswered) - (1 if first else 0))
        return sum(self._group_cost(len(self.phrase_tokens[p])) for p in unanswered) + separators + 1

    def cost(self) -> int:
        if self.done:
            return 0
        after_group = self._rest_cost(self.unanswered, first=False)
        mode = self.mode
        if mode == "chunk":
            return len(self.chunk) + self._cost_entering(self.after_chunk)
        if mode == "open":
            return self._rest_cost(self.unanswered, self.first_group)
        if mode == "phrase":
            return self._phrase_cost()
        if mode == "box_start":
            return 1 + self._regions_cost() + 1 + after_group
        if mode == "regions_open":
            return self._regions_cost() + 1 + after_group
        k = len(self.region)
        missing = max(self.length - k, k % 2) if self.polygon else self.length - k
        return missing + 1 + after_group

    def _cost_entering(self, mode: str) -> int:
        if mode == "open":
            return self._rest_cost(self.unanswered, first=False)
        if mode == "region":
            return self.length + 1 + self._rest_cost(self.unanswered, first=False)
        return self._phrase_cost(start=True)

    def _phrase_cost(self, start: bool = False) -> int:
        depth = 0 if start else len(self.prefix)
        if self.free_text:
            return (0 if self.prefix and not start else 1) + 1 + 1 + self.length + 1 + 1
        prefix = () if start else self.prefix
        return min(
            len(tokens) - depth + 2 + self._regions_cost() + 1
            + self._rest_cost(tuple(q for q in self.unanswered if q != p), first=False)
            for p, tokens in self.phrase_tokens.items()
            if p in self.unanswered and tokens[:depth] == prefix
        )

    def slack(self) -> int:
        # The dearest single token: "," (a region more), OCR's opening of a group, or a region
        # written where `None` is shorter.
        v = self.vocab
        group = len(v.group_separator) + self._group_cost(self.limits.max_phrase_tokens if self.free_text else 1)
        return len(v.region_separator) + self.length + group + 2


class KeypointAnswer(_Automaton):
    """The keypoint JSON of FORMAT.md as `grammar.serialize_keypoints` writes it. Between two
    coordinate tokens the text is one of a few literal chunks (which keypoints are "unvisible",
    whether another instance follows), each tokenized whole; the automaton walks their tokens."""

    def __init__(self, vocab: AnswerVocabulary, categories: Sequence[str], keypoint_names: Sequence[str],
                 limits: AnswerLimits):
        self.vocab, self.limits = vocab, limits
        self.categories = tuple(dict.fromkeys(categories))
        self.names = tuple(keypoint_names)
        self.fence = False
        self.instances: tuple[tuple[str, tuple[int, ...]], ...] = ()  # (category, box bins)
        self.category = ""
        self.box: tuple[int, ...] = ()
        self.position: tuple = ()  # the coordinate being written: ("box",) or ("keypoint", k, axis)
        self.mode = "chunk"  # or "coordinate", or "end" (only <|im_end|> is left)
        self.alternatives = self._chunks(("start",))  # the chunks still consistent with what is written
        self.depth = 0  # tokens of the chunk written so far

    def _chunks(self, where: tuple) -> tuple[tuple[tuple[int, ...], tuple], ...]:
        """The literal chunks that may follow `where` (see `_keypoint_chunks`), naming the next
        instance of each category that may still open one."""
        if not _under(self.limits.max_regions, len(self.instances)):
            openable = ()
        else:
            counts = {c: sum(1 for i, _ in self.instances if i == c) for c in self.categories}
            openable = tuple(
                (c, f"{c}{counts[c] + 1}") for c in self.categories if _under(self.limits.max_regions_per_phrase, counts[c])
            )
        return _keypoint_chunks(self.vocab, self.names, where, self.fence, openable)

    # --- moves and transitions

    def moves(self) -> list[Move]:
        if self.mode == "coordinate":
            if self.position[0] == "box":
                return [self._box_coordinate_move(self.box, [b for c, b in self.instances if c == self.category])]
            return [self._coordinate_move()]
        if self.mode == "end":
            return [_tokens(self.vocab.im_end)]
        # One move per next token: chunks that part here may lead to answers of other lengths.
        following, moves = [], []
        for tokens, then in self.alternatives:
            if len(tokens) > self.depth:
                if tokens[self.depth] not in following:
                    following.append(tokens[self.depth])
            else:  # this chunk is complete: what follows it
                after = copy.copy(self)
                after._take(then)
                moves += after.moves()
        return [_tokens(token) for token in following] + moves

    def _advance(self, token: int) -> None:
        if self.mode == "end":
            self.done = True
        elif self.mode == "coordinate":
            self._write_bin(self.vocab.bin_of[token])
        else:
            continuing = tuple(
                (tokens, then) for tokens, then in self.alternatives if len(tokens) > self.depth and tokens[self.depth] == token
            )
            if continuing:
                self.alternatives, self.depth = continuing, self.depth + 1
                return
            # The chunk is complete (exactly one alternative is, the tokens being distinct).
            self._take(next(then for tokens, then in self.alternatives if len(tokens) == self.depth))
            self._advance(token)

    def _take(self, then: tuple) -> None:
        """Go where a written chunk leads."""
        if then[0] == "end":
            self.mode = "end"
            return
        if then[0] == "instance":
            _, self.category, self.fence = then
            self.box, self.position = (), ("box",)
        elif then[0] == "keypoint" and len(then) == 2:  # a visible keypoint: its x comes next
            self.position = ("keypoint", then[1], 0)
        self.mode = "coordinate"  # (or the next bin of the same box or point)

    def _write_bin(self, bin_index: int) -> None:
        if self.position[0] == "box":
            self.box += (bin_index,)
            where = ("box", len(self.box) - 1)
            if len(self.box) == 4:
                self.instances += ((self.category, self.box),)
        else:
            where = self.position
            self.position = ("keypoint", where[1], 1)
        self.mode, self.alternatives, self.depth = "chunk", self._chunks(where), 0

    # --- cost

    def cost(self) -> int:
        if self.done:
            return 0
        if self.mode == "end":
            return 1
        if self.mode == "coordinate":
            where = ("box", len(self.box)) if self.position[0] == "box" else self.position
            return 1 + _fewest_after(self.vocab, self.names, where, self.fence)
        return min(
            len(tokens) - self.depth + _cost_of(self.vocab, self.names, then, self.fence)
            for tokens, then in self.alternatives
        )

    def slack(self) -> int:
        # The dearest single token opens an instance (its box, then every keypoint "unvisible").
        instance = _cost_of(self.vocab, self.names, ("instance", "", self.fence), self.fence)
        longest = max(len(tokens) for tokens, _ in _keypoint_chunks(self.vocab, self.names, ("box", 3), self.fence, ()))
        return 2 * (instance + longest) + 4


@functools.lru_cache(maxsize=1024)
def _keypoint_chunks(
    vocab: AnswerVocabulary, names: tuple[str, ...], where: tuple, fence: bool, openable: tuple[tuple[str, str], ...]
) -> tuple[tuple[tuple[int, ...], tuple], ...]:
    """Every literal chunk that may follow `where` in a keypoint answer, tokenized whole, with
    where it leads. `where`: ("start",), ("box", j) after bin j of a box, ("keypoint", k, axis)
    after a keypoint's bin; `openable`: (category, instance name) of each instance that may open.
    Chunks lead to ("instance", category, fence), ("keypoint", k) (visible: its x comes next),
    ("box", j) / ("keypoint", k, 1) (the next bin of the same box or point), or ("end",)."""

    def opening(prefix: str, fence_: bool) -> list[tuple[str, tuple]]:
        return [(f'{prefix}{json.dumps(name)}: {{"bbox": " ', ("instance", category, fence_)) for category, name in openable]

    if where == ("start",):
        texts = []
        for fence_ in (False, True):
            head, tail = ("```json\n", "\n```") if fence_ else ("", "")
            texts += opening(head + "{", fence_) + [(head + "{}" + tail, ("end",))]
    elif where[0] == "box" and where[1] < 3:
        texts = [(" ", ("box", where[1] + 1))]
    elif where[0] == "keypoint" and where[2] == 0:
        texts = [(" ", ("keypoint", where[1], 1))]
    else:  # after a box or a whole keypoint: the next visible keypoint, or the instance's end
        lead, first = (' ", "keypoints": {', 0) if where[0] == "box" else (' "', where[1] + 1)
        texts = []
        for k in range(first, len(names)):
            entries = [f'{json.dumps(n)}: "{UNVISIBLE}"' for n in names[first:k]] + [f'{json.dumps(names[k])}: " ']
            texts.append((lead + (", " if first else "") + ", ".join(entries), ("keypoint", k)))
        hidden = [f'{json.dumps(n)}: "{UNVISIBLE}"' for n in names[first:]]
        closed = lead + (", " if first and hidden else "") + ", ".join(hidden) + "}}"
        texts += opening(closed + ", ", fence) + [(closed + "}" + ("\n```" if fence else ""), ("end",))]
    return tuple((vocab.encode(text), then) for text, then in texts)


@functools.lru_cache(maxsize=1024)
def _fewest_after(vocab: AnswerVocabulary, names: tuple[str, ...], where: tuple, fence: bool) -> int:
    """Fewest tokens that complete a keypoint answer after the bin at `where`, opening no
    further instance."""
    chunks = _keypoint_chunks(vocab, names, where, fence, ())
    return min(len(tokens) + _cost_of(vocab, names, then, fence) for tokens, then in chunks)


def _cost_of(vocab: AnswerVocabulary, names: tuple[str, ...], then: tuple, fence: bool) -> int:
    """Fewest tokens from where a chunk leads to the answer's end."""
    if then[0] == "end":
        return 1
    if then[0] == "instance":
        return 1 + _fewest_after(vocab, names, ("box", 0), then[2])
    if then[0] == "box":
        return 1 + _fewest_after(vocab, names, then, fence)
    return 1 + _fewest_after(vocab, names, ("keypoint", then[1], then[2] if len(then) > 2 else 0), fence)


def answer_automaton(
    vocab: AnswerVocabulary, task: Task, phrases: Sequence[str], keypoint_names: Sequence[str] | None,
    limits: AnswerLimits,
) -> _Automaton:
    """The automaton of one answer to `task` asking for `phrases`."""
    if task.region_kind == "keypoints":
        return KeypointAnswer(vocab, phrases, keypoint_names or (), limits)
    return GroupAnswer(vocab, task, phrases, limits)


class GrammarConstraint(LogitsProcessor):
    """Masks, for each row of a batch, every token its answer's automaton does not allow now,
    and every move that could no longer finish within `max_new_tokens`. A row whose automaton
    is done (its `<|im_end|>` written) is left alone: `generate` pads it."""

    def __init__(self, automata: Sequence[_Automaton], prompt_length: int, max_new_tokens: int):
        self.automata = list(automata)
        self.prompt_length, self.max_new_tokens = prompt_length, max_new_tokens
        # Row → (answer tokens so far, last token, the automaton after it with its moves offered):
        # what `forced_after` already worked out for the next call.
        self._ahead: dict[int, tuple[int, int, _Automaton]] = {}

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_length
        ahead, self._ahead = self._ahead, {}
        budget = self.max_new_tokens - step
        allowed = torch.zeros(scores.shape, dtype=torch.bool)
        last = input_ids[:, -1].tolist() if step > 0 else [None] * len(self.automata)
        for row, token in enumerate(last):
            known = ahead.get(row)
            if known is not None and known[:2] == (step, token):
                self.automata[row] = automaton = known[2]
                moves = [] if automaton.done else automaton._offered
            else:
                automaton = self.automata[row]
                if token is not None:
                    automaton.advance(token)
                moves = [] if automaton.done else automaton.offer(budget)
            if not moves:
                allowed[row] = True
                continue
            for move in moves:
                if move.ids.dtype == torch.bool:
                    allowed[row, : len(move.ids)] |= move.ids
                else:
                    allowed[row, move.ids] = True
        return scores.masked_fill(~allowed.to(scores.device), float("-inf"))

    def forced_after(self, tokens: Sequence[int], generated: int) -> list[tuple[int, ...]]:
        """For each row, the tokens its grammar leaves no choice about after `tokens` (each row's
        next token, chosen but not yet passed to this processor, the answer's `generated`-th,
        counted from 0): the run of single allowed tokens that follows it, within the budget. The
        automata are not moved (the run is walked on copies)."""
        runs = []
        for row, (automaton, token) in enumerate(zip(self.automata, tokens)):
            run: list[int] = []
            if not automaton.done:
                probe = copy.copy(automaton)
                probe.advance(token)
                step = generated + 1
                while not probe.done and step < self.max_new_tokens:
                    only = _only_token(probe.offer(self.max_new_tokens - step))
                    if step == generated + 1:  # the next call's state and moves, if `token` is written
                        self._ahead[row] = (step, token, copy.copy(probe))
                    if only is None:
                        break
                    run.append(only)
                    probe.advance(only)
                    step += 1
            runs.append(tuple(run))
        return runs


def _only_token(moves: Sequence[Move]) -> int | None:
    """The one token `moves` allow between them, or None if they allow several (or none)."""
    token = None
    for move in moves:
        if move.ids.dtype == torch.bool:
            if int(move.ids.sum()) != 1:
                return None
            candidate = int(move.ids.nonzero()[0])
        elif move.ids.numel() == 1:
            candidate = int(move.ids[0])
        else:
            return None
        if token is not None and candidate != token:
            return None
        token = candidate
    return token
