"""The chat messages Rex-Omni reads: system prompt, one image and the task prompt, then the answer.

One builder for every caller (prediction, supervised data, GRPO prompts). Torch-free, so the
data engines can build training conversations without loading the model.
"""

from __future__ import annotations

from typing import Any

from .tasks import SYSTEM_PROMPT


def chat_messages(prompt: str, image: Any = None, answer: str | None = None, prompt_first: bool = False) -> list[dict]:
    """Qwen2.5-VL chat messages for one image and one prompt.

    `image` goes into the image entry when given (processors that read images from the
    messages); without it the entry is a bare placeholder, for callers that hand the pixels to
    the processor themselves. `answer`, when given, is appended as the assistant's turn.
    The image comes before the prompt, as the released model reads it; `prompt_first` swaps them
    (a nano checkpoint's choice, `RexOmni.prompt_first`).
    """
    image_entry = {"type": "image"} if image is None else {"type": "image", "image": image}
    user = [image_entry, {"type": "text", "text": prompt}]
    messages = [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": user[::-1] if prompt_first else user},
    ]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages
