"""The oracle-token probe (#17): can nano's language model bind a phrase to its object when the
visual tokens say exactly which objects each cell shows?

Most of nano's boxes that land on an object name another (`nano/error_anatomy.py`), and the
query before a box's first coordinate hardly prefers the named object (`nano/binding.py`). Two
explanations: the visual tokens do not carry the shape (the cell probe's 0.25-0.28, chance 0.20),
or the decoder cannot learn to pick the named object even from tokens that do. This separates
them: each image token gets an exact code of the shapes-world categories covering its cell (a
fixed random vector per category, weighted by the share of the cell it covers), added to the
tower's output (`add`) or in place of it (`replace`), in training and in evaluation alike. If a
decoder trained on such tokens still names the wrong object, binding is the decoder's (its
capacity or its training signal); if it binds, the tokens are what is missing.

    python -m rexomni_core.nano.oracle train --mode add --out runs/probes/oracle_add [--set key=value ...]
    python -m rexomni_core.nano.oracle eval --run runs/probes/oracle_add [--count 100]
    python -m rexomni_core.nano.oracle eval --model DIR    # the same protocol without codes
    python -m rexomni_core.nano.oracle readout RUN/checkpoint-N   # its binding readout, measured as the toy
    python -m rexomni_core.nano.oracle fold RUN/checkpoint-N --strength S --out RUN/folded   # readout → x0's rows
    python -m rexomni_core.nano.oracle eval --run RUN --model RUN/folded   # any checkpoint with RUN's codes
    python -m rexomni_core.nano.oracle retrieval [--cell-positions] [--tower] [--init shipped] [--rope none] [--pointer]
                                                 [--context image|request] [--position-weight 1 --position-layer 1]

Training is the SFT recipe `nano_ladder4_shapes` continued from the shipped nano (the eleventh
session's probes: 400 steps x 16 at 112², lr 2e-4), its conversations drawn by `OracleStream`.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..annotations import Scene
from ..coco import xyxy_to_bbox
from ..coords import NUM_BINS
from ..data.cell_targets import cell_coverage, grid_side, object_pixels
from ..data.samplers import Conversation, ConversationStream
from ..data.synth import scene_seed
from ..data.worlds import generate
from ..errors import InputError
from ..eval.f1 import sound_f1
from ..eval.inputs import detections_from_records, ground_truth_from_payload
from ..model import RexOmni
from ..train.sft import RexOmniTrainer, SFTCollator
from .binding import binding_attention, binding_scenes
from .error_anatomy import anatomy
from .heldout import HELDOUT_SEED
from .vocabulary import SHAPE_CATEGORIES

MODES = ("add", "replace")
ORACLE_FILE = "oracle.json"  # in the run folder: the codes' settings, which evaluation rebuilds
_CATEGORY = {name: i for i, name in enumerate(SHAPE_CATEGORIES)}


def category_coverage(scene: Scene, square_side: int) -> np.ndarray:
    """(cells, categories) float32: the share of each cell (of a `square_side` square view, raster
    order) that the objects of each shapes-world category cover, occlusion ignored (a code says
    every object there, not just the one on top)."""
    cells = grid_side(square_side)
    coverage = np.zeros((cells * cells, len(SHAPE_CATEGORIES)), dtype=np.float32)
    for annotation in scene.annotations:
        if annotation.category in _CATEGORY:
            pixels = object_pixels(annotation, scene.width, scene.height)
            coverage[:, _CATEGORY[annotation.category]] += cell_coverage(pixels, cells).reshape(-1)
    return np.minimum(coverage, 1.0)


@dataclass(frozen=True)
class OracleCodes:
    """A fixed random code per category, each of root-mean-square `scale` (the shipped nano's
    visual tokens have 6.5), pure in `seed`: evaluation rebuilds the codes training saw."""

    mode: str = "add"
    scale: float = 6.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"oracle mode must be one of {MODES}, got {self.mode!r}")

    def table(self, hidden: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed)
        codes = torch.randn(len(SHAPE_CATEGORIES), hidden, generator=generator)
        return codes * (self.scale / codes.pow(2).mean(-1, keepdim=True).sqrt())

    def save(self, run: Path) -> None:
        (run / ORACLE_FILE).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, run: Path) -> OracleCodes:
        path = run / ORACLE_FILE
        if not path.is_file():
            raise InputError(f"{run}: no {ORACLE_FILE}; is it a run of `nano.oracle train`?")
        return cls(**json.loads(path.read_text()))


@contextmanager
def oracle_tokens(model, coverage: torch.Tensor, codes: OracleCodes) -> Iterator[None]:
    """While inside, the vision tower's output tokens (every image of the next forward, in order)
    get `coverage` (cells, categories) @ the code table added, or are replaced by it."""
    visual = model.model.visual

    def hook(module, args, output):
        table = codes.table(output.pooler_output.shape[-1]).to(output.pooler_output)
        oracle = coverage.to(table) @ table
        if oracle.shape != output.pooler_output.shape:
            raise ValueError(f"oracle codes for {oracle.shape[0]} cells, the tower made {output.pooler_output.shape[0]}")
        output.pooler_output = oracle if codes.mode == "replace" else output.pooler_output + oracle
        return output

    handle = visual.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@dataclass
class OracleConversation:
    conversation: Conversation
    coverage: np.ndarray


class OracleStream(ConversationStream):
    """A `ConversationStream` whose items carry their scene's `category_coverage` at `square_side`."""

    def __init__(self, *args, square_side: int = 112, **kwargs):
        super().__init__(*args, **kwargs)
        self.square_side = square_side

    def __getitem__(self, index: int) -> OracleConversation:
        scene, conversation = self.scene_and_conversation(index)
        return OracleConversation(conversation, category_coverage(scene, self.square_side))


