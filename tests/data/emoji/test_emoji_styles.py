"""Several styles in one dataset: layout, style captions, resizing, and what each style lacks."""

import sys

import pytest
from PIL import Image

from marble.data.emoji import build_emoji_dataset, build_from_sources
from marble.data.emoji.fluent3d import shown_hexcode
from marble.data.emoji.npm import tarball_name
from marble.data.emoji.source import NOT_IN_PACKAGE, UNREADABLE, index_members, to_square_rgb
from marble.data.emoji.styles import parse_styles
from marble.errors import MarbleError

BLUE, GREEN, WHITE = (0, 0, 255), (0, 200, 0), (255, 255, 255)


def build_three(tmp_path, fake_packages, **options):
    packages = fake_packages(tmp_path / "npm")
    sources = {style: packages[style] for style in ("twitter", "fluent3d", "openmoji")}
    return build_from_sources(packages["twitter"], packages["emojibase"], sources, tmp_path / "emoji",
                              ("en", "zh-hant"), size=16, progress=False, **options)


def test_each_style_draws_what_its_package_has(tmp_path, fake_packages):
    summary = build_three(tmp_path, fake_packages)
    styles = summary.styles
    assert list(styles) == ["twitter", "fluent3d", "openmoji"]
    assert (styles["twitter"].written, dict(styles["twitter"].skipped)) == (5, {})
    # The duplicate "2764.webp" is ignored; "2764-fe0f.webp" joins to the heart by its normalised code.
    assert (styles["fluent3d"].written, dict(styles["fluent3d"].skipped)) == (2, {NOT_IN_PACKAGE: 3})
    # OpenMoji's extra E000 matches no concept; its corrupt skin-tone SVG is skipped, not fatal.
    assert (styles["openmoji"].written, dict(styles["openmoji"].skipped)) == (2, {NOT_IN_PACKAGE: 2, UNREADABLE: 1})
    assert summary.count == 9 and summary.concepts == 5
    assert summary.in_every_style == 1  # only the apple is in all three
    assert summary.caption_counts == {"en": 8, "zh-hant": 6}


def test_captions_name_the_style_and_files_sit_in_style_folders(tmp_path, fake_packages, read_metadata):
    build_three(tmp_path, fake_packages)
    records = read_metadata(tmp_path / "emoji")
    assert [(r["style"], r["hexcode"]) for r in records] == [
        ("twitter", "1f34e"), ("twitter", "2764"), ("twitter", "1f44b"), ("twitter", "1f44b-1f3fb"),
        ("twitter", "1f9ea"), ("fluent3d", "1f34e"), ("fluent3d", "2764"), ("openmoji", "1f34e"), ("openmoji", "1f44b"),
    ]
    apple_3d = records[5]
    assert apple_3d["file_name"] == "images/fluent3d/1f34e.png"
    assert apple_3d["text"] == "red apple, 3d style"
    assert apple_3d["captions"] == {"en": "red apple, 3d style", "zh-hant": "紅蘋果, 3d style"}
    assert records[0]["text"] == "red apple, twemoji style" and records[7]["text"] == "red apple, openmoji style"
    assert records[4]["text"] == "test tube, twemoji style"  # no emojibase label: emoji.json's name
    for record in records:
        with Image.open(tmp_path / "emoji" / record["file_name"]) as image:
            assert image.mode == "RGB" and image.size == (16, 16)
    attribution = (tmp_path / "emoji" / "ATTRIBUTION.txt").read_text()
    assert all(name in attribution for name in ("Twemoji", "Fluent Emoji", "OpenMoji", "CC BY-SA", "lanczos"))


def test_pixels_of_each_style(tmp_path, fake_packages):
    build_three(tmp_path, fake_packages)
    images = tmp_path / "emoji" / "images"
    with Image.open(images / "openmoji" / "1f34e.png") as openmoji:  # rasterised at 16 px, not resized
        assert openmoji.getpixel((2, 8)) == WHITE and openmoji.getpixel((13, 8)) == GREEN
    with Image.open(images / "fluent3d" / "1f34e.png") as fluent:  # 32 px WebP halved
        assert fluent.getpixel((8, 8)) == BLUE and fluent.getpixel((0, 8))[0] > 100  # transparent edge: whitish
    with Image.open(images / "twitter" / "1f34e.png") as twemoji:  # 8 px PNG doubled
        assert max(abs(a - b) for a, b in zip(twemoji.getpixel((12, 8)), (200, 0, 0))) <= 2


