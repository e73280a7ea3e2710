"""Pictures of conversations: the image with its ground-truth regions, then prompt and answer text."""

from __future__ import annotations

import textwrap

from PIL import Image, ImageDraw, ImageFont

from .samplers import Conversation

REGION_COLOUR = (255, 0, 90)
PANEL_WIDTH_CHARS = 100


def render_conversation(conversation: Conversation) -> Image.Image:
    image = conversation.image
    if isinstance(image, str):
        image = Image.open(image)
    picture = image.convert("RGB").copy()
    draw = ImageDraw.Draw(picture)
    for region in conversation.regions:
        if region.kind == "box":
            draw.rectangle(region.coords, outline=REGION_COLOUR, width=1)
        elif region.kind == "polygon":
            draw.polygon(region.coords, outline=REGION_COLOUR)
        elif region.kind == "point":
            x, y = region.coords
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], outline=(255, 255, 255), fill=REGION_COLOUR)
        else:  # keypoints
            draw.rectangle(region.bounds(), outline=REGION_COLOUR, width=1)
            for xy in region.coords.values():
                if xy is not None:
                    draw.ellipse([xy[0] - 2, xy[1] - 2, xy[0] + 2, xy[1] + 2], fill=REGION_COLOUR)
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
