"""Noto renderings of a Twemoji dataset's records: same captions, white background, missing glyphs skipped."""

import json

import pytest
from PIL import Image

from marble.data.noto_render import NOTO_FONT, as_tensor, emoji_text, load_noto_font, read_records, write_noto_dataset
from marble.errors import MarbleError

needs_font = pytest.mark.skipif(not NOTO_FONT.is_file(), reason="apt-get install fonts-noto-color-emoji")


def test_hexcodes_become_their_characters():
    assert emoji_text("1f600") == "\U0001F600"
    assert emoji_text("1f468-200d-1f469") == "\U0001F468\u200d\U0001F469"


@needs_font
def test_records_are_rendered_with_their_captions_and_missing_glyphs_skipped(tmp_path):
    records = [{"file_name": "images/1f34e.png", "hexcode": "1f34e", "text": "red apple", "captions": {"zh": "红苹果"}},
               {"file_name": "images/10fffd.png", "hexcode": "10fffd", "text": "not an emoji", "captions": {}}]
    written = write_noto_dataset(records, tmp_path / "noto", load_noto_font(), image_size=16, progress=False)
    assert [r["hexcode"] for r in written] == ["1f34e"]
    saved = [json.loads(line) for line in (tmp_path / "noto" / "metadata.jsonl").read_text().splitlines()]
    assert saved == [{**records[0], "style": "noto"}]
    image = as_tensor(Image.open(tmp_path / "noto" / "images" / "1f34e.png"))  # (3, 16, 16)
    assert image.shape == (3, 16, 16)
    assert image[:, 0, 0].tolist() == [255, 255, 255]  # composited on white
    red = image[0].int() - image[1].int()
    assert red.max() > 100  # an apple is red


def test_missing_font_and_foreign_datasets_are_clear_errors(tmp_path):
    with pytest.raises(MarbleError, match="apt-get install fonts-noto-color-emoji"):
        load_noto_font(tmp_path / "none.ttf")
    with pytest.raises(MarbleError, match="no metadata.jsonl"):
        read_records(tmp_path)
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "a.png", "text": "a"}\n')
    with pytest.raises(MarbleError, match="hexcode"):
        read_records(tmp_path)
