"""Loading a stage's training data: the image folder, its skip report, the fixed held-out split.

A shard folder (`marble data shard`) loads as ShardTrainingData instead, with the same methods
the stages use: `feed`, `image_chunks`, `measure_images`, `train`/`holdout` captions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from marble.config import DataConfig, TrainConfig
from marble.data.folder import ImageCaptionSet, SkipReport, load_image_folder, only_languages
from marble.data.shards import is_shard_folder
from marble.data.split import split_holdout
from marble.training.feed import ImageFeed, in_order_chunks
from marble.training.shard_data import ShardTrainingData, load_shard_training_data


@dataclass
class TrainingData:
    train: ImageCaptionSet
    holdout: ImageCaptionSet
    skipped: SkipReport

    def describe(self) -> str:
        return f"{len(self.train)} training images, {len(self.holdout)} held out; {self.skipped.summary()}"

    def feed(self, train: TrainConfig) -> ImageFeed:
        return ImageFeed(len(self.train), self.train.images)

    def image_chunks(self, batch_size: int) -> Iterator[tuple[list[int], torch.Tensor]]:
        """(ids, (B, 3, S, S) uint8) of the training images in order."""
        return in_order_chunks(self.train.images, batch_size)

    def measure_images(self, split: str) -> torch.Tensor:
        """(N, 3, S, S) uint8: every image of the split ("train" or "holdout")."""
        return getattr(self, split).images


def keep_languages(data: ImageCaptionSet, langs: tuple[str, ...]) -> ImageCaptionSet:
    """Drop captions in languages not asked for; the primary caption ("text") always stays."""
    if not langs:
        return data
    kept = [only_languages(captions, langs) for captions in data.captions]
    return ImageCaptionSet(data.images, kept, data.file_names, data.fields)


def load_training_data(data_dir: Path, config: DataConfig, progress: bool = True) -> TrainingData | ShardTrainingData:
    if is_shard_folder(data_dir):
        return load_shard_training_data(Path(data_dir), config, progress)
    data, skipped = load_image_folder(Path(data_dir), config.image_size, config.max_image_bytes, progress=progress)
    train, holdout = split_holdout(keep_languages(data, config.langs), config.holdout_fraction)
    return TrainingData(train, holdout, skipped)
