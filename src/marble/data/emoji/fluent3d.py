"""Fluent 3D: Microsoft's Fluent Emoji in 3D, 256 px WebP files of npm `@lobehub/fluent-emoji-3d`."""

from __future__ import annotations

from pathlib import Path

from marble.data.emoji.npm import fetch_npm_tarball
from marble.data.emoji.source import StyleSource, decode_raster, draw_tarball_folder

PACKAGE = ("@lobehub/fluent-emoji-3d", "1.1.0")
ATTRIBUTION = f"""\
Fluent Emoji (3D) by Microsoft Corporation, MIT, https://github.com/microsoft/fluentui-emoji,
  packaged as npm {PACKAGE[0]}@{PACKAGE[1]} by LobeHub (MIT)."""


def fetch(cache_dir: Path) -> Path:
    return fetch_npm_tarball(*PACKAGE, cache_dir)


# Rasters keep their own size; the builder resizes every style the same way.
draw = draw_tarball_folder("package/assets/", ".webp", lambda data, size: decode_raster(data))

FLUENT3D = StyleSource("fluent3d", "3d style", ATTRIBUTION, fetch, draw)

__all__ = ["PACKAGE", "FLUENT3D"]
