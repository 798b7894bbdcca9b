"""The emoji concepts every style draws, and their captions.

Concepts are the base emoji and skin-tone variants of emoji-datasource's `emoji.json`; labels
and tags come from npm `emojibase-data`. Both are joined by hexcode (lower case, `fe0f` dropped).
"""

from __future__ import annotations

import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from marble.errors import MarbleError

EMOJIBASE = ("emojibase-data", "17.0.0")
HEXCODE = re.compile(r"[0-9a-f]+(-[0-9a-f]+)*")


@dataclass(frozen=True)
class Concept:
    """One emoji: a base emoji or one of its skin-tone variants."""

    hexcode: str  # normalised: lower case, no fe0f; the join key and the output file name
    sequence: str  # emoji.json's fully qualified code points, e.g. "2764-FE0F": what a font shapes
    image: str  # emoji-datasource's file name of its Twemoji PNG
    name: str  # emoji.json's upper-case English name (of the base emoji)
    category: str
    subcategory: str
    group: str = ""  # the base emoji's hexcode, shared by its skin-tone variants ("": this hexcode)

    @property
    def group_code(self) -> str:
        return self.group or self.hexcode

    @property
    def text(self) -> str:
        """The emoji as a string of its code points."""
        return "".join(chr(int(point, 16)) for point in self.sequence.split("-"))


@dataclass(frozen=True)
class Label:
    label: str
    tags: tuple[str, ...]


def normalize_hexcode(code: str) -> str:
    """"2764-FE0F" -> "2764": the join key shared by every package."""
    return "-".join(part for part in code.lower().split("-") if part != "fe0f")


def list_concepts(emoji_json: list[dict]) -> list[Concept]:
    """Every base emoji and skin-tone variant of emoji.json, in the file's order."""
    concepts = []
    for entry in emoji_json:
        variants = [entry, *(entry.get("skin_variations") or {}).values()]
        for variant in variants:
            concepts.append(Concept(
                hexcode=normalize_hexcode(variant["unified"]), sequence=variant["unified"], image=variant["image"],
                name=entry["name"] or "", category=entry.get("category") or "",
                subcategory=entry.get("subcategory") or "",
                group=normalize_hexcode(entry["unified"]),
            ))
    for concept in concepts:  # the hexcode becomes an output file name: keep it a plain one
        if not HEXCODE.fullmatch(concept.hexcode):
            raise MarbleError(f"unexpected emoji code {concept.hexcode!r} in emoji.json")
    return concepts


def available_languages(emojibase_tarball: Path) -> list[str]:
    with tarfile.open(emojibase_tarball, "r:gz") as archive:
        names = archive.getnames()
    paths = (name.split("/") for name in names)  # package/<lang>/data.json
    return sorted(parts[1] for parts in paths if len(parts) == 3 and parts[2] == "data.json")


def index_labels(data_json: list[dict]) -> dict[str, Label]:
    """hexcode -> label of an emojibase data.json; skin variants carry their base emoji's tags."""
    labels = {}
    for entry in data_json:
        tags = tuple(entry.get("tags") or ())
        for variant in [entry, *(entry.get("skins") or ())]:
            if variant.get("label"):
                labels[normalize_hexcode(variant["hexcode"])] = Label(variant["label"], tags)
    return labels


def with_style(caption: str, style_caption: str) -> str:
    """"fox" -> "fox, 3d style". The suffix stays English in every language (docs/emoji-styles.md)."""
    return f"{caption}, {style_caption}" if style_caption else caption


def metadata_record(
    concept: Concept, labels: dict[str, dict[str, Label]], langs: Sequence[str],
    file_name: str, style: str, style_caption: str = "",
) -> dict:
    """One metadata.jsonl line; `labels` is lang -> hexcode -> Label and always holds "en"."""
    english = labels["en"].get(concept.hexcode)
    captions = {
        lang: with_style(labels[lang][concept.hexcode].label, style_caption)
        for lang in langs if concept.hexcode in labels[lang]
    }
    return {
        "file_name": file_name,
        "text": with_style(english.label if english else concept.name.lower(), style_caption),
        "hexcode": concept.hexcode,
        "style": style,
        "category": concept.category,
        "subcategory": concept.subcategory,
        "group": concept.group_code,  # skin-tone variants share it: `balance_by: group` counts them once
        "tags": list(english.tags) if english else [],
        "captions": captions,
    }


__all__ = [
    "EMOJIBASE", "Concept", "Label", "normalize_hexcode", "list_concepts", "available_languages", "index_labels",
    "with_style", "metadata_record",
]
