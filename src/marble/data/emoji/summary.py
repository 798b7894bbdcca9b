"""What `marble data emoji` wrote: counts per style, skips and their reasons, the holdout."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class StyleCount:
    """What one style gave: images for training and for the holdout, concepts it could not draw."""

    written: int = 0  # training images
    held_out: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> concepts without an image
    seconds: float = 0.0


@dataclass
class EmojiBuildSummary:
    """What one build wrote."""

    count: int  # training images
    langs: tuple[str, ...]
    caption_counts: dict[str, int]  # lang -> training images with a caption in that language
    out_dir: Path
    seconds: float = field(default=0.0)
    styles: dict[str, StyleCount] = field(default_factory=dict)
    concepts: int = 0
    in_every_style: int = 0  # concepts drawn by every style built
    holdout_count: int = 0
    holdout_dir: Path | None = None


def summary_lines(summary: EmojiBuildSummary) -> list[str]:
    """The build's report for a person: totals, then one line per style."""
    lines = [f"wrote {summary.count} images with captions in {', '.join(summary.langs)} to {summary.out_dir} "
             f"({summary.seconds:.1f} s)"]
    for style, count in summary.styles.items():
        skipped = ", ".join(f"{n} {reason}" for reason, n in count.skipped.most_common()) or "none"
        held = f", {count.held_out} held out" if count.held_out else ""
        lines.append(f"  {style}: {count.written} images{held}; skipped {skipped} ({count.seconds:.1f} s)")
    if len(summary.styles) > 1:
        lines.append(f"  {summary.in_every_style} of {summary.concepts} concepts drawn in every style")
    if summary.holdout_dir is not None:
        lines.append(f"held out {summary.holdout_count} images to {summary.holdout_dir}")
    return lines


__all__ = ["StyleCount", "EmojiBuildSummary", "summary_lines"]
