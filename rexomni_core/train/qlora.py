"""QLoRA for `train_sft` (`SFTConfig.quantization: nf4`): the language model loaded in 4 bits
through bitsandbytes on a CUDA GPU, LoRA trained over it, and the adapter merged at the end into
the model's full-precision weights, so `final/` is an ordinary checkpoint like any other run's.

The vision tower and the output projection stay in bf16 (they are frozen, and small beside the
language model, which is where the memory goes). Written for the released 3B; untested on a GPU
here (no CUDA machine): only `with_full_precision_base` runs in the CPU tests.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from ..model import NANO_DIR, RexOmni
from ..model.processing import load_processor

# Module names bitsandbytes leaves unquantized: the vision tower and the output projection.
KEEP_FULL_PRECISION = ["visual", "lm_head"]


def load_4bit(source: str | Path | None) -> RexOmni:
    """The checkpoint (None: the shipped nano) with its language model in 4-bit NF4 (bf16
    compute, double quantization), on the first GPU."""
    from transformers import BitsAndBytesConfig, Qwen2_5_VLForConditionalGeneration

    source = NANO_DIR if source is None else source
    quantization = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_use_double_quant=True, llm_int8_skip_modules=KEEP_FULL_PRECISION,
    )
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        source, quantization_config=quantization, dtype=torch.bfloat16, device_map={"": 0}, use_safetensors=True,
    )
    return RexOmni(model, load_processor(source))


def prepare_4bit(model):
    """Every weight frozen and the unquantized ones in fp32 (peft's preparation for k-bit
    training); gradient checkpointing is left to the Trainer's arguments."""
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def with_full_precision_base(trained, source: str | Path | None):
    """The adapter of `trained` (a peft model over the 4-bit base) on the base loaded again from
    `source` in bf16: merging it there keeps the merged weights out of the 4-bit grid."""
    from peft import PeftModel

    base = RexOmni.from_pretrained(source, dtype=torch.bfloat16).model
    with tempfile.TemporaryDirectory(prefix="rexomni-adapter-") as folder:
        trained.save_pretrained(folder)  # peft writes the adapter alone
        return PeftModel.from_pretrained(base, folder)
