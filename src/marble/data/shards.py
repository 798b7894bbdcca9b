"""An image folder as WebDataset tar shards: `KEY.png` + `KEY.json` per sample, and an index.

    DST/shard-000000.tar, shard-000001.tar, ...   samples in file-name order, `--shard-size` per shard
    DST/index.json                                samples per shard, image size, what was skipped

Each `KEY.json` is the sample's metadata line (file_name, text, captions and any other fields), so
the held-out split (a hash of file_name, see split.py) is the same for the folder and its shards.
Keys are sample numbers: a file name's dots or slashes would break WebDataset's key rule.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass
from itertools import chain, groupby, islice
from pathlib import Path
from typing import Container, Iterable, Iterator

import torch
from PIL import Image

from marble.data.output_folder import check_out_dir, publish
from marble.data.folder import Captions, MetadataEntry, SkipReport, iter_image_folder, square_image, square_pixels
from marble.errors import MarbleError

INDEX_FILE = "index.json"
FORMAT = "marble-webdataset-shards"
VERSION = 1


@dataclass(frozen=True)
class ShardIndex:
    root: Path
    shards: tuple[tuple[str, int], ...]  # (tar file name, samples in it), in storage order
    image_size: int | None  # None: images stored at their own size
    skipped: dict[str, int]
    skipped_examples: dict[str, list[str]]
    seconds: float = 0.0  # time `marble data shard` took

    @property
    def samples(self) -> int:
        return sum(count for _, count in self.shards)

    def skip_report(self) -> SkipReport:
        report = SkipReport()
        report.counts.update(self.skipped)
        report.examples.update({reason: list(names) for reason, names in self.skipped_examples.items()})
        return report

    def to_json(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "samples": self.samples, "image_size": self.image_size,
                "shards": [{"name": name, "count": count} for name, count in self.shards],
                "skipped": self.skipped, "skipped_examples": self.skipped_examples, "seconds": round(self.seconds, 1)}


@dataclass(frozen=True)
class ShardSample:
    key: str
    metadata: dict  # the sample's KEY.json
    png: bytes | None  # None when the reader was asked for metadata only


def shard_name(number: int) -> str:
    return f"shard-{number:06d}.tar"


def is_shard_folder(path: Path) -> bool:
    return (Path(path) / INDEX_FILE).is_file()


# --- writing ----------------------------------------------------------------------------------


def write_shards(src: Path, dst: Path, shard_size: int, image_size: int | None = None,
                 max_image_bytes: int = 20_000_000, overwrite: bool = False, progress: bool = True) -> ShardIndex:
    """Write the folder `src` as shards in `dst`, built in a sibling folder and renamed into place."""
    if shard_size < 1 or (image_size is not None and image_size < 1):
        raise MarbleError(f"--shard-size and --image-size must be positive, got {shard_size} and {image_size}")
    start, dst = time.perf_counter(), Path(dst)
    check_out_dir(dst, overwrite)
    dst.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}.building-"))
    staging.chmod(0o755)  # mkdtemp makes it private; the dataset is not
    try:
        report = SkipReport()
        samples = iter_image_folder(Path(src), report, max_image_bytes, progress)
        counts = write_tars(samples, staging, shard_size, image_size)
        if not counts:
            raise MarbleError(f"no loadable captioned images in {src}: {report.summary()}")
        index = ShardIndex(dst, tuple((shard_name(n), c) for n, c in enumerate(counts)), image_size,
                           dict(report.counts), report.examples, time.perf_counter() - start)
        (staging / INDEX_FILE).write_text(json.dumps(index.to_json(), indent=2, ensure_ascii=False) + "\n")
        publish(staging, dst)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return index


def write_tars(samples: Iterable[tuple[str, MetadataEntry, Image.Image]], folder: Path, shard_size: int,
               image_size: int | None) -> list[int]:
    """Write `samples` into consecutive tars of `shard_size`; returns the count of each."""
    counts: list[int] = []
    samples, written = iter(samples), 0
    while (first := next(samples, None)) is not None:
        # One image in memory at a time: the shard is filled straight from the folder iterator.
        with tarfile.open(folder / shard_name(len(counts)), "w", format=tarfile.PAX_FORMAT) as tar:
            counts.append(0)
            for name, entry, image in chain([first], islice(samples, shard_size - 1)):
                key, written = f"{written:09d}", written + 1
                _add_member(tar, f"{key}.json", json.dumps(sample_metadata(name, entry), ensure_ascii=False).encode())
                _add_member(tar, f"{key}.png", png_bytes(image if image_size is None else square_image(image, image_size)))
                counts[-1] += 1
    return counts


def sample_metadata(file_name: str, entry: MetadataEntry) -> dict:
    """The sample's metadata.jsonl line: what `read_jsonl_captions` reads back to the same captions."""
    extra = {lang: caption for lang, caption in entry.captions.items() if lang != "text"}
    return {"file_name": file_name, "text": entry.captions["text"], **entry.fields, "captions": extra}


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0  # mtime 0: the same folder gives the same bytes
    tar.addfile(info, io.BytesIO(data))


