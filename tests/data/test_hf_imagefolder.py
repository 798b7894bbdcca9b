"""Hugging Face `datasets` loads the folders and shards Marble writes, offline."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from marble.data.emoji.build import write_metadata
from marble.data.folder import load_image_folder
from marble.data.shards import write_shards

RECORDS = [  # the fields `marble data emoji` writes; the last lacks a language, as some emoji do
    {"file_name": "images/1f34e.png", "text": "red apple", "hexcode": "1f34e", "category": "Food & Drink",
     "subcategory": "food-fruit", "tags": ["apple", "fruit"], "captions": {"en": "red apple", "ja": "赤いリンゴ"}},
    {"file_name": "images/1f44b.png", "text": "waving hand", "hexcode": "1f44b", "category": "People & Body",
     "subcategory": "hand-fingers-open", "tags": ["wave"], "captions": {"en": "waving hand", "ja": "手を振る"}},
    {"file_name": "images/1f9ea.png", "text": "test tube", "hexcode": "1f9ea", "category": "Objects",
     "subcategory": "science", "tags": [], "captions": {"en": "test tube"}},
]


@pytest.fixture
def offline_datasets(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    import datasets

    return lambda *args, **kwargs: datasets.load_dataset(*args, split="train", cache_dir=str(tmp_path / "hf-cache"),
                                                         **kwargs)


@pytest.fixture
def marble_folder(tmp_path) -> Path:
    root = tmp_path / "emoji"
    (root / "images").mkdir(parents=True)
    for k, record in enumerate(RECORDS):
        Image.new("RGB", (8, 8), (80 * k, 200, 40)).save(root / record["file_name"])
    write_metadata(RECORDS, root / "metadata.jsonl")
    return root


def test_datasets_imagefolder_loads_a_marble_folder(offline_datasets, marble_folder):
    rows = offline_datasets("imagefolder", data_dir=str(marble_folder))
    marble, _ = load_image_folder(marble_folder, 8, progress=False)

    assert rows.num_rows == len(marble) == 3
    by_text = {row["text"]: row for row in rows}
    for k, record in enumerate(RECORDS):
        row = by_text[record["text"]]
        assert (row["hexcode"], row["tags"], row["category"]) == (record["hexcode"], record["tags"], record["category"])
        assert {lang: c for lang, c in row["captions"].items() if c is not None} == record["captions"]
        assert np.array_equal(np.array(row["image"]).transpose(2, 0, 1), marble.images[k].numpy())


def test_datasets_webdataset_loads_marble_shards(offline_datasets, marble_folder, tmp_path):
    index = write_shards(marble_folder, tmp_path / "shards", shard_size=2, progress=False)
    rows = offline_datasets("webdataset", data_files=[str(index.root / name) for name, _ in index.shards])
    assert [row["json"]["file_name"] for row in rows] == [r["file_name"] for r in RECORDS]
    assert [row["png"].size for row in rows] == [(8, 8)] * 3
