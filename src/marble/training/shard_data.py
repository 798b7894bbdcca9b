"""Training data from a shard folder: captions read once into memory, pixels streamed from the tars.

The held-out split uses the same rule as an image folder (split.py, a hash of each file name), so
a folder and its shards train and evaluate on the same images.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import partial
from itertools import count
from pathlib import Path
from typing import Iterator

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from marble.config import DataConfig, TrainConfig
from marble.data.folder import Captions, SkipReport, caption_choices, only_languages
from marble.data.shards import ShardIndex, iter_shard, read_index, sample_captions
from marble.data.split import split_positions
from marble.errors import MarbleError
from marble.training.feed import ImageFeed
from marble.training.randomness import Batch, SampleRandom, batch_positions
from marble.training.shard_stream import ShardPart, ShardStream, take_range

# Held-out PSNR and the latent scale are measured on at most this many images of a stream.
MEASURE_IMAGES = 2048


@dataclass
class ShardSplit:
    """One side of the held-out split: captions in memory, pixels left in the shards."""

    file_names: list[str]
    captions: list[Captions]
    parts: list[ShardPart]  # ids are positions in this split

    def __len__(self) -> int:
        return len(self.file_names)

    def caption_choices(self, i: int) -> list[str]:
        return caption_choices(self.captions[i])


@dataclass
class ShardTrainingData:
    index: ShardIndex
    train: ShardSplit
    holdout: ShardSplit
    skipped: SkipReport
    config: DataConfig

    def describe(self) -> str:
        return (f"{len(self.train)} training images, {len(self.holdout)} held out, streamed from "
                f"{len(self.index.shards)} shards; {self.skipped.summary()}")

    def feed(self, train: TrainConfig) -> ImageFeed:
        return ImageFeed(len(self.train), batches=partial(self.stream_batches, train), chunks=self.image_chunks)

    def stream_batches(self, train: TrainConfig, start_step: int, rank: int, world: int) -> Iterator[Batch]:
        """This process's shuffled batches from `start_step` on; ids index `train`, randomness as make_batch's."""
        share = train.batch_size // world
        stream = ShardStream(self.train.parts, self.config.image_size, train.seed, rank, world, True,
                             self.config.shuffle_buffer, start_step, share)
        loader = DataLoader(stream, batch_size=share, num_workers=self.config.stream_workers)
        for step, (ids, images) in zip(count(start_step), loader):
            positions = list(batch_positions(step, train.batch_size, rank, world))
            yield Batch(step, ids.tolist(), SampleRandom(train.seed, positions), images)

    def image_chunks(self, batch_size: int, split: str = "train", limit: int | None = None
                     ) -> Iterator[tuple[list[int], torch.Tensor]]:
        """(ids, (B, 3, S, S) uint8) of a split's first `limit` images, one pass; chunks come in any order."""
        parts = getattr(self, split).parts
        if limit is not None:
            parts = take_range(parts, 0, limit)
        stream = ShardStream(parts, self.config.image_size, shuffle=False)
        for ids, images in DataLoader(stream, batch_size=batch_size, num_workers=self.config.stream_workers):
            yield ids.tolist(), images

    def measure_images(self, split: str) -> torch.Tensor:
        """(N, 3, S, S) uint8: the first MEASURE_IMAGES images of a split, in storage order."""
        chunks = list(self.image_chunks(256, split, MEASURE_IMAGES))
        if not chunks:
            return torch.zeros(0, 3, self.config.image_size, self.config.image_size, dtype=torch.uint8)
        ids = torch.as_tensor([i for chunk_ids, _ in chunks for i in chunk_ids])
        return torch.cat([images for _, images in chunks])[ids.argsort()]


def load_shard_training_data(root: Path, config: DataConfig, progress: bool = True) -> ShardTrainingData:
    """Read every sample's metadata (not its pixels) and split the samples as an image folder would be."""
    index = read_index(root)
    names, captions, places = [], [], []  # places: (shard path, tar key) of each sample
    for name, expected in tqdm(index.shards, desc=f"reading {Path(root).name} captions", unit="shard",
                               disable=not progress):
        samples = list(iter_shard(index.root / name, images=False))
        if len(samples) != expected:
            raise MarbleError(f"shard {name} holds {len(samples)} samples, its index says {expected}; "
                              "write the shards again with `marble data shard`")
        for sample in samples:
            file_name, found = sample_captions(sample)
            names.append(file_name)
            captions.append(only_languages(found, config.langs))
            places.append((index.root / name, sample.key))
    train, holdout = split_positions(names, config.holdout_fraction)
    split = partial(_split, names, captions, places)
    return ShardTrainingData(index, split(train), split(holdout), index.skip_report(), config)


def _split(names: list[str], captions: list[Captions], places: list[tuple[Path, str]], positions: list[int]) -> ShardSplit:
    keys_of: dict[Path, list[tuple[str, int]]] = defaultdict(list)  # shard -> (key, id), in storage order
    for new_id, position in enumerate(positions):
        path, key = places[position]
        keys_of[path].append((key, new_id))
    parts = [ShardPart(path, *map(tuple, zip(*pairs))) for path, pairs in keys_of.items()]
    return ShardSplit([names[p] for p in positions], [captions[p] for p in positions], parts)
