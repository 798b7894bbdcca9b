"""`marble data emoji`: Twemoji PNGs joined to multilingual emojibase labels, as an imagefolder.

Images come from npm `emoji-datasource-twitter`, labels and tags from npm `emojibase-data`;
the two are joined by hexcode (lower case, `fe0f` dropped). Tarballs are read member by
member, never extracted, so no name inside them can write outside `out_dir`.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from PIL import Image
from tqdm import tqdm

from marble.data.folder import flatten_on_white
from marble.errors import MarbleError

DATASOURCE = ("emoji-datasource-twitter", "16.0.0")
EMOJIBASE = ("emojibase-data", "17.0.0")
EMOJI_JSON = "package/emoji.json"
IMAGE_PREFIX = "package/img/twitter/64/"
HEXCODE = re.compile(r"[0-9a-f]+(-[0-9a-f]+)*")
ATTRIBUTION = """\
Emoji images: Twemoji by Twitter, Inc. and other contributors (now X Corp.), CC-BY 4.0
  https://github.com/twitter/twemoji, packaged as npm emoji-datasource-twitter@{datasource}
  by Cal Henderson (iamcal), https://github.com/iamcal/emoji-data (MIT).
Labels and tags: npm emojibase-data@{emojibase} by Miles Johnson, https://emojibase.dev (MIT),
  from Unicode CLDR annotations.
Images were composited on white; nothing else was changed.
"""


@dataclass(frozen=True)
class EmojiImage:
    """One PNG of emoji-datasource: a base emoji or one of its skin-tone variants."""

    hexcode: str  # normalised: lower case, no fe0f
    image: str  # file name inside img/twitter/64
    name: str  # emoji.json's upper-case English name (of the base emoji)
    category: str
    subcategory: str


@dataclass(frozen=True)
class Label:
    label: str
    tags: tuple[str, ...]


@dataclass
class EmojiBuildSummary:
    count: int
    langs: tuple[str, ...]
    caption_counts: dict[str, int]  # lang -> images with a caption in that language
    out_dir: Path
    seconds: float = field(default=0.0)


def normalize_hexcode(code: str) -> str:
    """"2764-FE0F" -> "2764": the join key shared by both packages."""
    return "-".join(part for part in code.lower().split("-") if part != "fe0f")


# --- npm --------------------------------------------------------------------------------------


def fetch_npm_tarball(package: str, version: str, cache_dir: Path) -> Path:
    """Path of `<package>-<version>.tgz` in `cache_dir`, running `npm pack` if it is not there yet."""
    tarball = cache_dir / f"{package}-{version}.tgz"
    if tarball.is_file():
        return tarball
    npm = shutil.which("npm")
    if npm is None:
        raise MarbleError("npm is required to fetch the emoji data: apt-get install npm (or install Node.js)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Pack into a scratch folder so an interrupted download never looks like a cached tarball.
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".npm-pack-") as scratch:
        try:
            result = subprocess.run(
                [npm, "pack", f"{package}@{version}"], cwd=scratch, capture_output=True, text=True, timeout=1800
            )
        except subprocess.TimeoutExpired:
            raise MarbleError(f"npm pack {package}@{version} took over 30 minutes; check the network") from None
        packed = Path(scratch) / tarball.name
        if result.returncode != 0 or not packed.is_file():
            raise MarbleError(f"npm pack {package}@{version} failed:\n{result.stderr[-2000:]}")
        packed.replace(tarball)
    return tarball


# --- tarballs ---------------------------------------------------------------------------------


def iter_members(tarball: Path, names: Sequence[str]) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of each named regular file, in archive order so gzip is read only once."""
    with tarfile.open(tarball, "r:gz") as archive:
        index = {member.name: member for member in archive.getmembers() if member.isfile()}
        missing = [name for name in names if name not in index]
        if missing:
            raise MarbleError(f"{tarball.name} lacks {len(missing)} expected files, e.g. {missing[:3]}")
        for member in sorted((index[name] for name in set(names)), key=lambda m: m.offset_data):
            yield member.name, archive.extractfile(member).read()


def read_json_member(tarball: Path, name: str):
    return json.loads(dict(iter_members(tarball, [name]))[name])


def available_languages(emojibase_tarball: Path) -> list[str]:
    with tarfile.open(emojibase_tarball, "r:gz") as archive:
        names = archive.getnames()
    paths = (name.split("/") for name in names)  # package/<lang>/data.json
    return sorted(parts[1] for parts in paths if len(parts) == 3 and parts[2] == "data.json")


# --- joining ----------------------------------------------------------------------------------


def list_emoji_images(emoji_json: list[dict]) -> list[EmojiImage]:
    """Every base emoji and skin-tone variant of emoji.json, in the file's order."""
    images = []
    for entry in emoji_json:
        variants = [entry, *(entry.get("skin_variations") or {}).values()]
        for variant in variants:
            images.append(EmojiImage(
                hexcode=normalize_hexcode(variant["unified"]), image=variant["image"], name=entry["name"] or "",
                category=entry.get("category") or "", subcategory=entry.get("subcategory") or "",
            ))
    for image in images:  # the hexcode becomes an output file name: keep it a plain one
        if not HEXCODE.fullmatch(image.hexcode):
            raise MarbleError(f"unexpected emoji code {image.hexcode!r} in emoji.json")
    return images


