"""Load any captioned image folder (Hugging Face imagefolder layout) into one uint8 tensor.

Captions come from `metadata.jsonl`, else `metadata.csv`, else a `<stem>.txt` beside each image.
A bad file never stops the load: it is counted in a `SkipReport` under one of `SKIP_REASONS`.
"""

from __future__ import annotations

import csv
import json
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Iterator, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from marble.errors import MarbleError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
# Decoding cost grows with pixels, not bytes: a small file can still expand to gigabytes.
MAX_IMAGE_PIXELS = 50_000_000
SKIP_REASONS = (
    "unreadable", "truncated", "oversized", "not an image", "missing file", "bad metadata line", "no caption",
)
MAX_EXAMPLES = 5

Captions = dict[str, str]  # {"text": primary caption, <lang>: caption, ...}


@dataclass
class ImageCaptionSet:
    images: torch.Tensor  # (N, 3, S, S) uint8 RGB
    captions: list[Captions]
    file_names: list[str]  # POSIX paths relative to the dataset root
    fields: list[dict] | None = None  # per image, the metadata's other fields (hexcode, group, ...); None: none read

    def __len__(self) -> int:
        return len(self.file_names)

    def subset(self, indices: Sequence[int]) -> ImageCaptionSet:
        index = torch.as_tensor(list(indices), dtype=torch.long)
        return ImageCaptionSet(
            images=self.images[index],
            captions=[self.captions[i] for i in index.tolist()],
            file_names=[self.file_names[i] for i in index.tolist()],
            fields=None if self.fields is None else [self.fields[i] for i in index.tolist()],
        )

    def field_values(self, name: str) -> list:
        """Each image's metadata field `name`; MarbleError naming the first image without it."""
        for k in range(len(self)):
            if self.fields is None or name not in self.fields[k]:
                raise MarbleError(f"image {self.file_names[k]} has no metadata field {name!r} "
                                  "(metadata.jsonl or metadata.csv must give it for every image)")
        return [fields[name] for fields in self.fields]

    def caption_choices(self, i: int) -> list[str]:
        """Distinct caption strings of image i, the primary ("text") one first."""
        return caption_choices(self.captions[i])


def only_languages(captions: Captions, langs: Sequence[str]) -> Captions:
    """Captions in `langs` only (all if empty); the primary caption ("text") always stays."""
    if not langs:
        return captions
    return {key: caption for key, caption in captions.items() if key == "text" or key in langs}


def caption_choices(captions: Captions) -> list[str]:
    """Distinct caption strings, the primary ("text") one first."""
    ordered = [captions["text"], *(c for key, c in captions.items() if key != "text")]
    return list(dict.fromkeys(ordered))


@dataclass(frozen=True)
class MetadataEntry:
    captions: Captions
    fields: dict  # the metadata line's other fields (hexcode, tags, ...): `marble data shard` keeps them