class OracleCollator(SFTCollator):
    def __call__(self, items: Sequence[OracleConversation]) -> dict[str, torch.Tensor]:
        batch = super().__call__([item.conversation for item in items])
        batch["oracle_coverage"] = torch.from_numpy(np.concatenate([item.coverage for item in items]))
        return batch


class OracleTrainer(RexOmniTrainer):
    def __init__(self, *args, codes: OracleCodes, **kwargs):
        super().__init__(*args, **kwargs)
        self.codes = codes

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        coverage = inputs.pop("oracle_coverage")
        with oracle_tokens(model, coverage, self.codes):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


PROBE_RECIPE = (  # the eleventh session's continuation from the shipped nano (scripts/nano_v3_probes.sh)
    "model=rexomni_core/assets/nano", "data.kwargs.seed=61", "max_steps=400", "learning_rate=0.0002",
    "warmup_steps=20", "bf16=false", "save_steps=100", "save_total_limit=5", "batch_by_task=true",
    "dataloader_num_workers=1", "probe_test_images=0", "dense_weight=0",
    "data.factory=rexomni_core.nano.oracle:OracleStream",
)


def train_oracle(out: Path, codes: OracleCodes, overrides: Sequence[str] = ()) -> Path:
    from ..train.configs import SFTConfig
    from ..train.sft import train_sft

    config = SFTConfig.from_yaml("nano_ladder4_shapes", [*PROBE_RECIPE, f"output_dir={out}", *overrides])
    out.mkdir(parents=True, exist_ok=True)
    codes.save(out)
    return train_sft(config, trainer_factory=partial(OracleTrainer, codes=codes), collator_factory=OracleCollator)


def heldout_scenes(count: int) -> list[Scene]:
    """The held-out normal-split shapes scenes (`rexomni data synth`'s for seed `HELDOUT_SEED`)."""
    return [generate("shapes", scene_seed(HELDOUT_SEED, index), "normal") for index in range(count)]


def _ground_truth(scenes: Sequence[Scene]) -> dict:
    return {
        "images": [{"id": i + 1, "width": s.width, "height": s.height} for i, s in enumerate(scenes)],
        "categories": [{"id": i + 1, "name": name} for i, name in enumerate(SHAPE_CATEGORIES)],
        "annotations": [
            {"id": k, "image_id": i + 1, "category_id": _CATEGORY[a.category] + 1, "bbox": xyxy_to_bbox(a.box),
             "area": float((a.box[2] - a.box[0]) * (a.box[3] - a.box[1])), "iscrowd": 0}
            for k, (i, a) in enumerate(((i, a) for i, s in enumerate(scenes) for a in s.annotations), start=1)
        ],
    }


def evaluate_oracle(model: RexOmni, codes: OracleCodes | None, count: int = 100, batch_size: int = 8,
                    binding_count: int = 96) -> dict:
    """Detection of the phrases each held-out scene holds (sound F1, the error anatomy of its
    boxes) and the binding attention, with the codes given to the model (none: `codes` None)."""
    side = model.square_side or 112
    scenes = heldout_scenes(count)
    gt = ground_truth_from_payload(_ground_truth(scenes))
    category_ids = {name: i + 1 for i, name in enumerate(SHAPE_CATEGORIES)}
    records, answers, truth = [], [], {}
    for start in range(0, count, batch_size):
        chunk = scenes[start:start + batch_size]
        images = [s.image for s in chunk]
        phrases = [sorted({a.category for a in s.annotations}) for s in chunk]
        coverage = torch.from_numpy(np.concatenate([category_coverage(s, side) for s in chunk]))
        with oracle_tokens(model.model, coverage, codes) if codes else nullcontext():
            predictions = model.predict_batch(images, task="detection", categories=phrases)
        for offset, (scene, prediction) in enumerate(zip(chunk, predictions)):
            image_id = start + offset + 1
            records += prediction.to_coco(image_id, category_ids, unknown="skip")
            answers.append({"image_id": image_id, "prediction": prediction.parsed_dict()})
            truth[image_id] = [(a.category, list(a.box)) for a in scene.annotations]
    report = sound_f1(gt, detections_from_records(records, gt, lenient=True)).to_dict()
    outcomes = anatomy(answers, truth)
    landed = sum(outcomes.values()) - outcomes["hits nothing"]
    result = {
        "images": count, "f1@0.5": round(report["f1@0.5"], 3), "f1@miou": round(report["f1@miou"], 3),
        "boxes": sum(outcomes.values()), "landed": landed,
        "right of landed": round(outcomes["right"] / max(landed, 1), 3), "outcomes": dict(outcomes),
    }
    if binding_count:
        result["binding"] = _binding(model, codes, binding_count, side)
    return result


