"""Noto Color Emoji renderings of the emoji in a built Twemoji dataset, with the same captions: a second style.

Debian's `fonts-noto-color-emoji` ships one colour bitmap font whose glyphs are 136×128 at size
109, its only bitmap size; Pillow draws them in colour with `embedded_color=True`. The captions
are the Twemoji dataset's own records (emojibase labels joined by hexcode), so both styles of an
emoji carry the same words.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from tqdm.auto import tqdm

from marble.data.folder import flatten_on_white, pad_to_square
from marble.errors import MarbleError

NOTO_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
NOTO_SIZE = 109  # the font's one bitmap strike; other sizes fail to load
GLYPH_BOX = (136, 128)  # width, height of a glyph at NOTO_SIZE
ATTRIBUTION = """\
Emoji images: Noto Color Emoji by Google, SIL Open Font License 1.1, from Debian fonts-noto-color-emoji,
  rendered with Pillow, composited on white and resized. Captions: the Twemoji dataset's emojibase labels.
"""


def load_noto_font(path: Path = NOTO_FONT) -> ImageFont.FreeTypeFont:
    if not Path(path).is_file():
        raise MarbleError(f"no Noto Color Emoji font at {path}: apt-get install fonts-noto-color-emoji")
    return ImageFont.truetype(str(path), NOTO_SIZE)


def emoji_text(hexcode: str) -> str:
    """"1f468-200d-1f469" -> the characters of that sequence."""
    return "".join(chr(int(part, 16)) for part in hexcode.split("-"))


def render_emoji(font: ImageFont.FreeTypeFont, hexcode: str, image_size: int) -> Image.Image | None:
    """The emoji drawn on white, square, `image_size` pixels; None if the font has no glyph for it."""
    canvas = Image.new("RGBA", GLYPH_BOX, (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((0, 0), emoji_text(hexcode), font=font, embedded_color=True)
    if canvas.getbbox() is None:  # nothing drawn: an emoji newer than the font
        return None
    square = pad_to_square(flatten_on_white(canvas))
    return square.resize((image_size, image_size), Image.Resampling.LANCZOS)


def as_tensor(image: Image.Image) -> torch.Tensor:
    """(3, S, S) uint8, the layout every Marble image tensor has."""
    return torch.from_numpy(np.array(image.convert("RGB"), dtype=np.uint8)).permute(2, 0, 1).contiguous()


def read_records(dataset_dir: Path) -> list[dict]:
    """The metadata.jsonl records of a dataset built by `marble data emoji` (each has a "hexcode")."""
    path = Path(dataset_dir) / "metadata.jsonl"
    if not path.is_file():
        raise MarbleError(f"{dataset_dir} has no metadata.jsonl: build it with `marble data emoji --out {dataset_dir}`")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not records or any("hexcode" not in record for record in records):
        raise MarbleError(f"{path}: every record needs a \"hexcode\" (a dataset from `marble data emoji`)")
    return records


def write_noto_dataset(records: Iterable[dict], out_dir: Path, font: ImageFont.FreeTypeFont, image_size: int = 64,
                       progress: bool = True) -> list[dict]:
    """Render each record's emoji into `out_dir` (imagefolder layout); returns the records written."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    written = []
    for record in tqdm(list(records), desc="noto images", unit="img", disable=not progress):
        image = render_emoji(font, record["hexcode"], image_size)
        if image is not None:
            image.save(out_dir / "images" / f"{record['hexcode']}.png")
            written.append({**record, "file_name": f"images/{record['hexcode']}.png", "style": "noto"})
    lines = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in written)
    (out_dir / "metadata.jsonl").write_text(lines, encoding="utf-8")
    (out_dir / "ATTRIBUTION.txt").write_text(ATTRIBUTION)
    return written


__all__ = ["NOTO_FONT", "load_noto_font", "emoji_text", "render_emoji", "as_tensor", "read_records",
           "write_noto_dataset"]