@dataclass
class SkipReport:
    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, example: str) -> None:
        self.counts[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < MAX_EXAMPLES:
            shown.append(example)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.total:
            return "no files skipped"
        reasons = [r for r in SKIP_REASONS if self.counts[r]]
        parts = ", ".join(f"{self.counts[r]} {r}" for r in reasons)
        shown = "; ".join(f"{r}: {', '.join(self.examples[r])}" for r in reasons)
        noun = "file" if self.total == 1 else "files"
        return f"skipped {self.total} {noun}: {parts} (e.g. {shown})"


class UnusableImage(Exception):
    """One image that cannot be used; `reason` is one of SKIP_REASONS."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# --- captions ---------------------------------------------------------------------------------


def find_metadata(root: Path, report: SkipReport) -> dict[str, MetadataEntry]:
    """file_name -> captions and other fields from the first caption source present in `root`."""
    if (root / "metadata.jsonl").is_file():
        return read_jsonl_captions(root / "metadata.jsonl", root, report)
    if (root / "metadata.csv").is_file():
        return read_csv_captions(root / "metadata.csv", root, report)
    return read_sidecar_captions(root, report)


def read_jsonl_captions(path: Path, root: Path, report: SkipReport) -> dict[str, MetadataEntry]:
    found: dict[str, MetadataEntry] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path.name}:{number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            report.add("bad metadata line", where)
            continue
        if not isinstance(entry, dict):
            report.add("bad metadata line", where)
            continue
        extra = entry.get("captions") if isinstance(entry.get("captions"), dict) else {}
        _add_entry(found, entry.get("file_name"), entry.get("text"), extra, _other_fields(entry), root, where, report)
    return found


def read_csv_captions(path: Path, root: Path, report: SkipReport) -> dict[str, MetadataEntry]:
    found: dict[str, MetadataEntry] = {}
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        rows = csv.DictReader(handle)
        if not {"file_name", "text"} <= set(rows.fieldnames or ()):
            raise MarbleError(f"{path} needs the columns file_name,text; it has {rows.fieldnames}")
        for number, row in enumerate(rows, 2):
            _add_entry(found, row["file_name"], row["text"], {}, _other_fields(row), root, f"{path.name}:{number}", report)
    return found


def _other_fields(entry: dict) -> dict:
    return {key: value for key, value in entry.items() if key not in ("file_name", "text", "captions")}


def _add_entry(found, file_name, text, extra: dict, fields: dict, root: Path, where: str, report: SkipReport) -> None:
    name = _safe_relative_name(file_name, root)
    if name is None or name in found:
        report.add("bad metadata line", where)
        return
    captions = {lang: c.strip() for lang, c in extra.items() if isinstance(c, str) and c.strip()}
    primary = text.strip() if isinstance(text, str) and text.strip() else next(iter(captions.values()), None)
    if primary is None:
        report.add("no caption", name)
        return
    found[name] = MetadataEntry({"text": primary, **captions}, fields)


def _safe_relative_name(file_name, root: Path) -> str | None:
    """The POSIX path of `file_name` inside `root`, or None if it is not a plain relative path there."""
    if not isinstance(file_name, str) or not file_name.strip():
        return None
    name = PurePosixPath(file_name.strip().replace("\\", "/"))
    if name.is_absolute() or ".." in name.parts:
        return None
    return name.as_posix()


def read_sidecar_captions(root: Path, report: SkipReport) -> dict[str, MetadataEntry]:
    found: dict[str, MetadataEntry] = {}
    for name in list_image_files(root):
        sidecar = (root / name).with_suffix(".txt")
        try:
            text = sidecar.read_text(encoding="utf-8").strip() if sidecar.is_file() else ""
        except (OSError, UnicodeDecodeError):
            report.add("unreadable", sidecar.relative_to(root).as_posix())
            continue
        if text:
            found[name] = MetadataEntry({"text": text}, {})
    return found


def list_image_files(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )


# --- pixels -----------------------------------------------------------------------------------


def flatten_on_white(image: Image.Image) -> Image.Image:
    """RGB image with any transparency composited over white."""
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def pad_to_square(image: Image.Image, fill: int | tuple[int, ...] = (255, 255, 255)) -> Image.Image:
    """Centre the image on a square of `fill` (white) so resizing keeps its aspect ratio."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    square = Image.new(image.mode, (side, side), fill)
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    return square


def load_rgb(path: Path, max_image_bytes: int) -> Image.Image:
    """One image file as RGB flattened on white, or UnusableImage with the reason it cannot be used."""
    if not path.is_file():
        raise UnusableImage("missing file")
    if path.stat().st_size > max_image_bytes:
        raise UnusableImage("oversized")
    return _decode_on_white(path)


def square_image(image: Image.Image, image_size: int) -> Image.Image:
    """Padded to a white square, then resized to `image_size` (bicubic) if it is not that size."""
    image = pad_to_square(image)
    if image.size != (image_size, image_size):
        image = image.resize((image_size, image_size), Image.Resampling.BICUBIC)
    return image


def square_pixels(image: Image.Image, image_size: int) -> torch.Tensor:
    """(3, S, S) uint8 tensor of an RGB image made square at `image_size`."""
    return torch.from_numpy(np.array(square_image(image, image_size), dtype=np.uint8)).permute(2, 0, 1).contiguous()


def _decode_on_white(path: Path) -> Image.Image:
    return flatten_on_white(decode_image(path))


def decode_image(source: Path | BinaryIO, formats: tuple[str, ...] | None = None,
                 max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """One image decoded in full, decompression bombs refused from the header; else UnusableImage(reason)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source, formats=formats) as image:
                width, height = image.size  # from the header, before any pixel is decoded
                if width * height > max_pixels:
                    raise UnusableImage("oversized")
                image.load()
                return image
    except UnusableImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UnusableImage("oversized") from None
    except UnidentifiedImageError:
        raise UnusableImage("not an image") from None
    except OSError as error:
        raise UnusableImage("truncated" if "truncated" in str(error).lower() else "unreadable") from None
    except Exception:  # decoders raise assorted types (SyntaxError, ValueError, ...) on corrupt data
        raise UnusableImage("unreadable") from None


# --- the folder -------------------------------------------------------------------------------


def iter_image_folder(
    root: Path, report: SkipReport, max_image_bytes: int = 20_000_000, progress: bool = True
) -> Iterator[tuple[str, MetadataEntry, Image.Image]]:
    """(file name, metadata, RGB image) of every loadable, captioned image under `root`, by file name.

    What cannot be used is counted in `report` instead; one image is in memory at a time.
    """
    root = Path(root)
    if not root.is_dir():
        raise MarbleError(f"image folder {root} does not exist (or is not a folder)")
    metadata = find_metadata(root, report)
    for name in sorted(set(list_image_files(root)) - set(metadata)):
        report.add("no caption", name)
    for name in tqdm(sorted(metadata), desc=f"loading {root.name}", unit="img", disable=not progress):
        try:
            image = load_rgb(root / name, max_image_bytes)
        except UnusableImage as skip:
            report.add(skip.reason, name)
            continue
        yield name, metadata[name], image


def load_image_folder(
    root: Path, image_size: int, max_image_bytes: int = 20_000_000, progress: bool = True
) -> tuple[ImageCaptionSet, SkipReport]:
    """Every loadable, captioned image under `root`, sorted by file name, and what was skipped."""
    report = SkipReport()
    kept_names, kept_captions, kept_fields, images = [], [], [], []
    for name, entry, image in iter_image_folder(root, report, max_image_bytes, progress):
        images.append(square_pixels(image, image_size))
        kept_names.append(name)
        kept_captions.append(entry.captions)
        kept_fields.append(entry.fields)
    if not images:
        from marble.data.shards import is_shard_folder  # shards.py builds on this module

        if is_shard_folder(root):
            raise MarbleError(f"{root} holds shards: `marble train` streams them; this command needs the image folder")
        raise MarbleError(f"no loadable captioned images in {root}: {report.summary()}")
    return ImageCaptionSet(torch.stack(images), kept_captions, kept_names, kept_fields), report


__all__ = [
    "ImageCaptionSet", "MetadataEntry", "SkipReport", "SKIP_REASONS", "caption_choices", "iter_image_folder",
    "load_image_folder", "flatten_on_white", "square_pixels",
]