def readout_retrieval(checkpoint: Path, count: int = 96, batch_size: int = 16) -> dict:
    """The SFT binding readout of a run's `checkpoint` (its model, readout and codes, where it has them) on
    held-out normal-split detection answers, measured as the retrieval probe measures the toy:
    at each region's first-coordinate query, is the readout's argmax cell one of the region's
    cells ("right", the target SFT trains it on: the cells its box overlaps) or any object's
    ("landed"), and the share of landed picks that are the region's ("right of landed")? And, in
    the one currency both share, is the column of the readout's cell, and the column of the bin
    the model itself would write there as the box's x0, a column the region covers? (Without a
    readout in the checkpoint, only the latter.)"""
    from ..data.samplers import MixtureEntry
    from ..train.sft import BindingReadout, coordinate_bin_table, grounding_targets, spacer_token_ids

    checkpoint = Path(checkpoint)
    codes = OracleCodes.load(checkpoint.parent) if (checkpoint.parent / ORACLE_FILE).exists() else None
    rexomni = RexOmni.from_pretrained(str(checkpoint), device="cpu", dtype=torch.float32)
    model, config = rexomni.model.eval(), rexomni.model.config
    side = grid_side(rexomni.square_side)
    cells, coordinate_ids = side**2, torch.tensor(rexomni.coordinate_ids)
    readout = _checkpoint_readout(checkpoint, rexomni) if (checkpoint / BindingReadout.FILE).exists() else None
    stream = OracleStream((MixtureEntry("shapes", "detection", split="normal", absent_phrases=False),), seed=HELDOUT_SEED,
                          square_side=rexomni.square_side)
    bin_of = coordinate_bin_table(coordinate_ids, config.text_config.vocab_size)
    spacers, collate = spacer_token_ids(rexomni.tokenizer), OracleCollator(rexomni)
    right = landed = both = queries = readout_column = answer_column = 0
    for start in range(0, count, batch_size):
        items = [stream[i] for i in range(start, min(start + batch_size, count))]
        batch = collate(items)
        coverage, labels = batch.pop("oracle_coverage"), batch.pop("labels")
        with torch.no_grad(), oracle_tokens(model, coverage, codes) if codes else nullcontext():
            outputs = model(**batch, output_hidden_states=True)
        hidden = outputs.hidden_states[-1]
        targets = grounding_targets(batch["input_ids"], labels, batch["image_grid_thw"], config.image_token_id, bin_of,
                                    spacers, config.vision_config.spatial_merge_size, first_only=True)
        image_tokens = batch["input_ids"] == config.image_token_id
        objects = _shown(coverage.max(-1).values).reshape(len(items), cells)
        rows, positions = targets.any(dim=-1).nonzero(as_tuple=True)
        picked = readout.readout(hidden[rows, positions]).argmax(-1).tolist() if readout else [None] * len(rows)
        # The model's own first coordinate there (teacher-forced, the most likely bin): its column.
        written = outputs.logits[rows, positions][:, coordinate_ids].argmax(-1) * side // NUM_BINS
        for row, position, cell, column in zip(rows.tolist(), positions.tolist(), picked, written.tolist()):
            region = targets[row, position][image_tokens[row]]
            columns = {c % side for c in region.nonzero()[:, 0].tolist()}
            answer_column += column in columns
            if cell is not None:
                on_target, on_object = bool(region[cell]), bool(objects[row, cell])
                right, landed, both = right + on_target, landed + on_object, both + (on_target and on_object)
                readout_column += cell % side in columns
        queries += len(rows)
    measured = {"checkpoint": str(checkpoint), "codes": codes is not None, "queries": queries,
                "answer column": round(answer_column / max(queries, 1), 3)}
    if readout:
        measured |= {"right": round(right / max(queries, 1), 3), "landed": round(landed / max(queries, 1), 3),
                     "right of landed": round(both / max(landed, 1), 3),
                     "readout column": round(readout_column / max(queries, 1), 3)}
    return measured


