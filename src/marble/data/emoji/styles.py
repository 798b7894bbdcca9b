"""The emoji styles `marble data emoji --styles` knows, by name."""

from __future__ import annotations

from typing import Sequence

from marble.data.emoji.fluent3d import FLUENT3D
from marble.data.emoji.noto import NOTO
from marble.data.emoji.openmoji import OPENMOJI
from marble.data.emoji.source import StyleSource
from marble.data.emoji.twitter import TWITTER
from marble.errors import MarbleError

STYLES: dict[str, StyleSource] = {source.name: source for source in (TWITTER, NOTO, FLUENT3D, OPENMOJI)}


def parse_styles(names: str | Sequence[str]) -> tuple[str, ...]:
    """"twitter,noto" -> ("twitter", "noto"): known names, each once, in the order given."""
    if isinstance(names, str):
        names = names.split(",")
    chosen = tuple(dict.fromkeys(name.strip() for name in names if name.strip()))
    unknown = [name for name in chosen if name not in STYLES]
    if unknown or not chosen:
        what = f"unknown emoji styles {unknown}" if unknown else "no emoji style given"
        raise MarbleError(f"{what}; choose from {', '.join(STYLES)}")
    return chosen


__all__ = ["STYLES", "parse_styles"]
