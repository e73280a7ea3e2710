"""RexOmni: load a Rex-Omni checkpoint and detect by writing coordinate tokens.

One code path serves the released 3B checkpoint (`IDEA-Research/Rex-Omni`, a Qwen2.5-VL model)
and the embedded Rex-Omni-nano (the same `Qwen2_5_VLForConditionalGeneration` class at a tiny
size, shipped in `assets/nano/`): `AutoProcessor` + the model class, safetensors only, no remote
code. The image goes in at Qwen's smart-resized size; the answer comes back parsed by
`grammar.parse` into regions in ORIGINAL-image pixels.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import Qwen2_5_VLForConditionalGeneration
from transformers.processing_utils import ProcessorMixin

from ..chat import chat_messages
from ..errors import InputError, MissingInputError, UntrainedTaskWarning
from ..grammar import BOX_END, BOX_START, IM_END, parse
from ..images import load_image
from ..regions import Prediction, check_region_filter
from ..tasks import (
    MAX_PIXELS,
    MIN_PIXELS,
    VISUAL_PROMPT_PHRASE,
    build_prompt,
    get_task,
    keypoint_names,
    normalize_categories,
)
from ..tokenizer import check_coordinate_tokens, coordinate_token_ids
from .confidence import (
    CONFIDENCES,
    DEFAULT_CONFIDENCE,
    TokenProbabilities,
    TokenRecord,
    check_confidence,
    region_evidence,
)
from .configuration import (
    COORDINATE_MASS_KEY,
    NANO_DIR,
    PROMPT_FIRST_KEY,
    SQUARE_SIDE_KEY,
    TRAINED_TASKS_KEY,
    default_device,
    default_dtype,
)
from .decoding import (
    AnswerLimits,
    AnswerVocabulary,
    CoordinateMassProcessor,
    GrammarConstraint,
    answer_automaton,
    generation_settings,
    with_processors,
)
from .fast_decode import generate
from .processing import load_processor, save_processor


@dataclass
class Request:
    """One prediction request, validated and turned into its prompt; `phrases` are those the
    answer may name (visual prompting: the reference boxes' group; OCR: none, the text is free)."""

    image: Image.Image
    prompt: str
    phrases: tuple[str, ...] = ()


class RexOmni:
    """A Rex-Omni model (released 3B or nano) with its processor, ready to predict."""

    def __init__(
        self,
        model: Qwen2_5_VLForConditionalGeneration,
        processor: ProcessorMixin,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
    ):
        """`min_pixels`/`max_pixels` bound the smart-resized input. By default: the released
        wrapper's bounds (tasks.MIN_PIXELS, MAX_PIXELS), tightened by the checkpoint's own image
        processor. The released checkpoint's processor is looser than its wrapper, so it gets
        exactly the wrapper's values; nano declares a smaller budget (CPU speed)."""
        check_coordinate_tokens(processor.tokenizer)
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.coordinate_ids = coordinate_token_ids(self.tokenizer)
        self.box_ids = tuple(self.tokenizer.convert_tokens_to_ids([BOX_START, BOX_END]))
        self.answer_vocabulary = AnswerVocabulary(self.tokenizer, self.coordinate_ids)
        size = getattr(processor.image_processor, "size", None) or {}
        self.min_pixels = min_pixels or max(MIN_PIXELS, size.get("shortest_edge") or 0)
        self.max_pixels = max_pixels or min(MAX_PIXELS, size.get("longest_edge") or MAX_PIXELS)

    @property
    def square_side(self) -> int | None:
        """The square every image is resized to before the processor, or None (aspect kept)."""
        return getattr(self.model.config, SQUARE_SIDE_KEY, None)

    @square_side.setter
    def square_side(self, side: int | None) -> None:
        if side is not None and not (isinstance(side, int) and side >= 28):
            raise InputError(f"square_side must be an integer ≥ 28 (one merged image token) or None, got {side!r}")
        setattr(self.model.config, SQUARE_SIDE_KEY, side)

    @property
    def prompt_first(self) -> bool:
        """Whether the prompt comes before the image in the user turn (image first when False)."""
        return bool(getattr(self.model.config, PROMPT_FIRST_KEY, False))

    @prompt_first.setter
    def prompt_first(self, enabled: bool) -> None:
        setattr(self.model.config, PROMPT_FIRST_KEY, bool(enabled))

    @property
    def coordinate_mass_decoding(self) -> bool:
        """Whether generation decides coordinate-or-not by the bins' summed probability."""
        return bool(getattr(self.model.config, COORDINATE_MASS_KEY, False))

    @coordinate_mass_decoding.setter
    def coordinate_mass_decoding(self, enabled: bool) -> None:
        setattr(self.model.config, COORDINATE_MASS_KEY, bool(enabled))

    @property
    def trained_tasks(self) -> tuple[str, ...] | None:
        """The tasks this checkpoint was trained on (config.json's `rexomni_trained_tasks`), or
        None where it does not say (the released checkpoint: every task)."""
        tasks = getattr(self.model.config, TRAINED_TASKS_KEY, None)
        return None if tasks is None else tuple(tasks)

    def untrained_warning(self, task: str) -> str | None:
        """A sentence for the user when this checkpoint was never trained on `task`, else None."""
        known = self.trained_tasks
        if known is None or get_task(task).name in known:
            return None
        return (
            f"This model was never trained on {task.replace('_', ' ')} (it was trained on: "
            f"{', '.join(t.replace('_', ' ') for t in known) or 'nothing yet'}); the answer shows the task's "
            "format, not a useful result."
        )

    @property
    def device(self) -> torch.device:
        return self.model.device

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        attn_implementation: str = "sdpa",
        trust_remote_code: bool = False,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        **hub_kwargs: Any,
    ) -> RexOmni:
        """Load a checkpoint: None → the embedded nano model (offline); else a local directory
        or a hub id (e.g. "IDEA-Research/Rex-Omni"), through the same code."""
        source = NANO_DIR if name_or_path is None else name_or_path
        text = str(source)
        # A hub id is "namespace/name": anything with more slashes, or absolute, is a local path.
        looks_local = Path(source).is_absolute() or text.startswith((".", "~")) or text.count("/") > 1
        if not Path(source).exists() and looks_local:
            raise MissingInputError(f"no checkpoint directory at {text}")
        if name_or_path is None and not (NANO_DIR / "model.safetensors").is_file():
            raise MissingInputError(
                f"the embedded nano checkpoint is missing from {NANO_DIR} (a broken install?)"
            )
        device = torch.device(device) if device is not None else default_device()
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        dtype = dtype or default_dtype(device)
        kwargs = dict(hub_kwargs, trust_remote_code=trust_remote_code)
        try:
            processor = load_processor(source, **kwargs)
            with _quiet_local_loading(Path(source).is_dir()):
                model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
                    source,
                    dtype=dtype,
                    attn_implementation=attn_implementation,
                    use_safetensors=True,
                    **kwargs,
                )
        except OSError as error:
            if Path(source).exists():
                raise
            raise OSError(
                f"could not load {str(source)!r}: it is not a local directory, and the Hugging "
                "Face Hub copy is neither in the local cache nor reachable "
                f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', 'unset')}). Fix: connect and "
                f"run `huggingface-cli download {source}` once, or pass a local directory. "
                f"Cause: {error}"
            ) from error
        return cls(model.to(device), processor, min_pixels=min_pixels, max_pixels=max_pixels)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write model (safetensors), tokenizer and image processor: a directory that
        `from_pretrained` reads back with identical outputs."""
        # Trainers switch the KV cache off; the saved checkpoint is for generation, which wants it.
        # The live model keeps its setting (a trainer may still be using it).
        live_use_cache = getattr(self.model.config, "use_cache", None)  # a fresh config has none
        self.model.config.use_cache = True
        try:
            self.model.save_pretrained(directory, safe_serialization=True)
        finally:
            if live_use_cache is not None:
                self.model.config.use_cache = live_use_cache
        save_processor(self.processor, directory)

    # ----------------------------------------------------------------------- prompts

    def chat_text(self, prompt: str) -> str:
        """The full model input text for one image and one prompt (Qwen2.5-VL chat template)."""
        return self.tokenizer.apply_chat_template(
            chat_messages(prompt, prompt_first=self.prompt_first), tokenize=False, add_generation_prompt=True
        )

    def view(self, image: Image.Image) -> Image.Image:
        """The image as this model reads it before the processor: resized to its square view
        when the checkpoint declares one, else unchanged (the processor smart-resizes)."""
        side = self.square_side
        return image.resize((side, side), Image.BICUBIC) if side else image

    def encode(self, images: Sequence[Image.Image], texts: Sequence[str]) -> dict:
        """Processor call shared by prediction and training: smart-resized pixels + tokens."""
        return self.processor(
            images=[self.view(image) for image in images],
            text=list(texts),
            padding=True,
            return_tensors="pt",
            images_kwargs={"size": {"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels}},
        )

    # ----------------------------------------------------------------------- predict

    def predict(
        self,
        image: Image.Image | np.ndarray | str | os.PathLike,
        task: str = "detection",
        categories: str | Sequence[str] | None = None,
        keypoint_type: str | None = None,
        visual_prompt_boxes: Sequence[Sequence[float]] | None = None,
        decode: str = "center",
        constrained: bool = True,
        score_threshold: float | None = None,
        max_regions: int | None = None,
        max_regions_per_phrase: int | None = None,
        confidence: str = DEFAULT_CONFIDENCE,
        fast_decode: bool = True,
        **generation: Any,
    ) -> Prediction:
        """Detect `categories` (or the task's objects) in one image; regions in original pixels,
        each with a confidence in [0, 1] (see `predict_batch`)."""
        return self.predict_batch(
            [image],
            task=task,
            categories=categories,
            keypoint_type=keypoint_type,
            visual_prompt_boxes=None if visual_prompt_boxes is None else [visual_prompt_boxes],
            decode=decode,
            constrained=constrained,
            score_threshold=score_threshold,
            max_regions=max_regions,
            max_regions_per_phrase=max_regions_per_phrase,
            confidence=confidence,
            fast_decode=fast_decode,
            **generation,
        )[0]

    def predict_batch(
        self,
        images: Sequence[Image.Image | np.ndarray | str | os.PathLike],
        task: str = "detection",
        categories: str | Sequence[str] | Sequence[Sequence[str]] | None = None,
        keypoint_type: str | None = None,
        visual_prompt_boxes: Sequence[Sequence[Sequence[float]]] | None = None,
        decode: str = "center",
        constrained: bool = True,
        score_threshold: float | None = None,
        max_regions: int | None = None,
        max_regions_per_phrase: int | None = None,
        confidence: str = DEFAULT_CONFIDENCE,
        fast_decode: bool = True,
        **generation: Any,
    ) -> list[Prediction]:
        """One decoding of several images (left-padded prompts): by the lean greedy loop of
        `model/fast_decode.py`, which writes `generate`'s tokens faster at nano's scale, unless a
        generation setting needs `generate` (sampling, beams, ...) or `fast_decode=False` asks for
        it (the same answers, token for token).

        `categories` is one phrase list for every image, or one list per image;
        `visual_prompt_boxes` is one list of reference boxes per image.
        `seconds` of each prediction is the batch's wall time shared equally.

        `constrained` (default): the answer can only be the task's grammar (`model/decoding.py`),
        with at most `max_regions` regions and `max_regions_per_phrase` per phrase; False decodes
        freely, as the released wrapper does (`max_regions_per_phrase` then bounds nothing).
        Every region gets `score`, the `confidence` definition (`model/confidence.py`) of the
        model's own token probabilities; regions below `score_threshold` are dropped, and of the
        rest at most `max_regions`, the highest-scoring, are kept (`Prediction.filtered`).
        """
        check_region_filter(score_threshold, max_regions)
        check_region_filter(None, max_regions_per_phrase, "max_regions_per_phrase")
        check_confidence(confidence)
        untrained = self.untrained_warning(task)
        if untrained:
            warnings.warn(untrained, UntrainedTaskWarning, stacklevel=3)
        requests = self._requests(images, task, categories, keypoint_type, visual_prompt_boxes)
        settings = generation_settings(self.model.generation_config.max_new_tokens, generation)
        eos = self.tokenizer.convert_tokens_to_ids(IM_END)
        start = time.perf_counter()
        inputs = self.encode([r.image for r in requests], [self.chat_text(r.prompt) for r in requests])
        prompt_length = inputs["input_ids"].shape[1]
        self._check_positions(prompt_length, settings["max_new_tokens"])
        recorder = TokenProbabilities(self.coordinate_ids)
        constraint = None
        if constrained:
            limits = AnswerLimits(max_regions=max_regions, max_regions_per_phrase=max_regions_per_phrase)
            names = keypoint_names(keypoint_type) if get_task(task).needs_keypoint_type else None
            automata = [answer_automaton(self.answer_vocabulary, get_task(task), r.phrases, names, limits) for r in requests]
            constraint = GrammarConstraint(automata, prompt_length, settings["max_new_tokens"])
        coordinate_mass = (
            CoordinateMassProcessor(self.coordinate_ids, *self.box_ids) if self.coordinate_mass_decoding else None
        )
        padding = (inputs["attention_mask"] == 0).sum(dim=1).to(self.device)
        settings = with_processors(settings, recorder, constraint, coordinate_mass, prompt_padding=padding)
        inputs = inputs.to(self.device)
        with torch.inference_mode():
            output = generate(self.model, inputs, settings, eos, self.tokenizer.pad_token_id, fast=fast_decode)
        records = recorder.finish(output[:, -1])
        seconds = (time.perf_counter() - start) / len(requests)
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        predictions = []
        for i, request in enumerate(requests):
            new = output[i, prompt_length:].tolist()
            # Keep everything up to and including the first <|im_end|>; what follows is padding.
            new = new[: new.index(eos) + 1] if eos in new else new
            text = self.tokenizer.decode(new, skip_special_tokens=False)
            prediction = parse(text, *request.image.size, task=task, decode=decode)
            self._score(prediction, new, records[i], confidence)
            prediction.prompt = request.prompt
            prediction.seconds = seconds
            prediction.num_prompt_tokens = int(prompt_tokens[i])
            prediction.num_output_tokens = len(new)
            predictions.append(prediction.filtered(score_threshold, max_regions))
        return predictions

    def _score(self, prediction: Prediction, tokens: list[int], record: TokenRecord, confidence: str) -> None:
        """Fill `score` of every region from the token probabilities of its answer; a region no
        run of coordinate tokens decodes to (none does in a parsed answer) scores 0."""
        definition = CONFIDENCES[confidence]
        evidence = region_evidence(prediction, tokens, record, self.answer_vocabulary)
        for region, found in zip(prediction.regions, evidence):
            region.score = 0.0 if found is None else definition(found)

    def _check_positions(self, prompt_tokens: int, max_new_tokens: int) -> None:
        """Refuse a prompt whose answer could run past the model's positions (nano has 4 096):
        beyond them generation would go on with positions the model never saw, silently."""
        limit = self.model.config.text_config.max_position_embeddings
        if prompt_tokens + max_new_tokens > limit:
            raise InputError(
                f"the prompt is {prompt_tokens} tokens (image and categories); with up to {max_new_tokens} "
                f"answer tokens that exceeds this model's {limit} positions: ask fewer or shorter categories "
                "per prompt, or lower max_new_tokens"
            )

    @staticmethod
    def _answer_phrases(task: str, categories) -> tuple[str, ...]:
        spec = get_task(task)
        if spec.needs_visual_prompt:
            return (VISUAL_PROMPT_PHRASE,)
        return () if spec.ocr else tuple(normalize_categories(categories) or ())

    def _requests(self, images, task, categories, keypoint_type, visual_prompt_boxes) -> list[Request]:
        if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray)):
            raise InputError("predict_batch takes a list of images; use predict for one image")
        if not images:
            raise InputError("predict_batch needs at least one image")
        per_image = (
            categories is not None
            and not isinstance(categories, str)
            and len(categories) > 0
            and all(isinstance(c, (list, tuple)) for c in categories)
        )
        if per_image and len(categories) != len(images):
            raise InputError(f"{len(categories)} category lists for {len(images)} images")
        if visual_prompt_boxes is not None and len(visual_prompt_boxes) != len(images):
            raise InputError(f"{len(visual_prompt_boxes)} visual prompts for {len(images)} images")
        requests = []
        for i, image in enumerate(images):
            pil = load_image(image)
            prompt = build_prompt(
                task,
                categories[i] if per_image else categories,
                keypoint_type=keypoint_type,
                visual_prompt_boxes=None if visual_prompt_boxes is None else visual_prompt_boxes[i],
                width=pil.width,
                height=pil.height,
            )
            requests.append(Request(pil, prompt, self._answer_phrases(task, categories[i] if per_image else categories)))
        return requests


@contextlib.contextmanager
def _quiet_local_loading(local: bool):
    """Without transformers' "Loading weights" bar for a local checkpoint, which loads in a
    moment (it printed on every `rexomni predict`); a hub download keeps its progress bars."""
    from transformers.utils import logging as transformers_logging

    hide = local and transformers_logging.is_progress_bar_enabled()
    if hide:
        transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if hide:
            transformers_logging.enable_progress_bar()
