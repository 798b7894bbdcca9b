"""Where a stage's training images come from: a tensor indexed in memory, or shards streamed with each batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from marble.training.randomness import Batch, BatchFactory


@dataclass(frozen=True)
class ImageFeed:
    size: int  # training images
    images: torch.Tensor | None = None  # (N, 3, S, S) uint8 in memory; None: streamed
    batches: BatchFactory | None = None  # streamed: each Batch carries its images

    def of(self, batch: Batch) -> torch.Tensor:
        """(B, 3, S, S) uint8 images of this process's share of `batch`."""
        return batch.images if self.images is None else self.images[batch.indices]