def fold_checkpoint(checkpoint: Path, strength: float, out: Path) -> Path:
    """`checkpoint` with its binding readout folded into the coordinate rows
    (`train/sft.py` `fold_readout_into_coordinates`), saved to `out` with the readout beside it."""
    from ..train.sft import fold_readout_into_coordinates

    checkpoint, out = Path(checkpoint), Path(out)
    if out.exists():
        raise InputError(f"{out} exists; folding writes a new folder")
    rexomni = RexOmni.from_pretrained(str(checkpoint), device="cpu", dtype=torch.float32)
    readout = _checkpoint_readout(checkpoint, rexomni)
    fold_readout_into_coordinates(rexomni.model, readout, rexomni.coordinate_ids, strength)
    rexomni.save_pretrained(out)
    readout.save(out)
    return out


def _checkpoint_readout(checkpoint: Path, rexomni: RexOmni):
    """The binding readout SFT saved in `checkpoint`, over the cells of the model's square view."""
    from ..train.sft import BindingReadout

    readout = BindingReadout(rexomni.model.config.text_config.hidden_size, grid_side(rexomni.square_side) ** 2, 1.0)
    readout.load(checkpoint)
    return readout


def _binding(model: RexOmni, codes: OracleCodes | None, count: int, side: int) -> dict:
    """`nano/binding.py`'s measure on its held-out scenes, the codes given to the model."""
    pairs, coverages = [], []
    for scene, conversation in binding_scenes(count, side):
        pairs.append((conversation, scene.annotations))
        coverages.append(category_coverage(scene, side))
    chunks = [torch.from_numpy(np.concatenate(coverages[i:i + 8])) for i in range(0, count, 8)]
    contexts = iter(chunks)
    return binding_attention(model, pairs, batch_size=8,
                             context=(lambda: oracle_tokens(model.model, next(contexts), codes)) if codes else None)


# The same question without the rest of SFT: a retrieval task on the nano's own text decoder.
RETRIEVAL_QUERY = "<|object_ref_end|><|box_start|>"  # what precedes a box's first coordinate in an answer
_TARGET_COVERAGE = 0.15  # a cell shows a category when its objects cover this share (cell_targets' rule)


# What the model's prompt puts around an image and after it up to an answer's first phrase, for a
# detection request (`RexOmni.chat_text`; a test keeps them equal).
PROMPT_BEFORE_IMAGE = "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\n<|vision_start|>"
PROMPT_AFTER_IMAGE = "<|vision_end|>"
REQUEST_AFTER_IMAGE = PROMPT_AFTER_IMAGE + "Detect {categories}.<|im_end|>\n<|im_start|>assistant\n<|object_ref_start|>"
REQUESTED_PHRASES = 3  # the queried phrase and two others of the world (present or not), shuffled
CONTEXTS = ("none", "image", "request")


@dataclass
class RetrievalBatch:
    """Scenes as oracle-coded cells, each followed by one of its phrases: `embeddings` (B, L, H),
    `positions` (3, B, L) as the model places an image of G x G tokens and the text after it,
    `targets` (B, cells) the cells the phrase's objects show, `objects` (B, cells) any object's;
    the cells start at `cells_from` (after the prompt's text, when it is there)."""

    embeddings: torch.Tensor
    positions: torch.Tensor
    targets: torch.Tensor
    objects: torch.Tensor
    cells_from: int = 0

    @property
    def cell_slice(self) -> slice:
        return slice(self.cells_from, self.cells_from + self.targets.shape[1])


