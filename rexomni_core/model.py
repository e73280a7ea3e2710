"""RexOmni: load a Rex-Omni checkpoint and detect by writing coordinate tokens.

One code path serves the released 3B checkpoint (`IDEA-Research/Rex-Omni`, a Qwen2.5-VL model)
and the embedded Rex-Omni-nano (the same `Qwen2_5_VLForConditionalGeneration` class at a tiny
size, shipped in `assets/nano/`): `AutoProcessor` + the model class, safetensors only, no remote
code. The image goes in at Qwen's smart-resized size; the answer comes back parsed by
`grammar.parse` into regions in ORIGINAL-image pixels.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from transformers import (
    AutoProcessor,
    LogitsProcessor,
    LogitsProcessorList,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
)
from transformers.processing_utils import ProcessorMixin

from .grammar import BOX_END, BOX_START, IM_END, parse
from .images import load_image
from .regions import Prediction
from .tasks import MAX_PIXELS, MIN_PIXELS, SYSTEM_PROMPT, build_prompt
from .tokenizer import check_coordinate_tokens, coordinate_token_ids
from .errors import InputError, MissingInputError

NANO_DIR = Path(__file__).parent / "assets" / "nano"
RELEASED_MODEL_ID = "IDEA-Research/Rex-Omni"
# Nano reads at most 224x224 pixels (64 visual tokens): the nano world's 160-384 px images lose
# little, and training on one shared CPU core is ~2x faster than at native size.
NANO_MAX_PIXELS = 224 * 224

# The released demo's decoding: greedy with a light repetition penalty, stop at <|im_end|>.
# max_new_tokens: the checkpoint's generation_config.json may set a tighter cap (nano: 512).
DEFAULT_GENERATION = {"do_sample": False, "repetition_penalty": 1.05, "max_new_tokens": 2048}
# Written into a checkpoint's config.json when the model sees every image resized to one square
# (side x side, aspect ratio not kept): nano does, because a fixed token grid is what a model this
# small learns to localise on (model card). Answers are normalised bins, so they map back to the
# original image unchanged. Absent (the released checkpoint): Qwen's aspect-preserving resize.
SQUARE_SIDE_KEY = "rexomni_square_side"
# Written into config.json of checkpoints whose coordinate probability is spread over many
# neighbouring bins (nano): plain greedy decoding then writes `None` or `<|box_end|>` although most
# of the mass says a coordinate comes next (model card). Absent: plain greedy, as released.
COORDINATE_MASS_KEY = "rexomni_coordinate_mass_decoding"
NANO_MAX_NEW_TOKENS = 512  # a dense nano scene (40 boxes) answers in about 250 tokens


# --------------------------------------------------------------------------- decoding


class CoordinateMassProcessor(LogitsProcessor):
    """Inside `<|box_start|>…<|box_end|>`, decide *whether* to write a coordinate by the summed
    probability of all bins, then which bin as usual: where the bins together outweigh the
    likeliest other token, every other token is masked; otherwise the bins are. Elsewhere (phrases,
    separators) decoding is untouched. A model sure of its bins decodes exactly as plain greedy."""

    def __init__(self, coordinate_ids: Sequence[int], box_start_id: int, box_end_id: int):
        self.coordinate_ids = torch.as_tensor(list(coordinate_ids))
        self.box_start_id, self.box_end_id = box_start_id, box_end_id
        self._is_coordinate: torch.Tensor | None = None  # vocabulary mask, built at the first step

    def _coordinate_mask(self, vocab_size: int, device: torch.device) -> torch.Tensor:
        mask = self._is_coordinate
        if mask is None or mask.shape[0] != vocab_size or mask.device != device:
            mask = torch.zeros(vocab_size, dtype=torch.bool, device=device)
            mask[self.coordinate_ids.to(device)] = True
            self._is_coordinate = mask
        return mask

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        positions = torch.arange(1, input_ids.shape[1] + 1, device=input_ids.device)
        last_start = torch.where(input_ids == self.box_start_id, positions, 0).max(dim=-1).values
        last_end = torch.where(input_ids == self.box_end_id, positions, 0).max(dim=-1).values
        inside_box = (last_start > last_end)[:, None]
        is_coordinate = self._coordinate_mask(scores.shape[-1], scores.device)
        probs = scores.float().softmax(dim=-1)
        coordinate_mass = probs[:, self.coordinate_ids.to(scores.device)].sum(dim=-1)
        best_other = probs.masked_fill(is_coordinate, 0).max(dim=-1).values
        write_coordinate = (coordinate_mass > best_other)[:, None]
        banned = torch.where(write_coordinate, ~is_coordinate, is_coordinate) & inside_box
        return scores.masked_fill(banned, float("-inf"))


# --------------------------------------------------------------------------- processor


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """Qwen2_5_VLProcessor without its video processor.

    transformers 5 builds the video processor on torchvision; where torchvision is missing (the
    CPU machines this project trains on) `AutoProcessor` raises for every Qwen2.5-VL checkpoint,
    the released one included. Rex-Omni reads images only, so this subclass declares just the
    image processor and tokenizer (ProcessorMixin takes its parts from `__init__`'s signature)
    and otherwise is the released processor: same prompt expansion, same image processing.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        """Save as the released processor lays itself out (`save_processor`). A Trainer calls this
        at every checkpoint; ProcessorMixin's own save would name this subclass in
        processor_config.json and tokenizer_config.json, which AutoProcessor cannot resolve (it
        then returns a bare tokenizer)."""
        if push_to_hub:
            raise NotImplementedError("push the checkpoint directory instead (huggingface-cli upload)")
        save_processor(self, save_directory)
        return []


def load_processor(name_or_path: str | os.PathLike, **hub_kwargs) -> ProcessorMixin:
    """`AutoProcessor.from_pretrained`, with the image-only fallback where torchvision is missing.

    Raises ValueError when what loads is not a full processor: `AutoProcessor` silently returns
    a bare tokenizer for a directory whose processor it cannot identify.
    """
    try:
        processor = AutoProcessor.from_pretrained(name_or_path, **hub_kwargs)
    except ImportError as error:
        if "torchvision" not in str(error).lower():
            raise
        processor = ImageOnlyQwen2_5_VLProcessor.from_pretrained(name_or_path, **hub_kwargs)
    if not (hasattr(processor, "image_processor") and hasattr(processor, "tokenizer")):
        raise InputError(
            f"{name_or_path}: AutoProcessor returned a {type(processor).__name__}, not an image + "
            "text processor. A Rex-Omni checkpoint needs preprocessor_config.json (a Qwen2-VL "
            'image processor, "processor_class": "Qwen2_5_VLProcessor") beside its tokenizer.'
        )
    # Batched generation appends new tokens on the right, so prompts are padded on the left.
    processor.tokenizer.padding_side = "left"
    return processor


# --------------------------------------------------------------------------- device


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


# --------------------------------------------------------------------------- nano


def nano_config(tokenizer, text: dict | None = None, vision: dict | None = None) -> Qwen2_5_VLConfig:
    """Rex-Omni-nano: the real Qwen2.5-VL architecture at a few million parameters.

    Why these numbers (measured on this project's CPU feasibility runs, see the model card):
    - head_dim 64 with M-RoPE sections [2, 3, 3] * 4 instead of Qwen's [16, 24, 24] split:
      transformers assigns rotary chunk i to axis i % 3 (temporal, height, width), so repeating
      the sections interleaves the axes over the frequency range. The contiguous split gives width
      only the lowest frequencies, and a tiny model then learns y but barely x.
    - rope_theta 1000: short sequences (< 1k tokens) need no long-range wavelengths.
    - tied embeddings: the coordinate rows serve both reading (visual prompts) and writing.
    `text` and `vision` override entries of the two sub-configs (tests build smaller models).
    """
    vision = dict(
        depth=4, hidden_size=128, intermediate_size=512, num_heads=4,
        patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
        fullatt_block_indexes=[1, 3],
    ) | (vision or {})
    text = dict(
        vocab_size=len(tokenizer), hidden_size=256, intermediate_size=768, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 1000.0, "mrope_section": [2, 3, 3] * 4},
        bos_token_id=None, eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
        pad_token_id=tokenizer.pad_token_id,
    ) | (text or {})
    vision["out_hidden_size"] = text["hidden_size"]  # the merger feeds the language model
    ids = {
        name: tokenizer.convert_tokens_to_ids(token)
        for name, token in (
            ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
            ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"),
        )
    }
    return Qwen2_5_VLConfig(vision_config=vision, text_config=text, tie_word_embeddings=True, **ids)


