import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from marble.data.emoji import (
    DATASOURCE,
    EMOJIBASE,
    build_emoji_dataset,
    build_from_tarballs,
    normalize_hexcode,
)
from marble.errors import MarbleError

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


def add_member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def png_bytes(colour: tuple[int, int, int]) -> bytes:
    """8x8 RGBA of one colour whose left column is fully transparent."""
    image = Image.new("RGBA", (8, 8), (*colour, 255))
    for y in range(8):
        image.putpixel((0, y), (0, 0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def write_fake_tarballs(folder: Path, emoji_json=EMOJI_JSON) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    datasource = folder / f"{DATASOURCE[0]}-{DATASOURCE[1]}.tgz"
    with tarfile.open(datasource, "w:gz") as archive:
        add_member(archive, "package/emoji.json", json.dumps(emoji_json).encode())
        for number, entry in enumerate(emoji_json):
            for variant in [entry, *(entry.get("skin_variations") or {}).values()]:
                add_member(archive, f"package/img/twitter/64/{variant['image']}", png_bytes((200, number * 50, 0)))
        add_member(archive, "package/img/twitter/32/1f34e.png", b"not the 64 px one")
    emojibase = folder / f"{EMOJIBASE[0]}-{EMOJIBASE[1]}.tgz"
    with tarfile.open(emojibase, "w:gz") as archive:
        for lang, data in LABELS.items():
            add_member(archive, f"package/{lang}/data.json", json.dumps(data, ensure_ascii=False).encode())
            add_member(archive, f"package/{lang}/shortcodes/cldr.json", b"{}")
    return datasource, emojibase


def read_metadata(out_dir: Path) -> dict[str, dict]:
    lines = (out_dir / "metadata.jsonl").read_text(encoding="utf-8").splitlines()
    return {record["hexcode"]: record for record in map(json.loads, lines)}


def test_normalize_hexcode_lowers_and_drops_variation_selector():
    assert normalize_hexcode("2764-FE0F") == "2764"
    assert normalize_hexcode("1F3F3-FE0F-200D-1F308") == "1f3f3-200d-1f308"
    assert normalize_hexcode("1F44B-1F3FB") == "1f44b-1f3fb"


def test_build_joins_images_and_labels(tmp_path):
    datasource, emojibase = write_fake_tarballs(tmp_path / "npm")
    out = tmp_path / "emoji"
    summary = build_from_tarballs(datasource, emojibase, out, ("en", "zh-hant"), progress=False)

    assert summary.count == 5
    assert summary.caption_counts == {"en": 4, "zh-hant": 3}
    records = read_metadata(out)
    assert sorted(records) == ["1f34e", "1f44b", "1f44b-1f3fb", "1f9ea", "2764"]
    assert records["1f34e"] == {
        "file_name": "images/1f34e.png", "text": "red apple", "hexcode": "1f34e",
        "category": "Food & Drink", "subcategory": "food-fruit", "tags": ["apple", "fruit"],
        "captions": {"en": "red apple", "zh-hant": "紅蘋果"},
    }
    assert records["2764"]["captions"] == {"en": "red heart"}
    skin = records["1f44b-1f3fb"]
    assert skin["captions"] == {"en": "waving hand: light skin tone", "zh-hant": "揮手：白皮膚"}
    assert skin["tags"] == ["hello", "wave"] and skin["category"] == "People & Body"
    assert records["1f9ea"]["text"] == "test tube" and records["1f9ea"]["captions"] == {}
    assert "紅蘋果" in (out / "metadata.jsonl").read_text(encoding="utf-8")  # not \u-escaped
    assert "CC-BY 4.0" in (out / "ATTRIBUTION.txt").read_text()


def test_build_writes_rgb_images_on_white(tmp_path):
    datasource, emojibase = write_fake_tarballs(tmp_path / "npm")
    out = tmp_path / "emoji"
    build_from_tarballs(datasource, emojibase, out, ("en",), progress=False)

    assert sorted(p.name for p in (out / "images").iterdir()) == [
        "1f34e.png", "1f44b-1f3fb.png", "1f44b.png", "1f9ea.png", "2764.png",
    ]
    with Image.open(out / "images" / "2764.png") as image:
        assert image.mode == "RGB" and image.size == (8, 8)
        assert image.getpixel((0, 3)) == (255, 255, 255)  # transparent -> white
        assert image.getpixel((5, 3)) == (200, 50, 0)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left


def test_text_is_english_even_without_en_in_langs(tmp_path):
    datasource, emojibase = write_fake_tarballs(tmp_path / "npm")
    summary = build_from_tarballs(datasource, emojibase, tmp_path / "emoji", ("zh-hant",), progress=False)
    records = read_metadata(tmp_path / "emoji")
    assert summary.caption_counts == {"zh-hant": 3}
    assert records["1f34e"]["text"] == "red apple"
    assert records["1f34e"]["captions"] == {"zh-hant": "紅蘋果"}
    assert records["1f34e"]["tags"] == ["apple", "fruit"]


def test_unknown_language_lists_available_ones(tmp_path):
    datasource, emojibase = write_fake_tarballs(tmp_path / "npm")
    with pytest.raises(MarbleError, match=r"\['xx'\].*en, zh-hant"):
        build_from_tarballs(datasource, emojibase, tmp_path / "emoji", ("en", "xx"), progress=False)
    assert not (tmp_path / "emoji").exists()


def test_refuses_non_empty_out_dir_unless_overwrite(tmp_path):
    datasource, emojibase = write_fake_tarballs(tmp_path / "npm")
    out = tmp_path / "emoji"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(MarbleError, match="not empty"):
        build_from_tarballs(datasource, emojibase, out, ("en",), progress=False)
    assert (out / "keep.txt").read_text() == "mine"

    build_from_tarballs(datasource, emojibase, out, ("en",), progress=False, overwrite=True)
    assert not (out / "keep.txt").exists()
    assert len(read_metadata(out)) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emoji", "npm"]


def test_hexcode_that_is_not_a_plain_file_name_is_refused(tmp_path):
    evil = [{"name": "EVIL", "unified": "../../X", "image": "x.png", "category": "", "subcategory": ""}]
    datasource, emojibase = write_fake_tarballs(tmp_path / "npm", emoji_json=evil)
    with pytest.raises(MarbleError, match="unexpected emoji code"):
        build_from_tarballs(datasource, emojibase, tmp_path / "emoji", ("en",), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["npm"]


def test_cached_tarballs_need_no_npm(tmp_path, monkeypatch):
    write_fake_tarballs(tmp_path / "cache")
    monkeypatch.setattr("shutil.which", lambda name: None)
    summary = build_emoji_dataset(tmp_path / "emoji", ("en",), cache_dir=tmp_path / "cache", progress=False)
    assert summary.count == 5


def test_missing_npm_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(MarbleError, match="npm is required.*apt-get install npm"):
        build_emoji_dataset(tmp_path / "emoji", cache_dir=tmp_path / "cache", progress=False)


def test_npm_failure_reports_its_stderr(tmp_path, monkeypatch):
    fake_npm = tmp_path / "npm"
    fake_npm.write_text("#!/bin/sh\necho 'npm error code E404 no such package' >&2\nexit 1\n")
    fake_npm.chmod(0o755)
    monkeypatch.setattr("shutil.which", lambda name: str(fake_npm))
    with pytest.raises(MarbleError, match="npm pack emoji-datasource-twitter@16.0.0 failed:\n.*E404"):
        build_emoji_dataset(tmp_path / "emoji", cache_dir=tmp_path / "cache", progress=False)
    assert os.listdir(tmp_path / "cache") == []  # no half-written tarball cached


@pytest.mark.slow
def test_real_build_from_npm(tmp_path):
    summary = build_emoji_dataset(tmp_path / "emoji", cache_dir=tmp_path / "npm", progress=False)
    assert summary.count == 3786
    assert summary.caption_counts == {"en": 3786, "zh": 3786, "zh-hant": 3786, "ja": 3786}
    apple = read_metadata(tmp_path / "emoji")["1f34e"]
    assert apple["captions"]["zh-hant"] == "紅蘋果" and apple["text"] == "red apple"
    with Image.open(tmp_path / "emoji" / "images" / "1f34e.png") as image:
        assert image.mode == "RGB" and image.size == (64, 64)
