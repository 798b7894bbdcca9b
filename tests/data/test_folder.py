import json
import random
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image

from marble.data.folder import ImageCaptionSet, SkipReport, load_image_folder
from marble.errors import MarbleError

SIZE = 8


def save_noise_png(path: Path, size: int = 32) -> None:
    """Incompressible pixels, so cutting the file in half cuts the pixel data, not the header."""
    rng = random.Random(0)
    image = Image.new("RGB", (size, size))
    image.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(size * size)])
    image.save(path)


def write_good_images(root: Path) -> None:
    Image.new("RGB", (SIZE, SIZE), (255, 0, 0)).save(root / "red.png")
    Image.new("RGB", (16, 16), (0, 0, 255)).save(root / "blue_big.png")
    rgba = Image.new("RGBA", (SIZE, SIZE), (0, 255, 0, 255))
    for y in range(SIZE):
        for x in range(SIZE // 2):
            rgba.putpixel((x, y), (0, 0, 0, 0))  # left half fully transparent black
    rgba.save(root / "half_clear.png")
    Image.new("RGB", (SIZE, SIZE // 2), (0, 0, 0)).save(root / "wide.png")
    palette = Image.new("P", (SIZE, SIZE), 0)
    palette.putpalette([255, 255, 0] + [0, 0, 0] * 255)
    palette.save(root / "palette.png")
    (root / "sub").mkdir()
    Image.new("L", (SIZE, SIZE), 128).save(root / "sub" / "grey.jpg")


def write_bad_files(root: Path) -> None:
    save_noise_png(root / "cut.png")
    data = (root / "cut.png").read_bytes()
    (root / "cut.png").write_bytes(data[: len(data) // 2])
    (root / "notes.png").write_text("I am text, not a PNG")
    save_noise_png(root / "huge.png", size=64)  # ~12 kB, over the test's byte limit


GOOD = {
    "red.png": "a red square",
    "blue_big.png": "a blue square",
    "half_clear.png": "half green",
    "wide.png": "a black bar",
    "palette.png": "yellow",
    "sub/grey.jpg": "grey",
}


def write_jsonl_folder(root: Path) -> None:
    write_good_images(root)
    write_bad_files(root)
    lines = [json.dumps({"file_name": name, "text": text}) for name, text in GOOD.items()]
    lines[0] = json.dumps({"file_name": "red.png", "text": "a red square", "extra": 1,
                           "captions": {"zh": "红色方块", "en": "a red square"}})
    lines += [
        json.dumps({"file_name": name, "text": name}) for name in ("cut.png", "notes.png", "huge.png")
    ]
    lines += [
        '{"file_name": "broken.png", "text": ',  # invalid JSON
        json.dumps({"file_name": "gone.png", "text": "missing"}),
        json.dumps({"file_name": "../outside.png", "text": "escapes the root"}),
        "",
    ]
    (root / "metadata.jsonl").write_text("\n".join(lines), encoding="utf-8")
    Image.new("RGB", (SIZE, SIZE)).save(root / "unlisted.png")


def test_jsonl_folder_loads_good_images_and_counts_each_bad_one(tmp_path):
    write_jsonl_folder(tmp_path)
    data, report = load_image_folder(tmp_path, SIZE, max_image_bytes=8_000, progress=False)

    assert data.file_names == sorted(GOOD)
    assert data.images.shape == (6, 3, SIZE, SIZE) and data.images.dtype == torch.uint8
    assert [c["text"] for c in data.captions] == [GOOD[n] for n in sorted(GOOD)]
    assert report.counts == Counter({
        "truncated": 1, "not an image": 1, "oversized": 1, "missing file": 1,
        "bad metadata line": 2, "no caption": 1,
    })
    assert report.examples["no caption"] == ["unlisted.png"]
    assert report.examples["truncated"] == ["cut.png"]
    assert report.examples["bad metadata line"] == ["metadata.jsonl:10", "metadata.jsonl:12"]
    assert report.total == 7


def test_pixels_are_flattened_on_white_padded_and_resized(tmp_path):
    write_jsonl_folder(tmp_path)
    data, _ = load_image_folder(tmp_path, SIZE, max_image_bytes=8_000, progress=False)
    image = dict(zip(data.file_names, data.images))

    clear = image["half_clear.png"]
    assert clear[:, :, : SIZE // 2].eq(255).all()  # alpha 0 -> white, not black
    assert clear[:, :, SIZE // 2 :].tolist() == [[[0] * 4] * SIZE, [[255] * 4] * SIZE, [[0] * 4] * SIZE]
    wide = image["wide.png"]  # 8x4 black bar centred on a white 8x8 square
    assert wide[:, :2].eq(255).all() and wide[:, 6:].eq(255).all() and wide[:, 2:6].eq(0).all()
    assert image["blue_big.png"][:, 2, 2].tolist() == [0, 0, 255]  # 16 -> 8 px, same colour
    assert image["palette.png"][:, 0, 0].tolist() == [255, 255, 0]
    assert image["sub/grey.jpg"][:, 4, 4].tolist() == [128, 128, 128]


def test_caption_choices_put_text_first_without_duplicates(tmp_path):
    write_jsonl_folder(tmp_path)
    data, _ = load_image_folder(tmp_path, SIZE, max_image_bytes=8_000, progress=False)
    red = data.file_names.index("red.png")
    assert data.captions[red] == {"text": "a red square", "zh": "红色方块", "en": "a red square"}
    assert data.caption_choices(red) == ["a red square", "红色方块"]


def test_subset_keeps_images_and_captions_together(tmp_path):
    write_jsonl_folder(tmp_path)
    data, _ = load_image_folder(tmp_path, SIZE, max_image_bytes=8_000, progress=False)
    part = data.subset([4, 1])
    assert part.file_names == [data.file_names[4], data.file_names[1]]
    assert torch.equal(part.images, data.images[[4, 1]])
    assert part.captions == [data.captions[4], data.captions[1]]
    assert len(data.subset([])) == 0 and data.subset([]).images.shape == (0, 3, SIZE, SIZE)
    assert part.fields == [data.fields[4], data.fields[1]]


def test_metadata_fields_are_kept_and_a_missing_one_names_the_image(tmp_path):
    write_jsonl_folder(tmp_path)
    data, _ = load_image_folder(tmp_path, SIZE, max_image_bytes=8_000, progress=False)
    red = data.file_names.index("red.png")
    assert data.fields[red] == {"extra": 1}
    assert data.subset([red]).field_values("extra") == [1]
    other = next(name for k, name in enumerate(data.file_names) if k != red)
    with pytest.raises(MarbleError, match=f"image {other} has no metadata field 'extra'"):
        data.subset([red, data.file_names.index(other)]).field_values("extra")


def test_sidecar_captions_when_no_metadata(tmp_path):
    write_good_images(tmp_path)
    (tmp_path / "red.txt").write_text("  a red square\n")
    (tmp_path / "sub" / "grey.txt").write_text("grey")
    (tmp_path / "wide.txt").write_text("   ")  # blank caption: counts as none
    data, report = load_image_folder(tmp_path, SIZE, progress=False)
    assert data.file_names == ["red.png", "sub/grey.jpg"]
    assert data.captions == [{"text": "a red square"}, {"text": "grey"}]
    assert report.counts == Counter({"no caption": 4})


def test_csv_captions(tmp_path):
    write_good_images(tmp_path)
    (tmp_path / "metadata.csv").write_text('file_name,text\nred.png,"red, bright"\n,orphan\nwide.png,bar\n')
    data, report = load_image_folder(tmp_path, SIZE, progress=False)
    assert data.file_names == ["red.png", "wide.png"]
    assert data.captions[0] == {"text": "red, bright"}
    assert report.counts == Counter({"no caption": 4, "bad metadata line": 1})


def test_csv_without_required_columns_is_an_error(tmp_path):
    write_good_images(tmp_path)
    (tmp_path / "metadata.csv").write_text("image,caption\nred.png,red\n")
    with pytest.raises(MarbleError, match="file_name,text"):
        load_image_folder(tmp_path, SIZE, progress=False)


def test_folder_with_nothing_loadable_names_root_and_reasons(tmp_path):
    (tmp_path / "notes.png").write_text("text")
    (tmp_path / "notes.txt").write_text("a caption")
    expected = r"no loadable.*skipped 1 file: 1 not an image \(e\.g\. not an image: notes\.png\)"
    with pytest.raises(MarbleError, match=expected):
        load_image_folder(tmp_path, SIZE, progress=False)


def test_empty_and_missing_folders_are_errors(tmp_path):
    with pytest.raises(MarbleError, match=str(tmp_path)):
        load_image_folder(tmp_path, SIZE, progress=False)
    with pytest.raises(MarbleError, match="does not exist"):
        load_image_folder(tmp_path / "nope", SIZE, progress=False)


def test_skip_report_summary_orders_reasons_and_caps_examples():
    report = SkipReport()
    assert report.summary() == "no files skipped" and report.total == 0
    for i in range(7):
        report.add("not an image", f"{i}.png")
    report.add("truncated", "t.png")
    assert report.examples["not an image"] == [f"{i}.png" for i in range(5)]
    assert report.summary() == (
        "skipped 8 files: 1 truncated, 7 not an image "
        "(e.g. truncated: t.png; not an image: 0.png, 1.png, 2.png, 3.png, 4.png)"
    )


def test_image_caption_set_len():
    data = ImageCaptionSet(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), [{"text": "a"}, {"text": "b"}], ["a", "b"])
    assert len(data) == 2
