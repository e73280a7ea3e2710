"""The nano world's words: the colours, shapes and GUI elements its scenes are made of.

One place, read by the worlds that draw the scenes (`data/worlds`), by the corpus a new nano's
tokenizer is trained on (`tokenizer.build_nano_tokenizer`) and by the tests' tiny shapes world, so
that a prompt never names a word the tokenizer was not trained on. Words that belong to another
concept stay with it and are read from there: keypoint names and OCR granularities (`tasks`), the
OCR alphabet (`data/worlds/ocr.py`), referring-expression words (`data/referring.py`).

Orders matter: the worlds draw by index, so reordering a tuple changes every generated scene.
"""

from __future__ import annotations

# Each colour word with the RGB it names: the word means that colour, so the two live together
# (the shapes world jitters around it; backgrounds are kept far from all of them).
OBJECT_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "yellow": (240, 210, 40),
    "green": (40, 170, 60),
    "cyan": (40, 200, 210),
    "blue": (40, 80, 220),
    "magenta": (200, 50, 200),
}
COLOURS = tuple(OBJECT_COLOURS)
SHAPES = ("circle", "square", "triangle", "star", "hexagon")
# The shapes world's categories, "<colour> <shape>" colour by colour (fixes the COCO category ids).
SHAPE_CATEGORIES = tuple(f"{colour} {shape}" for colour in COLOURS for shape in SHAPES)
# Two colours the shipped nano has never seen: only the shapes world's `novel` split draws them, a
# stand-in for a user's own data in fine-tuning demonstrations (NANO_WORLD.md). They stay out of
# COLOURS and SHAPE_CATEGORIES, which the nano's training stream and its tokenizer's corpus read.
NOVEL_COLOURS: dict[str, tuple[int, int, int]] = {
    "orange": (240, 130, 20),
    "purple": (110, 40, 160),
}
NOVEL_SHAPE_CATEGORIES = tuple(f"{colour} {shape}" for colour in NOVEL_COLOURS for shape in SHAPES)

# GUI: the role of every element, and the label pool each kind of element draws from.
GUI_ROLES = ("title bar", "text field", "checkbox", "button", "icon")
APP_TITLES = ("Notes", "Mail", "Settings", "Photos", "Editor", "Music", "Files", "Calendar", "Maps", "Chat")
BUTTON_LABELS = (
    "Save", "Cancel", "OK", "Open", "Send", "Delete", "Next", "Back", "Apply", "Search",
    "Login", "Close", "Print", "Share", "Edit", "Help", "Export", "Reset", "Submit", "Undo",
)
FIELD_LABELS = ("Name", "Email", "Search", "Password", "City", "Phone", "Title", "Address", "User", "Code")
CHECKBOX_LABELS = ("Remember me", "Dark mode", "Notifications", "Auto save", "Subscribe", "Show hidden", "Sync", "Wi-Fi")
ICON_LABELS = ("home", "search", "settings", "trash", "star", "heart", "plus", "menu", "close", "play")
# Every word a GUI phrase ("Save button", "title bar") is made of, each once.
GUI_WORDS = tuple(dict.fromkeys(
    GUI_ROLES + APP_TITLES + BUTTON_LABELS + FIELD_LABELS + CHECKBOX_LABELS + ICON_LABELS
))
