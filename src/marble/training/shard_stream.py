"""Training samples streamed from shards: split over processes and DataLoader workers, shuffled.

Each epoch the shards are put in an order drawn from (seed, epoch) and their samples concatenated;
reader k of S (S = processes x workers per process) takes the k-th contiguous S-th of that
sequence. So every sample goes to exactly one reader, shares differ by at most one sample, and a
reader opens only the shards its share touches. Within its share a reader shuffles through a
buffer, as WebDataset's `shuffle` does, seeded by (seed, epoch, reader): the order is a function
of the seed and the epoch alone, and a resumed run skips whole epochs without reading them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import chain, count, islice
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

from torch.utils.data import IterableDataset, get_worker_info

from marble.data.shards import decode_png, iter_shard
from marble.errors import MarbleError
from marble.training.randomness import mix_seed

T = TypeVar("T")
SHARD_ORDER, READER_ORDER = 0x5A4D, 0xB0FF  # separate the two seed streams from each other and from batches


@dataclass(frozen=True)
class ShardPart:
    """Samples to read from one shard: their tar keys in tar order, and the ids they are yielded as."""

    path: Path
    keys: tuple[str, ...]
    ids: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.keys)

    def cut(self, start: int, stop: int) -> ShardPart:
        return ShardPart(self.path, self.keys[start:stop], self.ids[start:stop])


def take_range(parts: list[ShardPart], start: int, stop: int) -> list[ShardPart]:
    """Samples [start, stop) of the concatenation of `parts`, as parts (empty ones dropped)."""
    taken, offset = [], 0
    for part in parts:
        low, high = max(start - offset, 0), min(stop - offset, len(part))
        if low < high:
            taken.append(part.cut(low, high))
        offset += len(part)
    return taken


def share_bounds(total: int, reader: int, readers: int) -> tuple[int, int]:
    return reader * total // readers, (reader + 1) * total // readers


def reader_share(parts: list[ShardPart], reader: int, readers: int) -> list[ShardPart]:
    """Reader `reader`'s contiguous share of the samples of `parts`."""
    return take_range(parts, *share_bounds(sum(map(len, parts)), reader, readers))


def epoch_order(parts: list[ShardPart], seed: int, epoch: int) -> list[ShardPart]:
    """The shards in this epoch's order: the same in every process and worker."""
    shuffled_parts = list(parts)
    random.Random(mix_seed(seed, epoch, SHARD_ORDER)).shuffle(shuffled_parts)
    return shuffled_parts


def shuffle_buffer(items: Iterable[T], size: int, rng: random.Random) -> Iterator[T]:
    """Shuffle a stream through a buffer of `size`: once it is full, emit a random item and put the next in its place."""
    buffer: list[T] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        k = rng.randrange(size)
        yield buffer[k]
        buffer[k] = item
    while buffer:
        k = rng.randrange(len(buffer))
        buffer[k], buffer[-1] = buffer[-1], buffer[k]
        yield buffer.pop()


def read_parts(parts: Iterable[ShardPart]) -> Iterator[tuple[int, bytes]]:
    """(id, PNG bytes) of every sample of `parts`, in order; a sample missing from its tar is an error."""
    for part in parts:
        id_of = dict(zip(part.keys, part.ids))
        found = 0
        for sample in iter_shard(part.path, id_of):
            yield id_of[sample.key], sample.png
            found += 1
        if found != len(part):
            raise MarbleError(f"shard {part.path} holds {found} of the {len(part)} samples its index lists; "
                              "write the shards again with `marble data shard`")


def reader_epoch(parts: list[ShardPart], seed: int, epoch: int, reader: int, readers: int,
                 buffer_size: int) -> Iterator[tuple[int, bytes]]:
    """One epoch of one reader: its share of the epoch's shard order, through its shuffle buffer."""
    share = reader_share(epoch_order(parts, seed, epoch), reader, readers)
    return shuffle_buffer(read_parts(share), buffer_size, random.Random(mix_seed(seed, epoch, reader, READER_ORDER)))


def batches_before(start_batch: int, worker: int, workers: int) -> int:
    """Batches worker `worker` made before `start_batch`: a DataLoader takes batch j from worker j % workers."""
    return max(0, (start_batch - worker + workers - 1) // workers)


class ShardStream(IterableDataset):
    """(id, (3, S, S) uint8 image) of one process's samples, split over its DataLoader workers.

    shuffle=True: endless shuffled epochs, starting after the batches a resumed run already made;
    shuffle=False: one pass in storage order (shares interleave by batch: order by id).
    """

    def __init__(self, parts: list[ShardPart], image_size: int, seed: int = 0, rank: int = 0, world: int = 1,
                 shuffle: bool = True, buffer_size: int = 1000, start_batch: int = 0, batch_size: int = 1):
        self.parts, self.image_size, self.seed, self.rank, self.world = parts, image_size, seed, rank, world
        self.shuffle, self.buffer_size, self.start_batch, self.batch_size = shuffle, buffer_size, start_batch, batch_size

    def count_readers(self, workers: int) -> int:
        readers = self.world * workers
        total = sum(map(len, self.parts))
        if self.shuffle and total < readers:
            raise MarbleError(f"{total} training samples cannot feed {readers} readers "
                              f"({self.world} processes x {workers} workers); use fewer workers")
        return readers

    def __iter__(self) -> Iterator[tuple[int, object]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        # A new DataLoader starts its round robin at worker 0, but batch `start_batch` was made by
        # worker start_batch % workers: each worker takes over the share of the one due at its turn.
        role = (worker + self.start_batch) % workers
        reader, readers = self.rank * workers + role, self.count_readers(workers)
        samples = self.samples(reader, readers, batches_before(self.start_batch, role, workers) * self.batch_size)
        for sample_id, png in samples:
            yield sample_id, decode_png(png, self.image_size)

    def samples(self, reader: int, readers: int, skip: int) -> Iterator[tuple[int, bytes]]:
        """This reader's (id, PNG bytes) after the first `skip`; whole epochs are skipped unread."""
        if not self.shuffle:
            return islice(read_parts(reader_share(self.parts, reader, readers)), skip, None)
        low, high = share_bounds(sum(map(len, self.parts)), reader, readers)
        first_epoch, skip_in_epoch = divmod(skip, high - low)
        epochs = (reader_epoch(self.parts, self.seed, epoch, reader, readers, self.buffer_size)
                  for epoch in count(first_epoch))
        return islice(chain.from_iterable(epochs), skip_in_epoch, None)


__all__ = ["ShardPart", "ShardStream", "reader_share", "reader_epoch", "shuffle_buffer", "batches_before"]
