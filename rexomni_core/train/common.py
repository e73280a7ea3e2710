"""What SFT and GRPO share: the Trainer arguments their common fields set, checkpoints that are
complete Rex-Omni directories, resuming from the newest one with its weights, LoRA on the
language model, and the final save.

Both trainers get the processor as `processing_class`, so the Trainer writes it into each
checkpoint before `trainer_state.json`, the file written last: a checkpoint with that file is
complete, whenever the run was killed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from ..model import RexOmni
from .configs import LoraSettings, TrainingConfig

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def training_arguments(config: TrainingConfig) -> dict[str, Any]:
    """The keyword arguments of a transformers `TrainingArguments` (TRL's `GRPOConfig` is one)
    that every stage sets alike from its config; each trainer adds its own."""
    return dict(
        output_dir=str(Path(config.output_dir)),
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        seed=config.seed,
        bf16=config.bf16 and bf16_is_native(),
        use_cpu=not torch.cuda.is_available(),  # transformers wants this said for CPU bf16
        report_to=config.report_to,
    )


def bf16_is_native(cpu_flags: str | None = None) -> bool:
    """Whether bf16 autocast runs at hardware speed here: on a GPU, or a CPU with avx512_bf16 or
    AMX. Elsewhere it is emulated: measured on a 2-core AVX2 CPU (1 thread, nano, batch 16), an
    SFT step took 21.8 s in bf16 against 1.4 s in fp32, so a recipe's `bf16: true` falls back
    to fp32 there, with a notice. `cpu_flags`: /proc/cpuinfo's text (read when None)."""
    if torch.cuda.is_available():
        return True
    if cpu_flags is None:
        try:
            cpu_flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return True  # not Linux: trust the config
    native = any(flag in cpu_flags.split() for flag in ("avx512_bf16", "amx_bf16"))
    if not native:
        print("bf16: this CPU has no native bf16 (avx512_bf16/AMX), training in fp32 instead", flush=True)
    return native


class ResumeWithWeights:
    """Trainer mixin: resuming loads the checkpoint's weights into the model being trained.

    The Trainer's own loading reads `model.safetensors` with `load_state_dict(strict=False)`,
    but Qwen2.5-VL checkpoints are saved under the released key names (`model.layers.*`,
    `visual.*`) that only `from_pretrained` maps onto the live modules (`model.language_model.*`,
    `model.visual.*`). Every key missed, and a resumed run silently went on from its starting
    weights. Here the checkpoint is read by `from_pretrained` and copied in strictly, so a
    mismatch is an error. LoRA adapters (peft's own files) and sharded FSDP/DeepSpeed states keep
    the Trainer's loading, which reads them correctly.
    """

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        live = self.accelerator.unwrap_model(model if model is not None else self.model)
        if hasattr(live, "peft_config") or self.is_fsdp_enabled or self.is_deepspeed_enabled:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        load_weights(live, resume_from_checkpoint)


def load_weights(model, checkpoint: str | Path) -> None:
    """Copy the weights of a saved checkpoint into `model` (same architecture), strictly."""
    first = next(model.parameters())
    saved = type(model).from_pretrained(checkpoint, dtype=first.dtype, use_safetensors=True)
    model.load_state_dict(saved.state_dict(), strict=True)


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
