"""Where a stage's training images come from: a tensor indexed in memory, or shards streamed with each batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from marble.training.randomness import Batch, BatchFactory

Chunks = Iterator[tuple[list[int], torch.Tensor]]  # (ids, (B, 3, S, S) uint8), every training image once


def in_order_chunks(images: torch.Tensor, batch_size: int) -> Chunks:
    """(ids, images) of an in-memory (N, 3, S, S) tensor, `batch_size` at a time, in order."""
    for start in range(0, len(images), batch_size):
        yield list(range(start, min(start + batch_size, len(images)))), images[start:start + batch_size]


@dataclass(frozen=True)
class ImageFeed:
    size: int  # training images
    images: torch.Tensor | None = None  # (N, 3, S, S) uint8 in memory; None: streamed
    batches: BatchFactory | None = None  # streamed: each Batch carries its images
    chunks: Callable[[int], Chunks] | None = None  # streamed: one pass over every image, in any order

    def of(self, batch: Batch) -> torch.Tensor:
        """(B, 3, S, S) uint8 images of this process's share of `batch`."""
        return batch.images if self.images is None else self.images[batch.indices]

    def every_image(self, batch_size: int) -> Chunks:
        """Every training image once, in chunks of `batch_size` with their ids."""
        return self.chunks(batch_size) if self.images is None else in_order_chunks(self.images, batch_size)