def index_labels(data_json: list[dict]) -> dict[str, Label]:
    """hexcode -> label of an emojibase data.json; skin variants carry their base emoji's tags."""
    labels = {}
    for entry in data_json:
        tags = tuple(entry.get("tags") or ())
        for variant in [entry, *(entry.get("skins") or ())]:
            if variant.get("label"):
                labels[normalize_hexcode(variant["hexcode"])] = Label(variant["label"], tags)
    return labels


def metadata_record(emoji: EmojiImage, labels: dict[str, dict[str, Label]], langs: Sequence[str]) -> dict:
    """One metadata.jsonl line; `labels` is lang -> hexcode -> Label and always holds "en"."""
    english = labels["en"].get(emoji.hexcode)
    captions = {lang: labels[lang][emoji.hexcode].label for lang in langs if emoji.hexcode in labels[lang]}
    return {
        "file_name": f"images/{emoji.hexcode}.png",
        "text": english.label if english else emoji.name.lower(),
        "hexcode": emoji.hexcode,
        "category": emoji.category,
        "subcategory": emoji.subcategory,
        "tags": list(english.tags) if english else [],
        "captions": captions,
    }


# --- building ---------------------------------------------------------------------------------


def build_emoji_dataset(
    out_dir: Path,
    langs: Sequence[str] = ("en", "zh", "zh-hant", "ja"),
    cache_dir: Path | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> EmojiBuildSummary:
    """Fetch both npm packages (cached) and write the imagefolder dataset to `out_dir`."""
    out_dir = Path(out_dir)
    check_out_dir(out_dir, overwrite)
    cache_dir = Path(cache_dir) if cache_dir is not None else Path.home() / ".cache" / "marble" / "npm"
    datasource = fetch_npm_tarball(*DATASOURCE, cache_dir)
    emojibase = fetch_npm_tarball(*EMOJIBASE, cache_dir)
    return build_from_tarballs(datasource, emojibase, out_dir, langs, progress, overwrite)


def build_from_tarballs(
    datasource: Path, emojibase: Path, out_dir: Path, langs: Sequence[str],
    progress: bool = True, overwrite: bool = False,
) -> EmojiBuildSummary:
    """Join the two tarballs into `out_dir`, built in a sibling folder and renamed into place."""
    start = time.perf_counter()
    out_dir, langs = Path(out_dir), tuple(dict.fromkeys(langs))
    check_out_dir(out_dir, overwrite)
    available = available_languages(emojibase)
    unknown = sorted(set(langs) - set(available))
    if unknown:
        raise MarbleError(f"unknown emoji languages {unknown}; available: {', '.join(available)}")
    emojis = list_emoji_images(read_json_member(datasource, EMOJI_JSON))
    labels = {
        lang: index_labels(read_json_member(emojibase, f"package/{lang}/data.json")) for lang in {"en", *langs}
    }
    records = [metadata_record(emoji, labels, langs) for emoji in emojis]

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.building-"))
    staging.chmod(0o755)  # mkdtemp makes it private; the dataset is not
    try:
        write_images(datasource, emojis, staging / "images", progress)
        write_metadata(records, staging / "metadata.jsonl")
        attribution = ATTRIBUTION.format(datasource=DATASOURCE[1], emojibase=EMOJIBASE[1])
        (staging / "ATTRIBUTION.txt").write_text(attribution)
        publish(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    counts = {lang: sum(lang in r["captions"] for r in records) for lang in langs}
    return EmojiBuildSummary(len(records), langs, counts, out_dir, time.perf_counter() - start)


def write_images(datasource: Path, emojis: Sequence[EmojiImage], images_dir: Path, progress: bool) -> None:
    images_dir.mkdir()
    hexcode_of = {IMAGE_PREFIX + emoji.image: emoji.hexcode for emoji in emojis}
    members = iter_members(datasource, list(hexcode_of))
    for name, data in tqdm(members, total=len(hexcode_of), desc="emoji images", unit="img", disable=not progress):
        with Image.open(io.BytesIO(data)) as image:
            flatten_on_white(image).save(images_dir / f"{hexcode_of[name]}.png")


def write_metadata(records: Sequence[dict], path: Path) -> None:
    lines = (json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    path.write_text("".join(lines), encoding="utf-8")


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise MarbleError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise MarbleError(f"{out_dir} is not empty; choose another folder or pass overwrite")


def publish(staging: Path, out_dir: Path) -> None:
    """Swap the finished `staging` folder in as `out_dir`, so readers never see half a dataset."""
    if not out_dir.exists():
        staging.rename(out_dir)
        return
    retired = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.old-"))
    out_dir.rename(retired / "old")
    staging.rename(out_dir)
    shutil.rmtree(retired, ignore_errors=True)


__all__ = ["EmojiBuildSummary", "build_emoji_dataset", "build_from_tarballs", "normalize_hexcode"]