def test_to_square_rgb_centres_on_white_then_resizes():
    wide = Image.new("RGBA", (40, 20), (*BLUE, 255))  # padded to 40 x 40: rows 10-29 blue
    square = to_square_rgb(wide, 20)
    assert square.mode == "RGB" and square.size == (20, 20)
    # Far enough from the band's edges for Lanczos' 3-lobe kernel, a constant stays exact.
    assert square.getpixel((10, 1)) == WHITE and square.getpixel((10, 10)) == BLUE
    same = Image.new("RGB", (24, 24), GREEN)
    assert to_square_rgb(same, 24).tobytes() == same.tobytes()  # already right: untouched


def test_fluent_skin_tones_crossed_in_the_package_are_filed_back():
    names = [f"package/assets/{code}.webp" for code in (
        "1f44b-1f3fc", "1f44b-1f3fd", "1f44b-1f3fe", "1f46b-1f3fc", "1f6b5-1f3fb", "2764-fe0f",
    )] + ["package/assets/1f44b-1f3fd-fe0f.webp", "package/README.md", "package/assets/sub/1f98a.webp"]
    assert index_members(names, "package/assets/", ".webp", shown_hexcode) == {
        "1f44b-1f3fd": "package/assets/1f44b-1f3fc.webp",  # medium-light and medium swap back
        "1f44b-1f3fc": "package/assets/1f44b-1f3fd-fe0f.webp",  # first name of a duplicate code wins
        "1f44b-1f3fe": "package/assets/1f44b-1f3fe.webp",
        "1f46b-1f3fc": "package/assets/1f46b-1f3fc.webp",  # filed right in the package: kept
        "2764": "package/assets/2764-fe0f.webp",
    }  # mountain biking's unordered tones are left out
    assert shown_hexcode("1f9d1-1f3fd-200d-1f4bb") == "1f9d1-1f3fd-200d-1f4bb"
    assert shown_hexcode("1f469-1f3fc-200d-1f692") == "1f469-1f3fd-200d-1f692"


def test_style_names_are_checked():
    assert parse_styles("noto, twitter,noto") == ("noto", "twitter")
    with pytest.raises(MarbleError, match=r"unknown emoji styles \['apple'\]; choose from twitter, noto, fluent3d"):
        parse_styles("twitter,apple")
    with pytest.raises(MarbleError, match="no emoji style given"):
        parse_styles(" , ")


@pytest.mark.parametrize("size", [4, 2048])
def test_size_out_of_range_is_refused_before_any_download(tmp_path, size, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: pytest.fail("npm must not run"))
    with pytest.raises(MarbleError, match=f"--size must be 8 to 1024 pixels, got {size}"):
        build_emoji_dataset(tmp_path / "emoji", cache_dir=tmp_path / "npm", styles="twitter,fluent3d", size=size)


def test_scoped_packages_are_cached_under_npm_pack_names():
    assert tarball_name("@lobehub/fluent-emoji-3d", "1.1.0") == "lobehub-fluent-emoji-3d-1.1.0.tgz"
    assert tarball_name("openmoji", "17.0.0") == "openmoji-17.0.0.tgz"


def test_cached_styles_need_no_npm(tmp_path, npm_cache, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    summary = build_emoji_dataset(tmp_path / "emoji", ("en",), cache_dir=npm_cache, progress=False,
                                  styles="fluent3d,openmoji", size=16)
    assert list(summary.styles) == ["fluent3d", "openmoji"] and summary.count == 4


def test_openmoji_without_resvg_says_how_to_install_it(tmp_path, npm_cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "resvg_py", None)  # makes `import resvg_py` raise ImportError
    with pytest.raises(MarbleError, match=r"resvg-py: pip install 'marble\[styles\]'"):
        build_emoji_dataset(tmp_path / "emoji", cache_dir=npm_cache, progress=False, styles="openmoji", size=16)
    assert not (tmp_path / "emoji").exists()