def retrieval_batch(language_model, tokenizer, codes: torch.Tensor, scenes: Sequence[Scene], rng: random.Random,
                    square_side: int = 112, cell_codes: torch.Tensor | None = None,
                    coverages: Sequence[torch.Tensor] | None = None,
                    tower_tokens: Sequence[torch.Tensor] | None = None, context: str = "none") -> RetrievalBatch:
    """`cell_codes` (cells, H), when given, are added to every scene's cells: where each is, in
    the tokens' content (rotary positions put it only in attention's scores, not in what a head
    reads out). `coverages`: the scenes' `category_coverage`, when already computed;
    `tower_tokens`: each scene's visual tokens (cells, H), added to its codes (`oracle_add`).
    `context`: "none", the cells then the phrase; "image", the cells framed as the model's prompt
    frames an image (its system and user text and `<|vision_start|>` before them, `<|vision_end|>`
    after): fixed tokens at known places, against which a cell's rotary position becomes something
    attention can turn into content; "request", that frame, then SFT's detection request for
    `REQUESTED_PHRASES` phrases (the queried one among them) and the assistant turn up to the
    first group's phrase: the context of an answer's first box."""
    cells = grid_side(square_side)
    embed = language_model.get_input_embeddings()
    rows, cols = torch.meshgrid(torch.arange(cells), torch.arange(cells), indexing="ij")
    encode = lambda text: tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]  # noqa: E731
    if context not in CONTEXTS:
        raise InputError(f"retrieval context must be one of {', '.join(CONTEXTS)}, got {context!r}")
    before = embed(encode(PROMPT_BEFORE_IMAGE)) if context != "none" else embed.weight[:0]
    embeddings, targets, objects = [], [], []
    phrases = [rng.choice(sorted({a.category for a in scene.annotations})) for scene in scenes]
    texts = [_text_after_cells(context, phrase, rng) for phrase in phrases]  # after: the same phrases in every context
    for i, (scene, phrase) in enumerate(zip(scenes, phrases)):
        coverage = torch.from_numpy(category_coverage(scene, square_side)) if coverages is None else coverages[i]
        ids = encode(texts[i] + phrase + RETRIEVAL_QUERY)
        content = coverage @ codes
        if cell_codes is not None:
            content = content + cell_codes
        if tower_tokens is not None:
            content = content + tower_tokens[i]
        embeddings.append(torch.cat([before, content, embed(ids)]))
        targets.append(_shown(coverage[:, _CATEGORY[phrase]]))
        objects.append(_shown(coverage.max(-1).values))
    length = max(len(e) for e in embeddings)
    if any(len(e) != length for e in embeddings):  # every phrase of the world is the same length here
        raise ValueError("phrases of different token lengths in one batch")
    start = len(before)  # M-RoPE: text counts up on all three axes; an image sits at (t, t + row, t + column)
    text_before = torch.arange(start).expand(3, -1)
    text_after = torch.arange(length - start - cells * cells) + start + cells  # after the image's largest position
    image = start + torch.stack([torch.zeros(cells * cells, dtype=torch.long), rows.reshape(-1), cols.reshape(-1)])
    positions = torch.cat([text_before, image, text_after.expand(3, -1)], dim=1)[:, None].expand(-1, len(scenes), -1)
    return RetrievalBatch(torch.stack(embeddings), positions, torch.stack(targets), torch.stack(objects), start)


def _text_after_cells(context: str, phrase: str, rng: random.Random) -> str:
    if context == "none":
        return ""
    if context == "image":
        return PROMPT_AFTER_IMAGE
    listed = [phrase, *rng.sample([name for name in SHAPE_CATEGORIES if name != phrase], REQUESTED_PHRASES - 1)]
    rng.shuffle(listed)
    return REQUEST_AFTER_IMAGE.format(categories=", ".join(listed))


def _shown(coverage: torch.Tensor) -> torch.Tensor:
    """(cells,) bool: the cells covered at least `_TARGET_COVERAGE`, and always the most covered
    one (a small object covers no cell that much, and an empty target would make the loss infinite)."""
    return (coverage >= _TARGET_COVERAGE) | ((coverage == coverage.max()) & (coverage > 0))


