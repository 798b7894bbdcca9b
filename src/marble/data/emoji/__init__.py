"""`marble data emoji`: emoji images in up to four styles with multilingual captions.

One module per style source (twitter, noto, fluent3d, openmoji); `concepts` joins them to the
emojibase captions, `build` writes the imagefolder.
"""

from marble.data.emoji.build import build_emoji_dataset, build_from_sources, build_from_tarballs
from marble.data.emoji.concepts import EMOJIBASE, normalize_hexcode
from marble.data.emoji.styles import STYLES
from marble.data.emoji.summary import EmojiBuildSummary, StyleCount, summary_lines
from marble.data.emoji.twitter import DATASOURCE

__all__ = [
    "DATASOURCE", "EMOJIBASE", "STYLES", "EmojiBuildSummary", "StyleCount", "build_emoji_dataset",
    "build_from_sources", "build_from_tarballs", "normalize_hexcode", "summary_lines",
]
