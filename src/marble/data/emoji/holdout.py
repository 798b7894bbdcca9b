"""`--holdout CONCEPT:STYLE,...`: (concept, style) pairs kept out of training to test composition.

A model that saw the fox in three styles and 3D style on other concepts, but never a 3D fox,
shows whether it composes "fox, 3d style" from parts it learned apart.
"""

from __future__ import annotations

from typing import Sequence

from marble.data.emoji.concepts import Concept, Label, normalize_hexcode
from marble.errors import MarbleError

Pair = tuple[str, str]  # (hexcode, style)


def parse_holdout(spec: str, known_styles: Sequence[str]) -> list[tuple[str, str]]:
    """"1f98a:fluent3d,red apple:noto" -> [("1f98a", "fluent3d"), ("red apple", "noto")].

    English labels may hold commas and colons ("family: man, woman, boy"), so an item ends only
    at a piece whose text after its last colon is a style name.
    """
    pairs, pending = [], []
    for piece in spec.split(","):
        pending.append(piece)
        concept, sep, style = piece.rpartition(":")
        if sep and style.strip() in known_styles:
            concept = ",".join([*pending[:-1], concept]).strip()
            if not concept:
                raise MarbleError(f"--holdout item {','.join(pending).strip()!r} names no emoji")
            pairs.append((concept, style.strip()))
            pending = []
    if "".join(pending).strip():
        raise MarbleError(
            f"--holdout item {','.join(pending).strip()!r} is not CONCEPT:STYLE "
            f"(e.g. 1f98a:fluent3d or fox:fluent3d; styles: {', '.join(known_styles)})"
        )
    return pairs


def resolve_holdout(
    pairs: Sequence[tuple[str, str]], concepts: Sequence[Concept], english: dict[str, Label], styles: Sequence[str]
) -> set[Pair]:
    """(hexcode, style) of each parsed pair; a concept is a hexcode or an English label (any case)."""
    hexcodes = {concept.hexcode for concept in concepts}
    by_label: dict[str, list[str]] = {}
    for concept in concepts:
        if concept.hexcode in english:
            by_label.setdefault(english[concept.hexcode].label.casefold(), []).append(concept.hexcode)
    resolved = set()
    for name, style in pairs:
        if style not in styles:
            raise MarbleError(f"--holdout {name}:{style}: {style} is not among --styles {','.join(styles)}")
        code = normalize_hexcode(name)
        matches = [code] if code in hexcodes else by_label.get(name.casefold())
        if not matches:
            raise MarbleError(f"--holdout: no emoji {name!r}; give a hexcode (1f98a) or an English label (fox)")
        resolved.update((hexcode, style) for hexcode in matches)
    return resolved


__all__ = ["Pair", "parse_holdout", "resolve_holdout"]
