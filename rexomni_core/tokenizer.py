"""Tokenizers that speak coordinates.

Three things live here:

- `build_nano_tokenizer()`: the small tokenizer of Rex-Omni-nano, built with the `tokenizers`
  library. A byte-level BPE (so any text round-trips, nothing is ever `<unk>`) trained on a corpus
  written from the task catalog and the nano world's vocabulary, so prompts and phrases cost few
  tokens; plus Qwen2.5-VL's special tokens, the 1000 coordinate tokens `<0>`…`<999>` as single
  tokens, and Qwen2.5-VL's chat template. It is a `Qwen2TokenizerFast`, like the released one.
- `make_speak_coordinates(tokenizer, model)`: teaches any Qwen-family tokenizer the coordinate
  tokens (adding them where missing, resizing the model's embeddings, optionally with a smooth
  initialisation so neighbouring bins start out as neighbours).
- `check_coordinate_tokens(tokenizer)`: the load-time guard that all 1000 coordinate strings are
  single tokens with distinct ids.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .coords import COORDINATE_TOKENS, NUM_BINS
from .grammar import (
    BOX_END,
    BOX_START,
    END_OF_TEXT,
    IM_END,
    NONE_ANSWER,
    REF_END,
    REF_START,
    UNVISIBLE,
    serialize,
)
from .nano.vocabulary import GUI_WORDS, SHAPE_CATEGORIES
from .regions import Box, Point
from .tasks import KEYPOINT_SCHEMAS, OCR_GRANULARITIES, SYSTEM_PROMPT, TASKS, build_prompt

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

IM_START = "<|im_start|>"
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
IMAGE_PAD, VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"

# Qwen2.5-VL's special tokens, in the released vocabulary's order.
QWEN_SPECIAL_TOKENS = (
    END_OF_TEXT,
    IM_START,
    IM_END,
    REF_START,
    REF_END,
    BOX_START,
    BOX_END,
    "<|quad_start|>",
    "<|quad_end|>",
    VISION_START,
    VISION_END,
    "<|vision_pad|>",
    IMAGE_PAD,
    VIDEO_PAD,
)

# Qwen2-VL / Qwen2.5-VL chat template (images as vision_start, image_pad, vision_end before the
# text of the same message). The default system message only applies when none is given;
# Rex-Omni always sends its own (`tasks.SYSTEM_PROMPT`, without the final period).
QWEN_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

NANO_VOCAB_SIZE = 1024  # BPE merges + byte alphabet, before special and coordinate tokens


def _corpus(seed: int = 0, size: int = 4000) -> Iterator[str]:
    """Text like the model will read and write: every prompt template of every task, filled with
    nano-world phrases, keypoint names, OCR words and GUI labels, and the answers' plain text."""
    # The worlds' modules need numpy and PIL, which loading a tokenizer does not.
    from .data.referring import REFERRING_WORDS
    from .data.worlds.ocr import ALPHABET, MAX_WORD, MIN_WORD

    rng = random.Random(seed)
    shape_phrases = list(SHAPE_CATEGORIES)
    phrases = shape_phrases + list(GUI_WORDS) + list(OCR_GRANULARITIES)
    yield " ".join(shape_phrases + list(GUI_WORDS) + [NONE_ANSWER, UNVISIBLE, "object"])
    for _ in range(size // 10):
        yield " ".join(rng.sample(REFERRING_WORDS, 3) + rng.sample(shape_phrases, 2))
    for _ in range(size):
        # The chat scaffolding around every prompt (role names, system message).
        yield f"system\n{SYSTEM_PROMPT}\nuser\nassistant\n"
        task = rng.choice(list(TASKS))
        spec = TASKS[task]
        categories = rng.sample(phrases, rng.randint(1, 4))
        if spec.ocr:
            categories = [rng.choice(OCR_GRANULARITIES)]
        template = rng.choice(spec.templates)
        keypoint_type = rng.choice(list(KEYPOINT_SCHEMAS)) if spec.needs_keypoint_type else None
        boxes = [[10, 10, 50, 60]] if spec.needs_visual_prompt else None
        yield build_prompt(
            task, categories, keypoint_type, boxes, width=100, height=100, template=template
        )
        word = "".join(rng.choices(ALPHABET, k=rng.randint(MIN_WORD, MAX_WORD)))
        region = (Point if spec.region_kind == "point" else Box)(
            word, [1, 2] if spec.region_kind == "point" else [1, 2, 30, 40]
        )
        yield serialize([region], 100, 100, "ocr_box" if spec.ocr else "detection")
    yield json.dumps({"person1": {"bbox": "", "keypoints": dict.fromkeys(
        itertools.chain(*KEYPOINT_SCHEMAS.values()), UNVISIBLE)}})


def build_nano_tokenizer(vocab_size: int = NANO_VOCAB_SIZE, seed: int = 0):
    """The Rex-Omni-nano tokenizer: a small byte-level BPE with Qwen's specials and coordinates.

    Ids: the trained BPE vocabulary first, then the Qwen special tokens, then `<0>`…`<999>` in
    bin order (coordinate ids are still looked up by string everywhere, never assumed).
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_corpus(seed), trainer=trainer)
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL_TOKENS])
    # Coordinates are ordinary (non-special) added tokens, as in the released vocabulary: they are
    # text the model writes, and the added-token pass keeps `<12>` from being split into bytes.
    backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in COORDINATE_TOKENS])
    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=backend,
        eos_token=IM_END,
        pad_token=END_OF_TEXT,
        unk_token=None,
        bos_token=None,
        model_max_length=32768,
        padding_side="left",  # generation batches pad on the left
        chat_template=QWEN_VL_CHAT_TEMPLATE,
        extra_special_tokens={
            "image_token": IMAGE_PAD,
            "video_token": VIDEO_PAD,
            "vision_start_token": VISION_START,
            "vision_end_token": VISION_END,
        },
    )
    check_coordinate_tokens(tokenizer)
    return tokenizer


def coordinate_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Ids of `<0>`…`<999>` in bin order (through the tokenizer, never hard-coded)."""
    return [tokenizer.convert_tokens_to_ids(token) for token in COORDINATE_TOKENS]


def check_coordinate_tokens(tokenizer: PreTrainedTokenizerBase) -> None:
    """Raise ValueError unless every `<k>` encodes to exactly one token with its own id."""
    problems = []
    ids = []
    for token in COORDINATE_TOKENS:
        encoded = tokenizer.encode(token, add_special_tokens=False)
        if len(encoded) != 1:
            problems.append(f"{token} -> {len(encoded)} tokens {encoded}")
        else:
            ids.append(encoded[0])
        if len(problems) >= 3:
            break
    if not problems and len(set(ids)) != NUM_BINS:
        problems.append(f"only {len(set(ids))} distinct ids for {NUM_BINS} coordinate tokens")
    if problems:
        raise ValueError(
            "the tokenizer does not speak Rex-Omni coordinates: every <0>..<999> must be a single "
            f"token with its own id ({'; '.join(problems)}). Use a Rex-Omni checkpoint, or call "
            "rexomni_core.tokenizer.make_speak_coordinates(tokenizer, model) before training."
        )


def make_speak_coordinates(
    tokenizer: PreTrainedTokenizerBase,
    model: PreTrainedModel | None = None,
    init: str | None = "sinusoidal",
) -> int:
    """Make a Qwen-family tokenizer (and model) write coordinates as single tokens.

    Adds whichever `<k>` are not yet single tokens; when `model` is given, resizes its input and
    output embeddings to the new vocabulary and initialises the coordinate rows:
    - "sinusoidal": a sinusoidal code of the bin (scaled to the embeddings' typical norm), so
      `<k>` and `<k+1>` start close and the model does not learn 1000 unrelated symbols;
    - "mean": the mean of the existing embeddings (transformers' own default for new rows);
    - None: leave the new rows as `resize_token_embeddings` made them.
    Returns the number of tokens added. Idempotent.
    """
    if init not in ("sinusoidal", "mean", None):
        raise ValueError(f"init must be 'sinusoidal', 'mean' or None, got {init!r}")
    from tokenizers import AddedToken

    missing = [t for t in COORDINATE_TOKENS if len(tokenizer.encode(t, add_special_tokens=False)) != 1]
    added = tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in missing])
    check_coordinate_tokens(tokenizer)
    if model is None:
        return added
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=init == "mean")
    if init == "sinusoidal":
        init_coordinate_embeddings(model, coordinate_token_ids(tokenizer))
    return added


