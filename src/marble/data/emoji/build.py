"""`marble data emoji`: emoji in one or more styles joined to multilingual emojibase labels, as an imagefolder.

One style keeps the original layout (`images/<hexcode>.png`, plain captions). Several styles
write `images/<style>/<hexcode>.png` and name the style in every caption ("fox, 3d style").
Held-out (concept, style) pairs go to a sibling imagefolder, never into the training one.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from marble.data.output_folder import check_out_dir, staged
from marble.data.emoji.concepts import (
    EMOJIBASE, Concept, Label, available_languages, index_labels, list_concepts, metadata_record,
)
from marble.data.emoji.holdout import Pair, parse_holdout, resolve_holdout
from marble.data.emoji.npm import default_cache_dir, fetch_npm_tarball, read_json_member
from marble.data.emoji.source import RESAMPLING, to_square_rgb
from marble.data.emoji.styles import STYLES, parse_styles
from marble.data.emoji.summary import EmojiBuildSummary, StyleCount
from marble.data.emoji.twitter import EMOJI_JSON, TWITTER
from marble.errors import MarbleError

LABELS_ATTRIBUTION = f"""\
Labels and tags: npm {EMOJIBASE[0]}@{EMOJIBASE[1]} by Miles Johnson, https://emojibase.dev (MIT),
  from Unicode CLDR annotations."""
MIN_SIZE, MAX_SIZE = 8, 1024


@dataclass(frozen=True)
class Written:
    """One image written: which concept, which style, where."""

    concept: Concept
    style: str
    file_name: str  # relative to the training or the holdout folder
    held_out: bool


def build_emoji_dataset(
    out_dir: Path, langs: Sequence[str] = ("en", "zh", "zh-hant", "ja"), cache_dir: Path | None = None,
    progress: bool = True, overwrite: bool = False, styles: str | Sequence[str] = ("twitter",), size: int = 64,
    holdout: str = "", holdout_dir: Path | None = None,
) -> EmojiBuildSummary:
    """Fetch every package (cached) and write the imagefolder dataset to `out_dir`."""
    styles = parse_styles(styles)
    check_size(size)  # every check that needs no download comes before the downloads
    parse_holdout(holdout, list(STYLES))
    check_out_dir(Path(out_dir), overwrite)
    if holdout:
        check_out_dir(default_holdout_dir(out_dir, holdout_dir), overwrite)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    datasource = TWITTER.fetch(cache_dir)  # always: its emoji.json lists the concepts
    emojibase = fetch_npm_tarball(*EMOJIBASE, cache_dir)
    sources = {style: STYLES[style].fetch(cache_dir) for style in styles}
    return build_from_sources(
        datasource, emojibase, sources, out_dir, langs, size, holdout, holdout_dir, progress, overwrite
    )


def build_from_tarballs(
    datasource: Path, emojibase: Path, out_dir: Path, langs: Sequence[str],
    progress: bool = True, overwrite: bool = False, size: int = 64,
) -> EmojiBuildSummary:
    """The Twemoji-only dataset from the two tarballs."""
    return build_from_sources(datasource, emojibase, {"twitter": datasource}, out_dir, langs, size,
                              progress=progress, overwrite=overwrite)


def build_from_sources(
    datasource: Path, emojibase: Path, sources: dict[str, Path], out_dir: Path, langs: Sequence[str],
    size: int = 64, holdout: str = "", holdout_dir: Path | None = None,
    progress: bool = True, overwrite: bool = False,
) -> EmojiBuildSummary:
    """Draw every concept in every style of `sources` (style -> fetched file) into `out_dir`."""
    start = time.perf_counter()
    out_dir, langs, styles = Path(out_dir), tuple(dict.fromkeys(langs)), parse_styles(list(sources))
    check_size(size)
    check_out_dir(out_dir, overwrite)
    concepts, labels = read_concepts(datasource, emojibase, langs)
    held = resolve_holdout(parse_holdout(holdout, list(STYLES)), concepts, labels["en"], styles)
    holdout_dir = default_holdout_dir(out_dir, holdout_dir) if held else None
    if holdout_dir is not None:
        check_out_dir(holdout_dir, overwrite)

    counts = {style: StyleCount() for style in styles}
    with contextlib.ExitStack() as stack:
        target = Target(stack.enter_context(staged(out_dir)),
                        stack.enter_context(staged(holdout_dir)) if holdout_dir is not None else None,
                        frozenset(held), size, by_style=len(styles) > 1)
        written = [w for style in styles for w in write_style(style, sources[style], concepts, target,
                                                               counts[style], progress)]
        check_held_out_written(held, written)
        order = {concept.hexcode: k for k, concept in enumerate(concepts)}
        written.sort(key=lambda w: (styles.index(w.style), order[w.concept.hexcode]))
        records = write_records(written, labels, langs, styles, target)
    summary = summarise(written, records, counts, len(concepts), out_dir, langs, holdout_dir)
    summary.seconds = time.perf_counter() - start
    return summary


def read_concepts(
    datasource: Path, emojibase: Path, langs: Sequence[str]
) -> tuple[list[Concept], dict[str, dict[str, Label]]]:
    """The concepts of emoji.json and lang -> hexcode -> Label for `langs` and English."""
    available = available_languages(emojibase)
    unknown = sorted(set(langs) - set(available))
    if unknown:
        raise MarbleError(f"unknown emoji languages {unknown}; available: {', '.join(available)}")
    concepts = list_concepts(read_json_member(datasource, EMOJI_JSON))
    labels = {lang: index_labels(read_json_member(emojibase, f"package/{lang}/data.json")) for lang in {"en", *langs}}
    return concepts, labels


def summarise(
    written: Sequence[Written], records: Sequence[dict], counts: dict[str, StyleCount], concepts: int,
    out_dir: Path, langs: Sequence[str], holdout_dir: Path | None,
) -> EmojiBuildSummary:
    train = [record for record, w in zip(records, written) if not w.held_out]
    drawn = Counter(w.concept.hexcode for w in written)
    return EmojiBuildSummary(
        count=len(train), langs=tuple(langs), out_dir=out_dir, styles=counts, concepts=concepts,
        caption_counts={lang: sum(lang in record["captions"] for record in train) for lang in langs},
        in_every_style=sum(n == len(counts) for n in drawn.values()), holdout_count=len(records) - len(train),
        holdout_dir=holdout_dir,
    )


@dataclass(frozen=True)
class Target:
    """Where drawn images go: the training staging folder, or the holdout one for held-out pairs."""

    train_root: Path
    holdout_root: Path | None
    held: frozenset[Pair]
    size: int
    by_style: bool  # several styles: images/<style>/<hexcode>.png

    def file_name(self, hexcode: str, style: str) -> str:
        return f"images/{style}/{hexcode}.png" if self.by_style else f"images/{hexcode}.png"

    def root(self, held_out: bool) -> Path:
        return self.holdout_root if held_out else self.train_root


def write_style(
    style: str, source: Path, concepts: Sequence[Concept], target: Target, count: StyleCount, progress: bool
) -> list[Written]:
    """Draw one style's images as square RGB PNGs; count what was held out and skipped."""
    start, written = time.perf_counter(), []
    drawings = STYLES[style].draw(source, concepts, target.size)
    for drawing in tqdm(drawings, total=len(concepts), desc=f"{style} images", unit="img", disable=not progress):
        if drawing.image is None:
            count.skipped[drawing.skipped] += 1
            continue
        held_out = (drawing.concept.hexcode, style) in target.held
        file_name = target.file_name(drawing.concept.hexcode, style)
        path = target.root(held_out) / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        to_square_rgb(drawing.image, target.size).save(path)
        written.append(Written(drawing.concept, style, file_name, held_out))
        count.held_out += held_out
        count.written += not held_out
    count.seconds = time.perf_counter() - start
    return written


