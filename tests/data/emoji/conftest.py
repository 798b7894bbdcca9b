"""Fake npm packages for the emoji builder: tiny tarballs with the real packages' layouts."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from marble.data.emoji import DATASOURCE, EMOJIBASE
from marble.data.emoji.fluent3d import PACKAGE as FLUENT3D
from marble.data.emoji.npm import tarball_name
from marble.data.emoji.openmoji import PACKAGE as OPENMOJI

EMOJI_JSON = [
    {"name": "RED APPLE", "unified": "1F34E", "image": "1f34e.png", "short_names": ["apple"],
     "category": "Food & Drink", "subcategory": "food-fruit"},
    {"name": "HEAVY BLACK HEART", "unified": "2764-FE0F", "image": "2764-fe0f.png", "short_names": ["heart"],
     "category": "Smileys & Emotion", "subcategory": "heart"},
    {"name": "WAVING HAND SIGN", "unified": "1F44B", "image": "1f44b.png", "short_names": ["wave"],
     "category": "People & Body", "subcategory": "hand-fingers-open",
     "skin_variations": {"1F3FB": {"unified": "1F44B-1F3FB", "image": "1f44b-1f3fb.png"}}},
    {"name": "TEST TUBE", "unified": "1F9EA", "image": "1f9ea.png", "short_names": ["test_tube"],
     "category": "Objects", "subcategory": "science", "skin_variations": None},
]
LABELS = {
    "en": [
        {"hexcode": "1F34E", "label": "red apple", "tags": ["apple", "fruit"]},
        {"hexcode": "2764-FE0F", "label": "red heart", "tags": ["heart"]},
        {"hexcode": "1F44B", "label": "waving hand", "tags": ["hello", "wave"],
         "skins": [{"hexcode": "1F44B-1F3FB", "label": "waving hand: light skin tone"}]},
    ],
    "zh-hant": [
        {"hexcode": "1F34E", "label": "紅蘋果", "tags": ["水果"]},
        {"hexcode": "1F44B", "label": "揮手", "tags": ["揮手"],
         "skins": [{"hexcode": "1F44B-1F3FB", "label": "揮手：白皮膚"}]},
    ],
}
GREEN, BLUE = (0, 200, 0), (0, 0, 255)
# Right half green, left half transparent (white once composited), on OpenMoji's 72-unit grid.
HALF_GREEN_SVG = b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 72 72">' \
                 b'<rect x="36" y="0" width="36" height="72" fill="#00c800"/></svg>'


def add_member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def image_bytes(colour: tuple[int, int, int], size: int = 8, fmt: str = "PNG") -> bytes:
    """size x size RGBA of one colour whose left column is fully transparent."""
    image = Image.new("RGBA", (size, size), (*colour, 255))
    for y in range(size):
        image.putpixel((0, y), (0, 0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return buffer.getvalue()


def write_twitter(folder: Path, emoji_json: list[dict]) -> Path:
    tarball = folder / tarball_name(*DATASOURCE)
    with tarfile.open(tarball, "w:gz") as archive:
        add_member(archive, "package/emoji.json", json.dumps(emoji_json).encode())
        for number, entry in enumerate(emoji_json):
            for variant in [entry, *(entry.get("skin_variations") or {}).values()]:
                add_member(archive, f"package/img/twitter/64/{variant['image']}", image_bytes((200, number * 50, 0)))
        add_member(archive, "package/img/twitter/32/1f34e.png", b"not the 64 px one")
    return tarball


def write_emojibase(folder: Path) -> Path:
    tarball = folder / tarball_name(*EMOJIBASE)
    with tarfile.open(tarball, "w:gz") as archive:
        for lang, data in LABELS.items():
            add_member(archive, f"package/{lang}/data.json", json.dumps(data, ensure_ascii=False).encode())
            add_member(archive, f"package/{lang}/shortcodes/cldr.json", b"{}")
    return tarball


def write_fluent3d(folder: Path) -> Path:
    """Apple, heart (fe0f kept in the name, as the package does) and a duplicate; no hand, no test tube."""
    tarball = folder / tarball_name(*FLUENT3D)
    with tarfile.open(tarball, "w:gz") as archive:
        add_member(archive, "package/package.json", b"{}")
        add_member(archive, "package/assets/1f34e.webp", image_bytes(BLUE, size=32, fmt="WEBP"))
        add_member(archive, "package/assets/2764-fe0f.webp", image_bytes(GREEN, size=32, fmt="WEBP"))
        add_member(archive, "package/assets/2764.webp", b"a second file for the same code: ignored")
    return tarball


def write_openmoji(folder: Path) -> Path:
    """Apple, hand, skin-tone hand (corrupt), an emoji no concept has, and black SVGs to ignore."""
    tarball = folder / tarball_name(*OPENMOJI)
    with tarfile.open(tarball, "w:gz") as archive:
        for code in ("1F34E", "1F44B", "E000"):
            add_member(archive, f"package/color/svg/{code}.svg", HALF_GREEN_SVG)
            add_member(archive, f"package/black/svg/{code}.svg", b"<svg/>")
        add_member(archive, "package/color/svg/1F44B-1F3FB.svg", b"<svg not closed")
    return tarball


def write_packages(folder: Path, emoji_json: list[dict] = EMOJI_JSON) -> dict[str, Path]:
    """Every fake package as `npm pack` names it in `folder`: style (or "emojibase") -> tarball."""
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "twitter": write_twitter(folder, emoji_json), "emojibase": write_emojibase(folder),
        "fluent3d": write_fluent3d(folder), "openmoji": write_openmoji(folder),
    }


@pytest.fixture
def fake_packages():
    """`fake_packages(folder, emoji_json=...)` writes the fake tarballs and returns their paths."""
    return write_packages


@pytest.fixture
def npm_cache(tmp_path) -> Path:
    """A cache folder already holding every fake package, so nothing calls npm."""
    write_packages(tmp_path / "npm")
    return tmp_path / "npm"


@pytest.fixture
def read_metadata():
    def read(out_dir: Path) -> list[dict]:
        lines = (Path(out_dir) / "metadata.jsonl").read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines]

    return read
