"""OpenMoji: the colour SVGs of npm `openmoji`, rasterised with resvg (PyPI `resvg-py`) at the target size."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from marble.data.emoji.npm import fetch_npm_tarball
from marble.data.emoji.source import StyleSource, draw_tarball_folder
from marble.errors import MarbleError

PACKAGE = ("openmoji", "17.0.0")
ATTRIBUTION = f"""\
OpenMoji by the OpenMoji contributors (HfG Schwaebisch Gmuend), CC BY-SA 4.0, https://openmoji.org,
  npm {PACKAGE[0]}@{PACKAGE[1]}. These images are adaptations: share them under CC BY-SA 4.0 too."""


def fetch(cache_dir: Path) -> Path:
    import_resvg()  # fail before the download, not after it
    return fetch_npm_tarball(*PACKAGE, cache_dir)


def import_resvg():
    try:
        import resvg_py
    except ImportError:
        raise MarbleError("the openmoji style needs resvg-py: pip install 'marble[styles]'") from None
    return resvg_py


def rasterise(svg: bytes, size: int) -> Image.Image:
    """RGBA size x size rendering of one SVG; no system fonts (OpenMoji draws no text), so it is fast."""
    png = import_resvg().svg_to_bytes(
        svg_string=svg.decode("utf-8"), width=size, height=size, skip_system_fonts=True
    )
    with Image.open(io.BytesIO(bytes(png))) as image:
        return image.convert("RGBA")


draw = draw_tarball_folder("package/color/svg/", ".svg", rasterise)

OPENMOJI = StyleSource("openmoji", "openmoji style", ATTRIBUTION, fetch, draw)

__all__ = ["PACKAGE", "OPENMOJI", "rasterise"]
