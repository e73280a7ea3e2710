"""Rex-Omni-nano's architecture: the real Qwen2.5-VL model at a few million parameters, and the
freshly initialised model nano training starts from. Training-only: inference loads the shipped
checkpoint (`RexOmni.from_pretrained()`)."""

from __future__ import annotations

import torch
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from ..grammar import IM_END
from ..model import ImageOnlyQwen2_5_VLProcessor, RexOmni
from ..model.configuration import TRAINED_TASKS_KEY
from ..tasks import MIN_PIXELS
from ..tokenizer import build_nano_tokenizer, coordinate_token_ids, init_coordinate_embeddings

# Nano reads at most 224x224 pixels (64 visual tokens): the nano world's 160-384 px images lose
# little, and training on one shared CPU core is ~2x faster than at native size.
NANO_MAX_PIXELS = 224 * 224
NANO_MAX_NEW_TOKENS = 512  # a dense nano scene (40 boxes) answers in about 250 tokens


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


def build_nano(seed: int = 0, text: dict | None = None, vision: dict | None = None) -> RexOmni:
    """A freshly initialised Rex-Omni-nano (random weights, sinusoidal coordinate embeddings)
    with its tokenizer and a PIL image processor: the starting point of nano training.
    `text`/`vision` override the architecture (see `nano_config`)."""
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
    setattr(model.config, TRAINED_TASKS_KEY, [])  # trained on nothing yet; training adds its tasks
    return nano
