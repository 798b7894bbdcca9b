"""Counter-based randomness: every random draw is a function of (seed, sample position, call).

The training data stream is an endless concatenation of permutations; a sample's *position* in
that stream names it uniquely. Drawing its noise, timestep and caption from a generator seeded
by (seed, position) makes a step's randomness independent of history, of how the global batch
is split across processes, and of when the run was interrupted: resuming needs only the step.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Iterator

import torch


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers, well mixed (nearby inputs give unrelated seeds)."""
    digest = hashlib.blake2b(",".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def epoch_permutation(seed: int, epoch: int, size: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(mix_seed(seed, epoch, 0x5EED))
    return torch.randperm(size, generator=generator)


def stream_indices(seed: int, positions: range, size: int, groups: Groups | None = None) -> list[int]:
    """Dataset indices at the given positions of the endless shuffled stream.

    With `groups`, the stream shuffles groups instead of images (each group once per epoch) and
    takes one member of each, chosen by the position: every group is drawn equally often.
    """
    units = len(groups.members) if groups else size
    indices, cached_epoch, permutation = [], None, None
    for position in positions:
        epoch = position // units
        if epoch != cached_epoch:
            cached_epoch, permutation = epoch, epoch_permutation(seed, epoch, units)
        unit = int(permutation[position % units])
        indices.append(groups.member(unit, mix_seed(seed, position, 0x6209)) if groups else unit)
    return indices


@dataclass(frozen=True)
class Groups:
    """Dataset indices gathered by a label (e.g. an emoji and its skin tones), for balanced sampling."""

    members: tuple[tuple[int, ...], ...]  # group -> its dataset indices, groups in first-seen order

    @classmethod
    def of(cls, labels: list) -> Groups:
        gathered: dict = {}
        for index, label in enumerate(labels):
            gathered.setdefault(label, []).append(index)
        return cls(tuple(tuple(indices) for indices in gathered.values()))

    def member(self, group: int, draw: int) -> int:
        indices = self.members[group]
        return indices[draw % len(indices)]


@dataclass
class SampleRandom:
    """Per-sample random draws for one batch; call k of a method uses stream k.

    Drawn on the CPU (the same numbers on any hardware), returned on `device`.
    """

    seed: int
    positions: list[int]
    calls: int = 0
    device: torch.device = torch.device("cpu")

    def _generators(self) -> list[torch.Generator]:
        self.calls += 1
        return [torch.Generator().manual_seed(mix_seed(self.seed, p, self.calls)) for p in self.positions]

    def randn(self, *shape: int) -> torch.Tensor:
        """(B, *shape) standard normal."""
        return torch.stack([torch.randn(shape, generator=g) for g in self._generators()]).to(self.device)

    def rand(self) -> torch.Tensor:
        """(B,) uniform in [0, 1)."""
        return torch.cat([torch.rand(1, generator=g) for g in self._generators()]).to(self.device)

    def randint(self, high: int) -> torch.Tensor:
        """(B,) integers in [0, high)."""
        return torch.cat([torch.randint(high, (1,), generator=g) for g in self._generators()]).to(self.device)

    def choice(self, counts: list[int]) -> list[int]:
        """For each sample, an index below its own count."""
        return [int(torch.randint(n, (1,), generator=g)) for n, g in zip(counts, self._generators())]


@dataclass
class Batch:
    """What one process trains on at one step."""

    step: int
    indices: list[int]  # dataset indices of this process's share of the global batch
    random: SampleRandom
    images: torch.Tensor | None = None  # (B, 3, S, S) uint8 when the data are streamed, not indexed
    device: torch.device = torch.device("cpu")  # where the model trains: losses move their inputs here


# (start step, rank, world) -> that process's batches from the start step on, for streamed data.
BatchFactory = Callable[[int, int, int], Iterator[Batch]]


def batch_positions(step: int, global_batch: int, rank: int = 0, world: int = 1) -> range:
    """Stream positions of this rank's contiguous share of the global batch at `step`."""
    share = global_batch // world
    start = step * global_batch + rank * share
    return range(start, start + share)


def make_batch(seed: int, step: int, dataset_size: int, global_batch: int, rank: int = 0, world: int = 1,
               device: torch.device = torch.device("cpu"), groups: Groups | None = None) -> Batch:
    """This rank's contiguous share of the global batch at `step` (group-balanced when `groups` is given)."""
    positions = batch_positions(step, global_batch, rank, world)
    random = SampleRandom(seed, list(positions), device=device)
    return Batch(step, stream_indices(seed, positions, dataset_size, groups), random, device=device)
