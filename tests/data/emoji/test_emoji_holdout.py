"""`--holdout CONCEPT:STYLE,...`: parsing, resolving, and keeping pairs out of the training folder."""

import pytest

from marble.data.emoji import build_from_sources
from marble.data.emoji.concepts import Concept, Label
from marble.data.emoji.holdout import parse_holdout, resolve_holdout
from marble.errors import MarbleError

STYLES = ("twitter", "noto", "fluent3d", "openmoji")
FOX = Concept("1f98a", "1F98A", "1f98a.png", "FOX FACE", "Animals & Nature", "animal-mammal")
HEART = Concept("2764", "2764-FE0F", "2764-fe0f.png", "HEAVY BLACK HEART", "Smileys & Emotion", "heart")
FAMILY = Concept("1f468-200d-1f469-200d-1f466", "1F468-200D-1F469-200D-1F466", "f.png", "FAMILY", "People", "family")
ENGLISH = {"1f98a": Label("fox", ()), "2764": Label("red heart", ()),
           "1f468-200d-1f469-200d-1f466": Label("family: man, woman, boy", ())}


def test_parse_splits_pairs_and_keeps_commas_and_colons_inside_labels():
    assert parse_holdout("1f98a:fluent3d, red heart:noto", STYLES) == [("1f98a", "fluent3d"), ("red heart", "noto")]
    assert parse_holdout("family: man, woman, boy:openmoji,fox:noto", STYLES) == [
        ("family: man, woman, boy", "openmoji"), ("fox", "noto"),
    ]
    assert parse_holdout("", STYLES) == []


@pytest.mark.parametrize("spec, message", [
    ("fox", "'fox' is not CONCEPT:STYLE"),
    ("fox:noto,1f98a:watercolour", "'1f98a:watercolour' is not CONCEPT:STYLE"),
    (":noto", "names no emoji"),
])
def test_parse_errors_name_the_bad_item(spec, message):
    with pytest.raises(MarbleError, match=message):
        parse_holdout(spec, STYLES)


def test_resolve_by_hexcode_or_english_label():
    pairs = [("Fox", "noto"), ("2764-FE0F", "fluent3d"), ("family: man, woman, boy", "openmoji")]
    assert resolve_holdout(pairs, [FOX, HEART, FAMILY], ENGLISH, STYLES) == {
        ("1f98a", "noto"), ("2764", "fluent3d"), ("1f468-200d-1f469-200d-1f466", "openmoji"),
    }


def test_resolve_errors():
    with pytest.raises(MarbleError, match="no emoji 'unicorn'.*hexcode"):
        resolve_holdout([("unicorn", "noto")], [FOX], ENGLISH, STYLES)
    with pytest.raises(MarbleError, match="noto is not among --styles twitter,fluent3d"):
        resolve_holdout([("fox", "noto")], [FOX], ENGLISH, ("twitter", "fluent3d"))


def build(tmp_path, packages, holdout, **options):
    sources = {style: packages[style] for style in ("twitter", "fluent3d", "openmoji")}
    return build_from_sources(packages["twitter"], packages["emojibase"], sources, tmp_path / "emoji", ("en",),
                              size=16, holdout=holdout, progress=False, **options)


def test_held_out_pairs_leave_training_for_their_own_folder(tmp_path, fake_packages, read_metadata):
    packages = fake_packages(tmp_path / "npm")
    summary = build(tmp_path, packages, "red apple:fluent3d,1F44B:openmoji")

    train, holdout = tmp_path / "emoji", tmp_path / "emoji-holdout"
    assert summary.holdout_dir == holdout and summary.holdout_count == 2 and summary.count == 7
    assert (summary.styles["fluent3d"].written, summary.styles["fluent3d"].held_out) == (1, 1)
    trained = {(r["hexcode"], r["style"]) for r in read_metadata(train)}
    held = read_metadata(holdout)
    assert {(r["hexcode"], r["style"]) for r in held} == {("1f34e", "fluent3d"), ("1f44b", "openmoji")}
    assert not trained & {("1f34e", "fluent3d"), ("1f44b", "openmoji")}
    assert ("1f34e", "twitter") in trained and ("1f34e", "openmoji") in trained  # the parts are still taught
    assert held[0]["text"] == "red apple, 3d style"
    for record in held:
        assert (holdout / record["file_name"]).is_file() and not (train / record["file_name"]).exists()
    assert read_metadata(train)[0]["file_name"] == "images/twitter/1f34e.png"
    assert (train / "holdout.jsonl").read_text().splitlines() == [
        '{"hexcode": "1f34e", "style": "fluent3d"}', '{"hexcode": "1f44b", "style": "openmoji"}',
    ]
    assert (holdout / "ATTRIBUTION.txt").is_file()


def test_holdout_of_a_pair_the_style_lacks_writes_nothing(tmp_path, fake_packages):
    packages = fake_packages(tmp_path / "npm")
    with pytest.raises(MarbleError, match="1 pairs whose style has no image of that emoji: 1f9ea:fluent3d"):
        build(tmp_path, packages, "red apple:twitter,1f9ea:fluent3d")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["npm"]  # no dataset, no holdout, no staging


def test_existing_holdout_folder_needs_overwrite(tmp_path, fake_packages, read_metadata):
    packages = fake_packages(tmp_path / "npm")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("mine")
    with pytest.raises(MarbleError, match="mine is not empty"):
        build(tmp_path, packages, "red apple:twitter", holdout_dir=tmp_path / "mine")
    assert not (tmp_path / "emoji").exists()
    build(tmp_path, packages, "red apple:twitter", holdout_dir=tmp_path / "mine", overwrite=True)
    assert [r["hexcode"] for r in read_metadata(tmp_path / "mine")] == ["1f34e"]
