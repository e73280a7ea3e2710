"""Pictures of conversations: the image with its ground-truth regions, then prompt and answer text."""

from __future__ import annotations

import textwrap

from PIL import Image, ImageDraw, ImageFont

from ..regions import Prediction
from ..viz import annotate
from .samplers import Conversation

PANEL_WIDTH_CHARS = 100


def render_conversation(conversation: Conversation) -> Image.Image:
    image = conversation.image
    if isinstance(image, str):
        image = Image.open(image)
    truth = Prediction(
        regions=list(conversation.regions), raw_text=conversation.answer, problems=[],
        width=conversation.width, height=conversation.height, task=conversation.task,
        phrases=list(conversation.phrases),
    )
    picture = annotate(image, truth)
    font = ImageFont.load_default(size=11)
    lines = [f"task: {conversation.task}"]
    for label, text in (("prompt", conversation.prompt), ("answer", conversation.answer)):
        lines += textwrap.wrap(f"{label}: {text}", PANEL_WIDTH_CHARS)
    line_height = 13
    width = max(picture.width, 6 * PANEL_WIDTH_CHARS + 10)
    sheet = Image.new("RGB", (width, picture.height + line_height * len(lines) + 10), "white")
    sheet.paste(picture, (0, 0))
    text_draw = ImageDraw.Draw(sheet)
    for i, line in enumerate(lines):
        text_draw.text((5, picture.height + 5 + i * line_height), line, font=font, fill=(0, 0, 0))
    return sheet
