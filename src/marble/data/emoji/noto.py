"""Noto Color Emoji: Debian's `fonts-noto-color-emoji`, each emoji drawn by Pillow from the font's colour bitmaps."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

from PIL import Image, ImageDraw, ImageFont, features

from marble.data.emoji.concepts import Concept
from marble.data.emoji.source import StyleImage, StyleSource
from marble.errors import MarbleError

FONT_PATH = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
# The font holds colour bitmaps (CBDT) in one strike of 109 pixels per em; FreeType refuses any
# other size. A glyph comes out 136 x 128.
FONT_SIZE = 109
NO_GLYPH = "no single glyph in the font"
ATTRIBUTION = """\
Noto Color Emoji by Google, SIL Open Font License 1.1, https://github.com/googlefonts/noto-emoji,
  from Debian's fonts-noto-color-emoji, drawn with Pillow."""


def fetch(cache_dir: Path) -> Path:
    """The installed font (nothing to download: `cache_dir` is not used)."""
    if not FONT_PATH.is_file():
        raise MarbleError(
            f"the noto style needs the Noto Color Emoji font at {FONT_PATH}: apt-get install fonts-noto-color-emoji"
        )
    if not features.check("raqm"):
        # Without text shaping, ZWJ sequences, flags and skin tones come out as several glyphs.
        raise MarbleError("the noto style needs Pillow with libraqm (the PyPI wheels have it)")
    return FONT_PATH


def load_font(path: Path) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), FONT_SIZE, layout_engine=ImageFont.Layout.RAQM)


def render(font: ImageFont.FreeTypeFont, text: str) -> Image.Image | None:
    """RGBA image of `text` if the font draws it as one glyph, else None (missing or unshaped)."""
    left, top, right, bottom = (round(edge) for edge in font.getbbox(text, mode="RGBA"))
    width, height = right - left, bottom - top
    # A missing code point has an empty box; a sequence the font cannot join is two glyphs wide.
    if height <= 0 or width > 1.5 * height:
        return None
    canvas = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((-left, -top), text, font=font, embedded_color=True)
    return canvas if canvas.getbbox() else None


def draw(font_path: Path, concepts: Sequence[Concept], size: int) -> Iterator[StyleImage]:
    """Each concept rendered at the font's only size; the builder resizes."""
    font = load_font(font_path)
    for concept in concepts:
        image = render(font, concept.text)
        yield StyleImage(concept, image, "" if image is not None else NO_GLYPH)


NOTO = StyleSource("noto", "noto style", ATTRIBUTION, fetch, draw)

__all__ = ["FONT_PATH", "FONT_SIZE", "NO_GLYPH", "NOTO", "load_font", "render"]
