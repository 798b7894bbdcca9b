"""Every caption of every image, deduplicated, so each is tokenized or encoded exactly once."""

from __future__ import annotations

from dataclasses import dataclass

from marble.data.folder import ImageCaptionSet


@dataclass(frozen=True)
class CaptionTable:
    texts: list[str]  # unique caption strings
    choices: list[list[int]]  # per image: rows of `texts` it may be trained with

    @classmethod
    def from_dataset(cls, data: ImageCaptionSet) -> "CaptionTable":
        row_of: dict[str, int] = {}
        choices = []
        for i in range(len(data)):
            choices.append([row_of.setdefault(text, len(row_of)) for text in data.caption_choices(i)])
        return cls(list(row_of), choices)

    def pick(self, indices: list[int], picks: list[int]) -> list[int]:
        """Rows for images `indices`, taking choice `picks[k]` of image k."""
        return [self.choices[i][p] for i, p in zip(indices, picks)]

    def counts(self, indices: list[int]) -> list[int]:
        return [len(self.choices[i]) for i in indices]
