import io
import json
import tarfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from marble.cli import main
from marble.data.folder import load_image_folder
from marble.data.shards import INDEX_FILE, decode_png, iter_shard, read_index, sample_captions, write_shards
from marble.errors import MarbleError

SIZE = 8


def write_mixed_folder(root: Path) -> Path:
    """Seven good images of several sizes and modes, with metadata fields, plus one of each kind of bad file."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir()
    lines = []
    for k in range(7):
        size = (SIZE + 2 * k, SIZE + k)  # not square, not SIZE: squared and resized when trained
        mode = "RGBA" if k % 2 else "RGB"
        image = Image.new(mode, size, (30 * k, 255 - 30 * k, 90, 128) if mode == "RGBA" else (30 * k, 0, 200))
        image.putpixel((1, 1), (255, 255, 255, 255) if mode == "RGBA" else (255, 255, 255))
        name = f"images/icon.{k}.png"  # a dot in the stem: WebDataset keys must not take it
        image.save(root / name)
        lines.append({"file_name": name, "text": f"icon {k}", "hexcode": f"1f6{k:02d}", "tags": ["icon", str(k)],
                      "captions": {"en": f"icon {k}", "ja": f"アイコン {k}"}})
    (root / "images" / "notes.png").write_text("I am text, not a PNG")
    lines.append({"file_name": "images/notes.png", "text": "not an image"})
    lines.append({"file_name": "images/gone.png", "text": "missing"})
    Image.new("RGB", (SIZE, SIZE)).save(root / "images" / "unlisted.png")
    text = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + '\n{"file_name": broken\n'
    (root / "metadata.jsonl").write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def folder(tmp_path) -> Path:
    return write_mixed_folder(tmp_path / "folder")


def read_all(index) -> list:
    return [sample for name, _ in index.shards for sample in iter_shard(index.root / name)]


def test_shards_hold_what_the_folder_loader_loads_and_count_the_same_skips(folder, tmp_path):
    data, report = load_image_folder(folder, SIZE, progress=False)
    index = write_shards(folder, tmp_path / "shards", shard_size=3, progress=False)

    assert [count for _, count in index.shards] == [3, 3, 1]
    assert sorted(p.name for p in index.root.iterdir()) == [INDEX_FILE, "shard-000000.tar", "shard-000001.tar",
                                                            "shard-000002.tar"]
    assert index.skipped == dict(report.counts) == {"not an image": 1, "missing file": 1, "no caption": 1,
                                                    "bad metadata line": 1}
    assert read_index(index.root).skip_report().summary() == report.summary()
    samples = read_all(index)
    assert [s.key for s in samples] == [f"{k:09d}" for k in range(7)]
    assert [sample_captions(s) for s in samples] == list(zip(data.file_names, data.captions))
    pixels = torch.stack([decode_png(s.png, SIZE) for s in samples])
    assert torch.equal(pixels, data.images)  # lossless: the same pixels as loading the folder


def test_each_sample_json_is_its_metadata_line(folder, tmp_path):
    index = write_shards(folder, tmp_path / "shards", shard_size=10, progress=False)
    first = read_all(index)[0]
    assert first.metadata == {"file_name": "images/icon.0.png", "text": "icon 0", "hexcode": "1f600",
                              "tags": ["icon", "0"], "captions": {"en": "icon 0", "ja": "アイコン 0"}}
    with Image.open(io.BytesIO(first.png)) as image:
        assert (image.mode, image.size) == ("RGB", (SIZE, SIZE))  # kept at its own size


def test_image_size_option_stores_squared_images(folder, tmp_path):
    index = write_shards(folder, tmp_path / "shards", shard_size=10, image_size=4, progress=False)
    for sample in read_all(index):
        with Image.open(io.BytesIO(sample.png)) as image:
            assert image.size == (4, 4)
    assert read_index(index.root).image_size == 4


def test_the_same_folder_gives_the_same_bytes(folder, tmp_path):
    first = write_shards(folder, tmp_path / "a", shard_size=4, progress=False)
    second = write_shards(folder, tmp_path / "b", shard_size=4, progress=False)
    for name, _ in first.shards:
        assert (first.root / name).read_bytes() == (second.root / name).read_bytes()


def test_webdataset_reads_the_shards(folder, tmp_path):
    import webdataset

    index = write_shards(folder, tmp_path / "shards", shard_size=3, progress=False)
    urls = [str(index.root / name) for name, _ in index.shards]
    read = list(webdataset.WebDataset(urls, shardshuffle=False).decode("pil"))
    data, _ = load_image_folder(folder, SIZE, progress=False)
    assert [sample["__key__"] for sample in read] == [f"{k:09d}" for k in range(7)]
    assert [sample["json"]["file_name"] for sample in read] == data.file_names
    assert all(sample["png"].mode == "RGB" for sample in read)


def test_cli_writes_shards_and_refuses_a_full_folder(folder, tmp_path, capsys):
    dst = tmp_path / "shards"
    assert main(["data", "shard", str(folder), str(dst), "--shard-size", "5"]) == 0
    assert "wrote 7 samples in 2 shards" in capsys.readouterr().out
    assert main(["data", "shard", str(folder), str(dst), "--shard-size", "5"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["data", "shard", str(folder), str(dst), "--shard-size", "7", "--overwrite"]) == 0
    assert [count for _, count in read_index(dst).shards] == [7]


@pytest.mark.parametrize("argv, fragment", [
    (["--shard-size", "0"], "must be positive"),
    (["--image-size", "-1"], "must be positive"),
])
def test_cli_rejects_bad_sizes(folder, tmp_path, capsys, argv, fragment):
    assert main(["data", "shard", str(folder), str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_folder_with_nothing_loadable_leaves_no_shards(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.png").write_text("text")
    (tmp_path / "src" / "a.txt").write_text("a caption")
    assert main(["data", "shard", str(tmp_path / "src"), str(tmp_path / "out")]) == 2
    assert "no loadable captioned images" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no staging folder left behind
    with pytest.raises(MarbleError, match="does not exist"):
        write_shards(tmp_path / "nope", tmp_path / "out", shard_size=1, progress=False)


def test_damaged_index_missing_shard_and_truncated_tar_are_clear_errors(folder, tmp_path):
    index = write_shards(folder, tmp_path / "shards", shard_size=3, progress=False)
    tar = index.root / "shard-000001.tar"
    data = tar.read_bytes()
    tar.write_bytes(data[:700])  # cut inside the first sample's JSON
    with pytest.raises(MarbleError, match="shard-000001.tar cannot be read"):
        list(iter_shard(tar))
    tar.unlink()
    with pytest.raises(MarbleError, match=r"incomplete: missing \['shard-000001.tar'\]"):
        read_index(index.root)
    (index.root / INDEX_FILE).write_text('{"format": "something else"}')
    with pytest.raises(MarbleError, match="not a Marble shard index"):
        read_index(index.root)


def test_a_sample_without_its_json_is_an_error(tmp_path):
    path = tmp_path / "bad.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("000000000.png")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"png"))
    with pytest.raises(MarbleError, match="sample 000000000 lacks its .png or .json"):
        list(iter_shard(path))


def test_commands_that_need_the_image_folder_say_so_for_shards(folder, tmp_path):
    index = write_shards(folder, tmp_path / "shards", shard_size=3, progress=False)
    with pytest.raises(MarbleError, match="holds shards: `marble train` streams them"):
        load_image_folder(index.root, SIZE, progress=False)
