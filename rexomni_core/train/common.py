"""What SFT and GRPO share: checkpoints that are complete Rex-Omni directories, resuming from
the newest one, LoRA on the language model, and the final save."""

from __future__ import annotations

import json
import re
from pathlib import Path

from transformers import TrainerCallback

from ..model import RexOmni, save_processor
from .configs import LoraSettings

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class SaveRexOmniFiles(TrainerCallback):
    """Make every checkpoint a complete Rex-Omni directory (tokenizer + image processor)."""

    def __init__(self, processor):
        self.processor = processor

    def on_save(self, args, state, control, **kwargs):
        save_processor(self.processor, Path(args.output_dir) / f"checkpoint-{state.global_step}")


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete `checkpoint-N` in `output_dir` (to resume from), or None."""
    found = [
        (int(m.group(1)), path)
        for path in Path(output_dir).glob("checkpoint-*")
        if (m := _CHECKPOINT.match(path.name)) and (path / "trainer_state.json").is_file()
    ]
    return max(found)[1] if found else None


def apply_lora(model, lora: LoraSettings):
    """The model wrapped with LoRA adapters when `lora.r > 0`, else the model itself."""
    if lora.r <= 0:
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        # Only the language model's projections: the vision tower has its own names.
        target_modules=rf"model\.language_model\..*\.({'|'.join(lora.target_modules)})",
    )
    return get_peft_model(model, config)


def save_final(model, processor, output_dir: Path, log_history: list[dict], lora: LoraSettings) -> Path:
    """Write `output_dir/final`: a plain Rex-Omni directory (LoRA merged) and the training log."""
    final = Path(output_dir) / "final"
    if lora.r > 0:
        model = model.merge_and_unload()
    RexOmni(model.eval(), processor).save_pretrained(final)
    (final / "log_history.json").write_text(json.dumps(log_history, indent=1))
    return final
