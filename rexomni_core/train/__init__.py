"""Training: SFT and GRPO on the real Qwen2.5-VL architecture."""
