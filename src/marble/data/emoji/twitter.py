"""Twemoji: the 64 px PNGs of npm `emoji-datasource-twitter`, whose emoji.json also lists the concepts."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

from marble.data.emoji.concepts import Concept
from marble.data.emoji.npm import fetch_npm_tarball
from marble.data.emoji.source import StyleImage, StyleSource, decode_raster, draw_from_tarball

DATASOURCE = ("emoji-datasource-twitter", "16.0.0")
EMOJI_JSON = "package/emoji.json"
IMAGE_PREFIX = "package/img/twitter/64/"
ATTRIBUTION = f"""\
Twemoji by Twitter, Inc. and other contributors (now X Corp.), CC-BY 4.0,
  https://github.com/twitter/twemoji, packaged as npm {DATASOURCE[0]}@{DATASOURCE[1]}
  by Cal Henderson (iamcal), https://github.com/iamcal/emoji-data (MIT)."""


def fetch(cache_dir: Path) -> Path:
    return fetch_npm_tarball(*DATASOURCE, cache_dir)


def draw(tarball: Path, concepts: Sequence[Concept], size: int) -> Iterator[StyleImage]:
    """Every concept's own PNG, named in emoji.json: 64 px, whatever `size` is."""
    members = {concept.hexcode: IMAGE_PREFIX + concept.image for concept in concepts}
    return draw_from_tarball(tarball, members, concepts, decode_raster)


TWITTER = StyleSource("twitter", "twemoji style", ATTRIBUTION, fetch, draw)

__all__ = ["DATASOURCE", "EMOJI_JSON", "TWITTER"]