def sinusoidal_codes(num: int, dim: int, scale: float = 1.0, shortest: float = 16.0):
    """(num, dim) sinusoidal code of positions 0..num-1, wavelengths geometric from `num` bins
    down to `shortest` bins: nearby bins start near, far bins far, and the code still tells
    bins a few steps apart."""
    import torch

    position = torch.arange(num, dtype=torch.float32)[:, None]
    half = dim // 2
    steps = torch.arange(half, dtype=torch.float32) / max(half - 1, 1)
    wavelength = num * (shortest / num) ** steps
    angle = 2 * math.pi * position / wavelength[None, :]
    code = torch.zeros(num, dim)
    code[:, 0 : 2 * half : 2] = torch.sin(angle)
    code[:, 1 : 2 * half : 2] = torch.cos(angle)
    return code * scale / math.sqrt(half)


def init_coordinate_embeddings(model: PreTrainedModel, coordinate_ids: list[int]) -> None:
    """Give the coordinate rows of the input (and untied output) embeddings a sinusoidal code."""
    import torch

    layers = [model.get_input_embeddings()]
    output = model.get_output_embeddings()
    if output is not None and output.weight is not layers[0].weight:
        layers.append(output)
    ids = torch.tensor(coordinate_ids)
    with torch.no_grad():
        for layer in layers:
            weight = layer.weight
            others = torch.ones(weight.shape[0], dtype=torch.bool)
            others[ids] = False
            norm = weight[others].norm(dim=-1).mean().item() if others.any() else 1.0
            code = sinusoidal_codes(len(ids), weight.shape[1], scale=norm)
            weight[ids] = code.to(weight.dtype)
