"""The Twemoji-only build (one style, 64 px): the original `marble data emoji` layout."""

import os

import pytest
from PIL import Image

from marble.data.emoji import build_emoji_dataset, build_from_tarballs, normalize_hexcode
from marble.errors import MarbleError


def by_hexcode(records: list[dict]) -> dict[str, dict]:
    return {record["hexcode"]: record for record in records}


def test_normalize_hexcode_lowers_and_drops_variation_selector():
    assert normalize_hexcode("2764-FE0F") == "2764"
    assert normalize_hexcode("1F3F3-FE0F-200D-1F308") == "1f3f3-200d-1f308"
    assert normalize_hexcode("1F44B-1F3FB") == "1f44b-1f3fb"


def test_build_joins_images_and_labels(tmp_path, fake_packages, read_metadata):
    packages = fake_packages(tmp_path / "npm")
    out = tmp_path / "emoji"
    summary = build_from_tarballs(packages["twitter"], packages["emojibase"], out, ("en", "zh-hant"), progress=False)

    assert summary.count == 5
    assert summary.caption_counts == {"en": 4, "zh-hant": 3}
    records = by_hexcode(read_metadata(out))
    assert sorted(records) == ["1f34e", "1f44b", "1f44b-1f3fb", "1f9ea", "2764"]
    assert records["1f34e"] == {
        "file_name": "images/1f34e.png", "text": "red apple", "hexcode": "1f34e", "style": "twitter",
        "category": "Food & Drink", "subcategory": "food-fruit", "group": "1f34e", "tags": ["apple", "fruit"],
        "captions": {"en": "red apple", "zh-hant": "紅蘋果"},
    }
    assert records["2764"]["captions"] == {"en": "red heart"}
    skin = records["1f44b-1f3fb"]
    assert skin["captions"] == {"en": "waving hand: light skin tone", "zh-hant": "揮手：白皮膚"}
    assert skin["tags"] == ["hello", "wave"] and skin["category"] == "People & Body"
    assert skin["group"] == records["1f44b"]["group"] == "1f44b"  # a skin tone counts with its base emoji
    assert records["1f9ea"]["text"] == "test tube" and records["1f9ea"]["captions"] == {}
    assert "紅蘋果" in (out / "metadata.jsonl").read_text(encoding="utf-8")  # not \u-escaped
    assert "CC-BY 4.0" in (out / "ATTRIBUTION.txt").read_text()
    assert not (out / "holdout.jsonl").exists() and not (tmp_path / "emoji-holdout").exists()


def test_build_writes_rgb_images_on_white(tmp_path, fake_packages):
    packages = fake_packages(tmp_path / "npm")
    out = tmp_path / "emoji"
    build_from_tarballs(packages["twitter"], packages["emojibase"], out, ("en",), progress=False, size=8)

    assert sorted(p.name for p in (out / "images").iterdir()) == [
        "1f34e.png", "1f44b-1f3fb.png", "1f44b.png", "1f9ea.png", "2764.png",
    ]
    with Image.open(out / "images" / "2764.png") as image:
        assert image.mode == "RGB" and image.size == (8, 8)
        assert image.getpixel((0, 3)) == (255, 255, 255)  # transparent -> white
        assert image.getpixel((5, 3)) == (200, 50, 0)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left


def test_text_is_english_even_without_en_in_langs(tmp_path, fake_packages, read_metadata):
    packages = fake_packages(tmp_path / "npm")
    summary = build_from_tarballs(packages["twitter"], packages["emojibase"], tmp_path / "emoji", ("zh-hant",),
                                  progress=False)
    apple = by_hexcode(read_metadata(tmp_path / "emoji"))["1f34e"]
    assert summary.caption_counts == {"zh-hant": 3}
    assert apple["text"] == "red apple"
    assert apple["captions"] == {"zh-hant": "紅蘋果"}
    assert apple["tags"] == ["apple", "fruit"]


def test_unknown_language_lists_available_ones(tmp_path, fake_packages):
    packages = fake_packages(tmp_path / "npm")
    with pytest.raises(MarbleError, match=r"\['xx'\].*en, zh-hant"):
        build_from_tarballs(packages["twitter"], packages["emojibase"], tmp_path / "emoji", ("en", "xx"),
                            progress=False)
    assert not (tmp_path / "emoji").exists()


def test_refuses_non_empty_out_dir_unless_overwrite(tmp_path, fake_packages, read_metadata):
    packages = fake_packages(tmp_path / "npm")
    out = tmp_path / "emoji"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(MarbleError, match="not empty"):
        build_from_tarballs(packages["twitter"], packages["emojibase"], out, ("en",), progress=False)
    assert (out / "keep.txt").read_text() == "mine"

    build_from_tarballs(packages["twitter"], packages["emojibase"], out, ("en",), progress=False, overwrite=True)
    assert not (out / "keep.txt").exists()
    assert len(read_metadata(out)) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emoji", "npm"]


def test_hexcode_that_is_not_a_plain_file_name_is_refused(tmp_path, fake_packages):
    evil = [{"name": "EVIL", "unified": "../../X", "image": "x.png", "category": "", "subcategory": ""}]
    packages = fake_packages(tmp_path / "npm", emoji_json=evil)
    with pytest.raises(MarbleError, match="unexpected emoji code"):
        build_from_tarballs(packages["twitter"], packages["emojibase"], tmp_path / "emoji", ("en",), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["npm"]


def test_cached_tarballs_need_no_npm(tmp_path, npm_cache, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    summary = build_emoji_dataset(tmp_path / "emoji", ("en",), cache_dir=npm_cache, progress=False)
    assert summary.count == 5 and list(summary.styles) == ["twitter"]


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
def test_real_build_from_npm(tmp_path, read_metadata):
    summary = build_emoji_dataset(tmp_path / "emoji", cache_dir=tmp_path / "npm", progress=False)
    assert summary.count == 3786
    assert summary.caption_counts == {"en": 3786, "zh": 3786, "zh-hant": 3786, "ja": 3786}
    apple = by_hexcode(read_metadata(tmp_path / "emoji"))["1f34e"]
    assert apple["captions"]["zh-hant"] == "紅蘋果" and apple["text"] == "red apple"
    with Image.open(tmp_path / "emoji" / "images" / "1f34e.png") as image:
        assert image.mode == "RGB" and image.size == (64, 64)
