"""What every emoji style source provides, and the steps they share.

A source fetches one file (an npm tarball or a font) and draws each concept from it, or says
why it cannot. The builder turns every drawing into a square RGB image on white.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from PIL import Image

from marble.data.emoji.concepts import Concept, normalize_hexcode
from marble.data.emoji.npm import iter_members, member_names
from marble.data.folder import flatten_on_white, pad_to_square

# Lanczos for every size change: it keeps edges sharpest when Fluent's 256 px or Noto's 136 px
# shrink, and blurs the least (with slight ringing) when Twemoji's 64 px doubles to 128.
RESAMPLING = Image.Resampling.LANCZOS
NOT_IN_PACKAGE = "not in the package"
UNREADABLE = "unreadable file"


@dataclass(frozen=True)
class StyleImage:
    """One concept drawn by one style: an image, or the reason there is none."""

    concept: Concept
    image: Image.Image | None  # any mode, at the source's own size
    skipped: str = ""


@dataclass(frozen=True)
class StyleSource:
    name: str  # as typed after --styles
    caption: str  # appended to captions: "fox, 3d style"
    attribution: str
    fetch: Callable[[Path], Path]  # npm cache folder -> the file its images come from
    draw: Callable[[Path, Sequence[Concept], int], Iterator[StyleImage]]  # (file, concepts, size)


def to_square_rgb(image: Image.Image, size: int) -> Image.Image:
    """Composite on white, centre on a white square, resize to size x size."""
    square = pad_to_square(flatten_on_white(image))
    return square if square.size == (size, size) else square.resize((size, size), RESAMPLING)


def index_members(
    names: Sequence[str], folder: str, suffix: str, recode: Callable[[str], str | None] = lambda code: code
) -> dict[str, str]:
    """hexcode -> member name of each `folder/<code><suffix>`; the first name wins a duplicate code.

    `recode` maps a normalised code to the emoji the file really shows (None: leave it out).
    """
    found: dict[str, str] = {}
    for name in sorted(names):
        stem = name.removeprefix(folder)
        if name.startswith(folder) and stem.endswith(suffix) and "/" not in stem:
            code = recode(normalize_hexcode(stem.removesuffix(suffix)))
            if code is not None:
                found.setdefault(code, name)
    return found


def draw_from_tarball(
    tarball: Path, members: dict[str, str], concepts: Sequence[Concept], decode: Callable[[bytes], Image.Image]
) -> Iterator[StyleImage]:
    """Each concept's image decoded from `members` (hexcode -> member name): missing ones first."""
    wanted = {concept.hexcode: concept for concept in concepts}
    for concept in concepts:
        if concept.hexcode not in members:
            yield StyleImage(concept, None, NOT_IN_PACKAGE)
    names = {members[code]: wanted[code] for code in wanted if code in members}
    for name, data in iter_members(tarball, list(names)):
        try:
            image = decode(data)
        except Exception:  # decoders raise assorted types on corrupt data
            yield StyleImage(names[name], None, UNREADABLE)
            continue
        yield StyleImage(names[name], image)


def decode_raster(data: bytes) -> Image.Image:
    """A PNG or WebP file, fully loaded (the first frame of an animation)."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.copy()


def draw_tarball_folder(
    folder: str, suffix: str, decode: Callable[[bytes, int], Image.Image],
    recode: Callable[[str], str | None] = lambda code: code,
):
    """A `StyleSource.draw` for packages holding one `<hexcode><suffix>` per emoji; decode(data, size)."""

    def draw(tarball: Path, concepts: Sequence[Concept], size: int) -> Iterator[StyleImage]:
        members = index_members(member_names(tarball), folder, suffix, recode)
        return draw_from_tarball(tarball, members, concepts, lambda data: decode(data, size))

    return draw


__all__ = [
    "RESAMPLING", "NOT_IN_PACKAGE", "UNREADABLE", "StyleImage", "StyleSource", "to_square_rgb", "index_members",
    "draw_from_tarball", "decode_raster", "draw_tarball_folder",
]