def build_nano(seed: int = 0, text: dict | None = None, vision: dict | None = None) -> "RexOmni":
    """A freshly initialised Rex-Omni-nano (random weights, sinusoidal coordinate embeddings)
    with its tokenizer and a PIL image processor: the starting point of nano training.
    `text`/`vision` override the architecture (see `nano_config`)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from .tokenizer import build_nano_tokenizer, coordinate_token_ids, init_coordinate_embeddings

    tokenizer = build_nano_tokenizer()
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=MIN_PIXELS, max_pixels=NANO_MAX_PIXELS, patch_size=14, merge_size=2
    )
    processor = ImageOnlyQwen2_5_VLProcessor(image_processor, tokenizer, tokenizer.chat_template)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(nano_config(tokenizer, text, vision))
    init_coordinate_embeddings(model, coordinate_token_ids(tokenizer))
    model.generation_config.max_new_tokens = NANO_MAX_NEW_TOKENS
    nano = RexOmni(model, processor)
    nano.coordinate_mass_decoding = True
    return nano


# --------------------------------------------------------------------------- model


@dataclass
class Request:
    """One prediction request, validated and turned into its prompt."""

    image: Image.Image
    prompt: str


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
    def coordinate_mass_decoding(self) -> bool:
        """Whether generation decides coordinate-or-not by the bins' summed probability."""
        return bool(getattr(self.model.config, COORDINATE_MASS_KEY, False))

    @coordinate_mass_decoding.setter
    def coordinate_mass_decoding(self, enabled: bool) -> None:
        setattr(self.model.config, COORDINATE_MASS_KEY, bool(enabled))

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
    ) -> "RexOmni":
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
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]},
        ]
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
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
        **generation: Any,
    ) -> Prediction:
        """Detect `categories` (or the task's objects) in one image; regions in original pixels."""
        return self.predict_batch(
            [image],
            task=task,
            categories=categories,
            keypoint_type=keypoint_type,
            visual_prompt_boxes=None if visual_prompt_boxes is None else [visual_prompt_boxes],
            decode=decode,
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
        **generation: Any,
    ) -> list[Prediction]:
        """One generate() call for several images (left-padded prompts).

        `categories` is one phrase list for every image, or one list per image;
        `visual_prompt_boxes` is one list of reference boxes per image.
        `seconds` of each prediction is the batch's wall time shared equally.
        """
        requests = self._requests(images, task, categories, keypoint_type, visual_prompt_boxes)
        settings = dict(DEFAULT_GENERATION)
        if self.model.generation_config.max_new_tokens:
            settings["max_new_tokens"] = self.model.generation_config.max_new_tokens
        settings.update(generation)
        if self.coordinate_mass_decoding:
            processors = LogitsProcessorList(settings.get("logits_processor") or [])
            processors.append(CoordinateMassProcessor(self.coordinate_ids, *self.box_ids))
            settings["logits_processor"] = processors
        eos = self.tokenizer.convert_tokens_to_ids(IM_END)
        start = time.perf_counter()
        inputs = self.encode([r.image for r in requests], [self.chat_text(r.prompt) for r in requests])
        self._check_positions(inputs["input_ids"].shape[1], settings["max_new_tokens"])
        inputs = inputs.to(self.device)
        with torch.inference_mode():
            output = self.model.generate(
                **inputs, eos_token_id=eos, pad_token_id=self.tokenizer.pad_token_id, **settings
            )
        seconds = (time.perf_counter() - start) / len(requests)
        prompt_length = inputs["input_ids"].shape[1]
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        predictions = []
        for i, request in enumerate(requests):
            new = output[i, prompt_length:].tolist()
            # Keep everything up to and including the first <|im_end|>; what follows is padding.
            new = new[: new.index(eos) + 1] if eos in new else new
            text = self.tokenizer.decode(new, skip_special_tokens=False)
            prediction = parse(text, *request.image.size, task=task, decode=decode)
            prediction.prompt = request.prompt
            prediction.seconds = seconds
            prediction.num_prompt_tokens = int(prompt_tokens[i])
            prediction.num_output_tokens = len(new)
            predictions.append(prediction)
        return predictions

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
            requests.append(Request(pil, prompt))
        return requests


def save_processor(processor: ProcessorMixin, directory: str | os.PathLike) -> None:
    """Save as the released checkpoint lays it out: tokenizer files + preprocessor_config.json
    naming `Qwen2_5_VLProcessor`, so stock `AutoProcessor` (with torchvision) loads it too."""
    processor.tokenizer.save_pretrained(directory)
    processor.image_processor.processor_class = "Qwen2_5_VLProcessor"
    processor.image_processor.save_pretrained(directory)
