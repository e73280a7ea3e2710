"""The checkpoint's processor (image processor + tokenizer): loading, saving, and the image-only
Qwen2.5-VL processor used where torchvision is missing."""

from __future__ import annotations

import os

from transformers import AutoProcessor, Qwen2_5_VLProcessor
from transformers.processing_utils import ProcessorMixin

from ..errors import InputError


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


def save_processor(processor: ProcessorMixin, directory: str | os.PathLike) -> None:
    """Save as the released checkpoint lays it out: tokenizer files + preprocessor_config.json
    naming `Qwen2_5_VLProcessor`, so stock `AutoProcessor` (with torchvision) loads it too."""
    processor.tokenizer.save_pretrained(directory)
    processor.image_processor.processor_class = "Qwen2_5_VLProcessor"
    processor.image_processor.save_pretrained(directory)
