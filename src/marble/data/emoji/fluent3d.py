"""Fluent 3D: Microsoft's Fluent Emoji in 3D, 256 px WebP files of npm `@lobehub/fluent-emoji-3d`."""

from __future__ import annotations

import re
from pathlib import Path

from marble.data.emoji.npm import fetch_npm_tarball
from marble.data.emoji.source import StyleSource, decode_raster, draw_tarball_folder

PACKAGE = ("@lobehub/fluent-emoji-3d", "1.1.0")
ATTRIBUTION = f"""\
Fluent Emoji (3D) by Microsoft Corporation, MIT, https://github.com/microsoft/fluentui-emoji,
  packaged as npm {PACKAGE[0]}@{PACKAGE[1]} by LobeHub (MIT); medium-light and medium skin-tone
  files swapped back where the package had them crossed."""
SKIN_TONE = re.compile(r"1f3f[b-f]")
# In this package version most skin-tone images sit under the wrong code: the file named for
# medium-light (1f3fc) shows the medium tone and the one named for medium (1f3fd) the
# medium-light one. Measured per emoji in docs/emoji-styles.md (the 1f3fc file is the darker in
# 288 of 304 emoji). These 15, written with "*" for each tone, are filed right:
FILED_RIGHT = frozenset({
    "1f46b-*", "1f46c-*", "1f46d-*", "1f48f-*", "1f491-*", "1f9d1-*-200d-1f91d-200d-1f9d1-*",
    "1f468-*-200d-1f4bb", "1f469-*-200d-1f4bb", "1f9d1-*-200d-1f4bb",
    "1f468-*-200d-2764-200d-1f468-*", "1f469-*-200d-2764-200d-1f468-*", "1f469-*-200d-2764-200d-1f469-*",
    "1f468-*-200d-2764-200d-1f48b-200d-1f468-*", "1f469-*-200d-2764-200d-1f48b-200d-1f468-*",
    "1f469-*-200d-2764-200d-1f48b-200d-1f469-*",
})
UNORDERED = frozenset({"1f6b5-*"})  # person mountain biking: its five tones follow no code order
CROSSED = {"1f3fc": "1f3fd", "1f3fd": "1f3fc"}


def shown_hexcode(code: str) -> str | None:
    """The emoji a file named `code` really shows; None where that cannot be told."""
    pattern = SKIN_TONE.sub("*", code)
    if pattern == code or pattern in FILED_RIGHT:
        return code
    if pattern in UNORDERED:
        return None
    return SKIN_TONE.sub(lambda tone: CROSSED.get(tone.group(), tone.group()), code)


def fetch(cache_dir: Path) -> Path:
    return fetch_npm_tarball(*PACKAGE, cache_dir)


# Rasters keep their own size; the builder resizes every style the same way.
draw = draw_tarball_folder("package/assets/", ".webp", lambda data, size: decode_raster(data), shown_hexcode)

FLUENT3D = StyleSource("fluent3d", "3d style", ATTRIBUTION, fetch, draw)

__all__ = ["PACKAGE", "FLUENT3D", "shown_hexcode"]
