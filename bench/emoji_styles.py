"""Build the four-style emoji dataset from the registries alone and record what it took.

    nice -n 10 python bench/emoji_styles.py --out data/emoji4 --report outputs/emoji-styles.json

Fetches every package into a fresh npm cache (so download time counts), builds with the holdout
below, prints a JSON report (seconds and counts per style, skips and why, what each style lacks
by category) and draws docs/images/emoji-styles.png: a few concepts x the four styles.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from marble.data.emoji import EMOJIBASE, STYLES, build_emoji_dataset, summary_lines
from marble.data.emoji.concepts import list_concepts
from marble.data.emoji.npm import fetch_npm_tarball, read_json_member
from marble.data.emoji.twitter import EMOJI_JSON

ORDER = ("twitter", "noto", "fluent3d", "openmoji")
# Two pairs per style, of concepts every style draws: the composition test set.
HOLDOUT = ("fox:fluent3d,rocket:fluent3d,dog face:noto,pizza:noto,red apple:openmoji,cat face:openmoji,"
           "grinning face:twitter,sun:twitter")
SHEET = ("1f98a", "1f34e", "1f680", "1f44b-1f3fd", "1f602", "2764")  # fox, apple, rocket, hand, joy, heart
TILE, LABEL_WIDTH = 128, 150


def fetch_all(cache_dir: Path) -> dict[str, float]:
    """Seconds to fetch each package (npm pack) or find the font."""
    seconds = {}
    start = time.perf_counter()
    fetch_npm_tarball(*EMOJIBASE, cache_dir)
    seconds["emojibase"] = time.perf_counter() - start
    for style in ORDER:
        start = time.perf_counter()
        STYLES[style].fetch(cache_dir)
        seconds[style] = time.perf_counter() - start
    return seconds


def missing_by_category(out_dirs: list[Path], cache_dir: Path) -> dict[str, dict[str, int]]:
    """style -> emoji.json category -> concepts that style has no image of."""
    concepts = list_concepts(read_json_member(STYLES["twitter"].fetch(cache_dir), EMOJI_JSON))
    drawn = {(r["hexcode"], r["style"]) for folder in out_dirs for r in read_records(folder)}
    return {
        style: dict(Counter(c.category for c in concepts if (c.hexcode, style) not in drawn).most_common())
        for style in ORDER
    }


def read_records(folder: Path) -> list[dict]:
    if not (folder / "metadata.jsonl").is_file():
        return []
    return [json.loads(line) for line in (folder / "metadata.jsonl").read_text(encoding="utf-8").splitlines()]


def contact_sheet(out_dirs: list[Path], path: Path) -> None:
    """Rows: SHEET concepts; columns: the four styles; held-out images come from the holdout folder."""
    records = {(r["hexcode"], r["style"]): (folder, r) for folder in out_dirs for r in read_records(folder)}
    font = ImageFont.load_default(size=15)
    sheet = Image.new("RGB", (LABEL_WIDTH + len(ORDER) * (TILE + 4), 24 + len(SHEET) * (TILE + 4)), "white")
    draw = ImageDraw.Draw(sheet)
    for column, style in enumerate(ORDER):
        draw.text((LABEL_WIDTH + column * (TILE + 4) + 4, 4), style, fill="black", font=font)
    for row, hexcode in enumerate(SHEET):
        top = 24 + row * (TILE + 4)
        label = records[(hexcode, "twitter")][1]["captions"].get("en", hexcode).split(",")[0]
        draw.multiline_text((4, top + TILE // 2 - 10), label.replace(": ", ":\n"), fill="black", font=font)
        for column, style in enumerate(ORDER):
            if (hexcode, style) in records:
                folder, record = records[(hexcode, style)]
                with Image.open(folder / record["file_name"]) as tile:
                    sheet.paste(tile, (LABEL_WIDTH + column * (TILE + 4), top))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/emoji4"))
    parser.add_argument("--cache-dir", type=Path, help="npm cache (default: a fresh one, so downloads are timed)")
    parser.add_argument("--report", type=Path, help="also write the JSON report here")
    parser.add_argument("--sheet", type=Path, default=Path("docs/images/emoji-styles.png"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="marble-npm-") as fresh:
        cache_dir = args.cache_dir or Path(fresh)
        fetch_seconds = fetch_all(cache_dir)
        summary = build_emoji_dataset(args.out, cache_dir=cache_dir, styles=",".join(ORDER), size=TILE,
                                      holdout=HOLDOUT, overwrite=True)
        folders = [args.out, summary.holdout_dir]
        report = {
            "fetch_seconds": fetch_seconds, "build_seconds": summary.seconds, "concepts": summary.concepts,
            "in_every_style": summary.in_every_style, "train_images": summary.count,
            "holdout_images": summary.holdout_count, "caption_counts": summary.caption_counts,
            "styles": {style: {"written": c.written, "held_out": c.held_out, "skipped": dict(c.skipped),
                               "seconds": c.seconds} for style, c in summary.styles.items()},
            "missing_by_category": missing_by_category(folders, cache_dir),
        }
    contact_sheet(folders, args.sheet)
    print("\n".join(summary_lines(summary)))
    print(json.dumps(report, indent=2))
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