def check_held_out_written(held: set[Pair], written: Sequence[Written]) -> None:
    """Every held-out pair must have an image: an empty holdout would test nothing."""
    missing = held - {(w.concept.hexcode, w.style) for w in written if w.held_out}
    if missing:
        shown = ", ".join(f"{code}:{style}" for code, style in sorted(missing)[:5])
        raise MarbleError(f"--holdout names {len(missing)} pairs whose style has no image of that emoji: {shown}")


def write_records(
    written: Sequence[Written], labels: dict[str, dict[str, Label]], langs: Sequence[str], styles: Sequence[str],
    target: Target,
) -> list[dict]:
    """Write each folder's metadata.jsonl and ATTRIBUTION.txt; the record of each of `written`, in order."""
    suffix = {style: STYLES[style].caption if target.by_style else "" for style in styles}
    records = [metadata_record(w.concept, labels, langs, w.file_name, w.style, suffix[w.style]) for w in written]
    for root, held_out in ((target.train_root, False), (target.holdout_root, True)):
        if root is not None:
            write_metadata([r for r, w in zip(records, written) if w.held_out == held_out], root / "metadata.jsonl")
            write_attribution(root, styles, target.size)
    if target.holdout_root is not None:  # the training folder says what it lacks
        write_metadata([{"hexcode": code, "style": style} for code, style in sorted(target.held)],
                       target.train_root / "holdout.jsonl")
    return records


def write_metadata(records: Sequence[dict], path: Path) -> None:
    lines = (json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    path.write_text("".join(lines), encoding="utf-8")


def write_attribution(root: Path, styles: Sequence[str], size: int) -> None:
    images = "\n".join(STYLES[style].attribution for style in styles)
    change = f"Images were composited on white, centred on a square and resized to {size} px ({RESAMPLING.name.lower()})."
    (root / "ATTRIBUTION.txt").write_text(f"Emoji images:\n{images}\n{LABELS_ATTRIBUTION}\n{change}\n")


# --- folders ---------------------------------------------------------------------------------


def check_size(size: int) -> None:
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise MarbleError(f"--size must be {MIN_SIZE} to {MAX_SIZE} pixels, got {size}")


def default_holdout_dir(out_dir: Path, holdout_dir: Path | None) -> Path:
    """`data/emoji4` -> `data/emoji4-holdout`: a sibling, so no loader finds it inside the training folder."""
    out_dir = Path(out_dir)
    return Path(holdout_dir) if holdout_dir is not None else out_dir.with_name(f"{out_dir.name}-holdout")


__all__ = ["build_emoji_dataset", "build_from_tarballs", "build_from_sources", "default_holdout_dir"]