def retrieval_scores(language_model, readout, batch: RetrievalBatch, rope: bool = True,
                     hidden_layer: int | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """(B, cells) logits over the image cells from the phrase's last query position; without
    `rope` every token sits at position 0 (no rotation anywhere). With `hidden_layer` also the
    cells' hidden states (B, cells, H) after that many decoder layers (0: the input)."""
    positions = batch.positions if rope else torch.zeros_like(batch.positions)
    outputs = language_model(inputs_embeds=batch.embeddings, position_ids=positions,
                             output_hidden_states=hidden_layer is not None)
    scores = readout(outputs.last_hidden_state[:, -1])
    if hidden_layer is None:
        return scores
    return scores, outputs.hidden_states[hidden_layer][:, batch.cell_slice]


class CellPositionHead(torch.nn.Module):
    """An auxiliary linear head asking each image cell's hidden state for its own row and column
    (cross-entropy over the grid's rows plus over its columns): rotary positions put a token's
    place into attention scores only, and the retrieval toy bound fastest when the content said it."""

    def __init__(self, hidden: int, side: int):
        super().__init__()
        self.side, self.head = side, torch.nn.Linear(hidden, 2 * side)
        self.norm = torch.nn.LayerNorm(hidden, elementwise_affine=False)

    def logits(self, cell_hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(row logits, column logits), each (B, cells, side)."""
        return self.head(self.norm(cell_hidden)).split(self.side, dim=-1)

    def targets(self, cells: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.arange(cells)
        return index // self.side, index % self.side

    def loss(self, cell_hidden: torch.Tensor) -> torch.Tensor:
        (rows, columns), (row, column) = self.logits(cell_hidden), self.targets(cell_hidden.shape[1])
        expand = lambda target: target.expand(len(cell_hidden), -1).reshape(-1)  # noqa: E731
        return (torch.nn.functional.cross_entropy(rows.reshape(-1, self.side), expand(row))
                + torch.nn.functional.cross_entropy(columns.reshape(-1, self.side), expand(column)))

    def accuracy(self, cell_hidden: torch.Tensor) -> float:
        """The share of cells whose row and column both are named right."""
        (rows, columns), (row, column) = self.logits(cell_hidden), self.targets(cell_hidden.shape[1])
        return float(((rows.argmax(-1) == row) & (columns.argmax(-1) == column)).float().mean())


class PointerReadout(torch.nn.Module):
    """The control that says the retrieval is learnable from these inputs: one attention head
    whose query is the mean of the phrase's (RMS-normalised) token embeddings and whose keys are
    the cells'; its scores over the cells are the answer. No decoder."""

    def __init__(self, hidden: int, width: int = 64):
        super().__init__()
        self.query, self.key = torch.nn.Linear(hidden, width), torch.nn.Linear(hidden, width)

    def forward(self, batch: RetrievalBatch) -> torch.Tensor:
        embeddings = torch.nn.functional.rms_norm(batch.embeddings, (batch.embeddings.shape[-1],))
        phrase = embeddings[:, batch.cell_slice.stop:].mean(1)
        return torch.einsum("bw,bcw->bc", self.query(phrase), self.key(embeddings[:, batch.cell_slice]))


@dataclass(frozen=True)
class RetrievalRecipe:
    """How the retrieval probe trains (thirteenth session: with warm-up, clipping and lr 3e-4 a
    fresh decoder learns the toy; AdamW at 5e-4 without them leaves the plateau too but wanders).
    `rope`: "mrope" places the cells as the model places an image, "none" gives every token
    position 0 (no rotation: what M-RoPE costs). `scene_pool`: training scenes drawn from this
    many, their coverage computed once (0: new scenes every step). `tower`: the shipped nano's
    visual tokens of each scene (112² view, frozen) added to its codes, as `oracle_add` has them.
    `context`: what surrounds the cells and precedes the phrase (`retrieval_batch`): "none",
    "image" (the prompt's frame), "request" (the frame and a detection request, as in SFT).
    `position_weight`: a `CellPositionHead` on the cells' hidden states after `position_layer`
    decoder layers, its loss added with this weight (0: none) — position put into the content by
    the decoder itself, the shippable counterpart of `cell_positions`."""

    init: str = "fresh"
    steps: int = 3000
    batch_size: int = 32
    learning_rate: float = 3e-4
    warmup_steps: int = 100
    max_grad_norm: float = 1.0  # 0: no clipping
    rope: str = "mrope"
    cell_positions: bool = False
    pointer: bool = False
    scene_pool: int = 4000
    tower: bool = False
    context: str = "none"
    position_weight: float = 0.0
    position_layer: int = 1
    test_scenes: int = 400
    evaluate_every: int = 250
    seed: int = 0

    def __post_init__(self) -> None:
        if self.init not in ("shipped", "fresh"):
            raise InputError(f"RetrievalRecipe.init must be 'shipped' or 'fresh', got {self.init!r}")
        if self.rope not in ("mrope", "none"):
            raise InputError(f"RetrievalRecipe.rope must be 'mrope' or 'none', got {self.rope!r}")
        if self.position_weight and self.pointer:
            raise InputError("RetrievalRecipe.position_weight needs a decoder; the pointer control has none")
        if self.context not in CONTEXTS:
            raise InputError(f"RetrievalRecipe.context must be one of {', '.join(CONTEXTS)}, got {self.context!r}")


@dataclass
class _SceneInputs:
    scenes: list[Scene]
    coverages: list[torch.Tensor]
    tower_tokens: list[torch.Tensor] | None


def _scene_inputs(scenes: list[Scene], tower: RexOmni | None, batch_size: int = 64) -> _SceneInputs:
    from ..train.vision import visual_tokens

    coverages = [torch.from_numpy(category_coverage(scene, 112)) for scene in scenes]
    if tower is None:
        return _SceneInputs(scenes, coverages, None)
    tokens = []
    with torch.no_grad():
        for start in range(0, len(scenes), batch_size):
            views = [s.image.convert("RGB") for s in scenes[start:start + batch_size]]  # the tower's own square view
            tokens.extend(visual_tokens(tower, views).split(grid_side(tower.square_side) ** 2))
    return _SceneInputs(scenes, coverages, tokens)


class _ScenePool:
    """Training scenes for the probe: `size` fixed scenes sampled with replacement across steps
    (their inputs computed once each), or, size 0, new scenes every step."""

    def __init__(self, size: int, seed: int, tower: RexOmni | None):
        self.seed, self.index, self.tower = seed, 0, tower
        self.pool = _scene_inputs([generate("shapes", scene_seed(seed, i), "normal") for i in range(size)], tower)

    def draw(self, count: int, rng: random.Random) -> _SceneInputs:
        if not self.pool.scenes:
            scenes = [generate("shapes", scene_seed(self.seed, self.index + i), "normal") for i in range(count)]
            self.index += count
            return _scene_inputs(scenes, self.tower)
        picked = rng.sample(range(len(self.pool.scenes)), count)
        tokens = self.pool.tower_tokens
        return _SceneInputs([self.pool.scenes[i] for i in picked], [self.pool.coverages[i] for i in picked],
                            None if tokens is None else [tokens[i] for i in picked])


def retrieval_probe(recipe: RetrievalRecipe, codes: OracleCodes = OracleCodes("replace")) -> list[dict]:
    """Train the nano's text decoder (from the shipped nano's weights, `init="shipped"`, or fresh)
    and a linear readout over the cells to pick the cells of the phrase's objects from oracle
    codes alone (no vision tower), with a fixed random code per cell added when `cell_positions`
    (or, `pointer`, only a `PointerReadout` on the same inputs); the curve of held-out accuracy:
    the argmax on the named category's cells ("right") and on any object's ("landed"), and right
    of landed."""
    from ..nano.architecture import build_nano

    shipped = recipe.init == "shipped"
    rexomni = RexOmni.from_pretrained(None, device="cpu", dtype=torch.float32) if shipped else build_nano(recipe.seed)
    language_model, tokenizer = rexomni.model.model.language_model.train(), rexomni.tokenizer
    hidden = language_model.config.hidden_size
    table = codes.table(hidden)
    cells = grid_side(112) ** 2  # 16 < the table's 30 rows: a distinct random code per cell
    cell_codes = OracleCodes(codes.mode, codes.scale, codes.seed + 1).table(hidden)[:cells] if recipe.cell_positions else None
    torch.manual_seed(recipe.seed)
    position_head = None
    if recipe.pointer:
        model = PointerReadout(hidden)
        parameters = list(model.parameters())
        run = lambda batch: (model(batch), None)  # noqa: E731
    else:
        readout = torch.nn.Linear(hidden, cells)
        if recipe.position_weight:
            position_head = CellPositionHead(hidden, grid_side(112))
            run = partial(retrieval_scores, language_model, readout, rope=recipe.rope == "mrope",
                          hidden_layer=recipe.position_layer)
        else:
            run = lambda batch: (retrieval_scores(language_model, readout, batch, rope=recipe.rope == "mrope"), None)  # noqa: E731
        parameters = [*language_model.parameters(), *readout.parameters(),
                      *(position_head.parameters() if position_head else ())]
    optimizer = torch.optim.AdamW(parameters, lr=recipe.learning_rate)
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / max(recipe.warmup_steps, 1)))
    rng, test_rng = random.Random(recipe.seed), random.Random(HELDOUT_SEED)
    tower = (rexomni if shipped else RexOmni.from_pretrained(None, device="cpu", dtype=torch.float32)) if recipe.tower else None
    held_out = _scene_inputs(heldout_scenes(recipe.test_scenes), tower)
    with torch.no_grad():
        test = retrieval_batch(language_model, tokenizer, table, held_out.scenes, test_rng, cell_codes=cell_codes,
                               coverages=held_out.coverages, tower_tokens=held_out.tower_tokens, context=recipe.context)
    pool = _ScenePool(recipe.scene_pool, recipe.seed, tower)
    label = "pointer" if recipe.pointer else f"{recipe.init} decoder, rope {recipe.rope}"
    curve = []
    for step in range(recipe.steps + 1):
        if step % recipe.evaluate_every == 0 or step == recipe.steps:
            with torch.no_grad():
                language_model.eval()
                scores, cell_hidden = run(test)
            language_model.train()
            picked = scores.argmax(-1, keepdim=True)
            right = float(test.targets.gather(1, picked).float().mean())
            landed = float(test.objects.gather(1, picked).float().mean())
            curve.append({"step": step, "right": round(right, 3), "landed": round(landed, 3),
                          "right of landed": round(right / max(landed, 1e-9), 3)})
            if position_head:
                curve[-1]["position"] = round(position_head.accuracy(cell_hidden), 3)
            print(json.dumps({"probe": label, "cell positions": recipe.cell_positions, "tower": recipe.tower,
                              "context": recipe.context,
                              **curve[-1]}), flush=True)
        if step == recipe.steps:
            break
        drawn = pool.draw(recipe.batch_size, rng)
        with torch.set_grad_enabled(not recipe.pointer):  # the pointer learns no embeddings
            batch = retrieval_batch(language_model, tokenizer, table, drawn.scenes, rng, cell_codes=cell_codes,
                                    coverages=drawn.coverages, tower_tokens=drawn.tower_tokens, context=recipe.context)
        scores, cell_hidden = run(batch)
        log_p = scores.log_softmax(-1)
        loss = -log_p.masked_fill(~batch.targets, float("-inf")).logsumexp(-1).mean()
        if position_head:
            loss = loss + recipe.position_weight * position_head.loss(cell_hidden)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"retrieval loss {float(loss)} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(parameters, recipe.max_grad_norm)
        optimizer.step()
        warmup.step()
    return curve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="SFT from the shipped nano with oracle codes in its visual tokens")
    train.add_argument("--out", type=Path, required=True)
    train.add_argument("--mode", choices=MODES, default="add")
    train.add_argument("--scale", type=float, default=OracleCodes.scale)
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an SFT config override")
    retrieval = commands.add_parser("retrieval", help="the decoder alone: pick the named object's cells from codes")
    retrieval.add_argument("--init", choices=("shipped", "fresh"), default=RetrievalRecipe.init)
    retrieval.add_argument("--steps", type=int, default=RetrievalRecipe.steps)
    retrieval.add_argument("--learning-rate", type=float, default=RetrievalRecipe.learning_rate)
    retrieval.add_argument("--warmup-steps", type=int, default=RetrievalRecipe.warmup_steps)
    retrieval.add_argument("--max-grad-norm", type=float, default=RetrievalRecipe.max_grad_norm, help="0: no clipping")
    retrieval.add_argument("--rope", choices=("mrope", "none"), default=RetrievalRecipe.rope)
    retrieval.add_argument("--scene-pool", type=int, default=RetrievalRecipe.scene_pool, help="0: new scenes every step")
    retrieval.add_argument("--tower", action="store_true", help="the shipped tower's tokens added to the codes")
    retrieval.add_argument("--cell-positions", action="store_true", help="a fixed code per cell added to its content")
    retrieval.add_argument("--pointer", action="store_true", help="the control: one attention head, no decoder")
    retrieval.add_argument("--context", choices=CONTEXTS, default=RetrievalRecipe.context,
                           help="image: the prompt's frame around the cells; request: and SFT's detection request")
    retrieval.add_argument("--position-weight", type=float, default=RetrievalRecipe.position_weight,
                           help="an auxiliary head asking each cell's hidden state its row and column (0: none)")
    retrieval.add_argument("--position-layer", type=int, default=RetrievalRecipe.position_layer,
                           help="after how many decoder layers the position head reads the cells")
    fold = commands.add_parser("fold", help="a checkpoint with its binding readout folded into the coordinate rows")
    fold.add_argument("checkpoint", type=Path, help="RUN/checkpoint-N (trained with binding_readout, untied)")
    fold.add_argument("--strength", type=float, required=True)
    fold.add_argument("--out", type=Path, required=True, help="a new folder beside the checkpoint (its run's codes apply)")
    readout = commands.add_parser("readout", help="an oracle SFT checkpoint's binding readout, measured as the toy")
    readout.add_argument("checkpoint", type=Path, help="RUN/checkpoint-N (trained with binding_readout)")
    readout.add_argument("--count", type=int, default=96)
    evaluate = commands.add_parser("eval", help="held-out detection, error anatomy and binding")
    evaluate.add_argument("--run", type=Path, help="an oracle run folder: its final model, with its codes")
    evaluate.add_argument("--model", help="any checkpoint, evaluated without codes unless --run gives them "
                                           "(default: --run's final model, else the shipped nano)")
    evaluate.add_argument("--count", type=int, default=100)
    evaluate.add_argument("--binding-count", type=int, default=96)
    args = parser.parse_args(argv)
    if args.command == "train":
        print(f"final model: {train_oracle(args.out, OracleCodes(args.mode, args.scale), args.set)}")
        return
    if args.command == "retrieval":
        retrieval_probe(RetrievalRecipe(
            init=args.init, steps=args.steps, learning_rate=args.learning_rate, warmup_steps=args.warmup_steps,
            max_grad_norm=args.max_grad_norm, rope=args.rope, cell_positions=args.cell_positions,
            pointer=args.pointer, scene_pool=args.scene_pool, tower=args.tower, context=args.context,
            position_weight=args.position_weight, position_layer=args.position_layer))
        return
    if args.command == "fold":
        print(f"folded: {fold_checkpoint(args.checkpoint, args.strength, args.out)}")
        return
    if args.command == "readout":
        print(json.dumps(readout_retrieval(args.checkpoint, args.count)))
        return
    codes = OracleCodes.load(args.run) if args.run else None
    model = RexOmni.from_pretrained(args.model or (str(args.run / "final") if args.run else None), device="cpu")
    result = evaluate_oracle(model, codes, args.count, binding_count=args.binding_count)
    print(json.dumps({"run": str(args.run or args.model), "codes": asdict(codes) if codes else None, **result}))


if __name__ == "__main__":
    main()