# --- reading ----------------------------------------------------------------------------------


def read_index(root: Path) -> ShardIndex:
    """The index of a shard folder, checked against the tar files beside it."""
    root = Path(root)
    path = root / INDEX_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise ValueError(f"format {data.get('format')!r} version {data.get('version')!r}")
        shards = tuple((str(s["name"]), int(s["count"])) for s in data["shards"])
        index = ShardIndex(root, shards, data.get("image_size"), dict(data.get("skipped", {})),
                           dict(data.get("skipped_examples", {})), float(data.get("seconds", 0.0)))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise MarbleError(f"{path} is not a Marble shard index ({error}); write it with `marble data shard`") from None
    missing = [name for name, _ in shards if not (root / name).is_file()]
    if missing or not shards:
        raise MarbleError(f"shard folder {root} is incomplete: missing {missing or 'every shard'}")
    return index


def iter_shard(path: Path, keys: Container[str] | None = None, images: bool = True) -> Iterator[ShardSample]:
    """The samples of one tar in order: only those in `keys` (all if None); PNG bytes only if `images`.

    Members that are not asked for are skipped by seeking, so a metadata-only pass reads little.
    """
    try:
        with tarfile.open(path, "r:") as tar:
            for key, members in groupby(tar, key=lambda member: member.name.split(".", 1)[0]):
                if keys is None or key in keys:
                    yield _read_sample(tar, path, key, list(members), images)
    except (tarfile.TarError, EOFError, OSError, ValueError) as error:  # ValueError: a damaged KEY.json
        raise MarbleError(f"shard {path} cannot be read ({error}); write it again with `marble data shard`") from None


def _read_sample(tar: tarfile.TarFile, path: Path, key: str, members: list[tarfile.TarInfo],
                 images: bool) -> ShardSample:
    by_extension = {member.name.split(".", 1)[1]: member for member in members if "." in member.name}
    if not {"json", "png"} <= set(by_extension):
        raise MarbleError(f"shard {path}: sample {key} lacks its .png or .json; write the shards again")
    metadata = json.loads(tar.extractfile(by_extension["json"]).read())
    png = tar.extractfile(by_extension["png"]).read() if images else None
    return ShardSample(key, metadata, png)


def sample_captions(sample: ShardSample) -> tuple[str, Captions]:
    """(file_name, captions) of a sample, in the form the folder loader gives."""
    metadata = sample.metadata
    extra = metadata.get("captions") or {}
    if not isinstance(metadata.get("file_name"), str) or not isinstance(metadata.get("text"), str):
        raise MarbleError(f"shard sample {sample.key} has no file_name or text; write the shards again")
    return metadata["file_name"], {"text": metadata["text"], **{k: v for k, v in extra.items() if isinstance(v, str)}}


def decode_png(data: bytes, image_size: int) -> torch.Tensor:
    """(3, S, S) uint8 pixels of a stored sample, squared at `image_size` exactly as the folder loader does."""
    with Image.open(io.BytesIO(data)) as image:
        return square_pixels(image.convert("RGB"), image_size)


__all__ = ["INDEX_FILE", "ShardIndex", "ShardSample", "write_shards", "read_index", "iter_shard", "is_shard_folder",
           "sample_captions", "decode_png"]
