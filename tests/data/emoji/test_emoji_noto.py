"""The Noto style: a clear error without the Debian font; real rendering at 109 px where it is installed."""

import pytest
from PIL import ImageFont

from marble.data.emoji import build_emoji_dataset, build_from_sources
from marble.data.emoji import noto
from marble.errors import MarbleError

needs_font = pytest.mark.skipif(
    not noto.FONT_PATH.is_file(), reason="Debian fonts-noto-color-emoji is not installed (scripts/setup.sh --test)"
)


def test_missing_font_says_which_package_to_install(tmp_path, npm_cache, monkeypatch):
    monkeypatch.setattr(noto, "FONT_PATH", tmp_path / "absent" / "NotoColorEmoji.ttf")
    with pytest.raises(MarbleError, match="apt-get install fonts-noto-color-emoji"):
        build_emoji_dataset(tmp_path / "emoji", cache_dir=npm_cache, progress=False, styles="twitter,noto")
    assert not (tmp_path / "emoji").exists()


@needs_font
def test_font_renders_only_at_109_pixels():
    assert noto.FONT_SIZE == 109
    with pytest.raises(OSError, match="invalid pixel size"):
        ImageFont.truetype(str(noto.FONT_PATH), 64)


@needs_font
def test_emoji_render_as_one_colour_glyph():
    font = noto.load_font(noto.FONT_PATH)
    fox = noto.render(font, "\U0001F98A")
    assert fox.mode == "RGBA" and fox.size == (136, 128)  # the font's bitmap size at 109 ppem
    red, green, blue, alpha = fox.getpixel((68, 64))
    assert alpha == 255 and red > 200 and blue < 100  # an orange fox, not a grey outline
    for sequence in ("\U0001F468\u200d\U0001F469\u200d\U0001F466", "#\ufe0f\u20e3", "\U0001F44B\U0001F3FB",
                     "\U0001F1EB\U0001F1F7"):  # ZWJ family, keycap, skin tone, flag: shaped into one glyph each
        assert noto.render(font, sequence).size == (136, 128)


@needs_font
def test_what_the_font_cannot_draw_is_none():
    font = noto.load_font(noto.FONT_PATH)
    assert noto.render(font, "A") is None  # no glyph at all
    assert noto.render(font, "\U0001F98A\u200d\U0001F98A") is None  # no such sequence: two glyphs side by side


@needs_font
def test_noto_style_in_a_build(tmp_path, fake_packages, read_metadata):
    packages = fake_packages(tmp_path / "npm")
    sources = {"twitter": packages["twitter"], "noto": noto.FONT_PATH}
    summary = build_from_sources(packages["twitter"], packages["emojibase"], sources, tmp_path / "emoji", ("en",),
                                 size=16, progress=False)
    assert summary.styles["noto"].written == 5 and summary.in_every_style == 5
    hearts = [r for r in read_metadata(tmp_path / "emoji") if r["hexcode"] == "2764"]
    assert [(r["style"], r["text"]) for r in hearts] == [("twitter", "red heart, twemoji style"),
                                                        ("noto", "red heart, noto style")]
