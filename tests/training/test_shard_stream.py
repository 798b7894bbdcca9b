import random
from itertools import islice

import pytest
import torch

from marble.config import DataConfig, TrainConfig
from marble.data.shards import write_shards
from marble.errors import MarbleError
from marble.training.data import load_training_data
from marble.training.shard_stream import ShardStream, batches_before, reader_epoch, shuffle_buffer

CONFIG = DataConfig(image_size=16, holdout_fraction=0.25, shuffle_buffer=8, stream_workers=2)


@pytest.fixture(scope="module")
def shards(synthetic_dataset, tmp_path_factory):
    """The 32 synthetic images in shards of 5 (the last holds 2): shares must cross shard edges."""
    return write_shards(synthetic_dataset, tmp_path_factory.mktemp("shards") / "shapes", shard_size=5,
                        progress=False).root


@pytest.fixture(scope="module")
def streamed(shards):
    return load_training_data(shards, CONFIG, progress=False)


@pytest.fixture(scope="module")
def in_memory(synthetic_dataset):
    return load_training_data(synthetic_dataset, CONFIG, progress=False)


def epoch_ids(parts, seed: int, epoch: int, reader: int, readers: int) -> list[int]:
    return [sample_id for sample_id, _ in reader_epoch(parts, seed, epoch, reader, readers, buffer_size=8)]


def test_the_held_out_split_is_the_same_for_the_folder_and_its_shards(streamed, in_memory):
    assert streamed.train.file_names == in_memory.train.file_names
    assert streamed.holdout.file_names == in_memory.holdout.file_names
    assert streamed.train.captions == in_memory.train.captions
    assert (len(streamed.train), len(streamed.holdout)) == (24, 8)
    assert "24 training images, 8 held out, streamed from 7 shards" in streamed.describe()


@pytest.mark.parametrize("epoch", [0, 1])
def test_every_epoch_gives_each_training_sample_to_exactly_one_of_four_readers(streamed, epoch):
    shares = [epoch_ids(streamed.train.parts, 5, epoch, reader, 4) for reader in range(4)]
    assert sorted(i for share in shares for i in share) == list(range(24))
    assert [len(share) for share in shares] == [6, 6, 6, 6]
    uneven = [epoch_ids(streamed.train.parts, 5, epoch, reader, 5) for reader in range(5)]
    assert sorted(i for share in uneven for i in share) == list(range(24))
    assert sorted(len(share) for share in uneven) == [4, 5, 5, 5, 5]


def test_two_ranks_with_two_workers_each_read_the_dataset_once(streamed, in_memory):
    """The DataLoader's own worker split: 2 processes x 2 workers, 4 batches of 3 each = one epoch."""
    train = TrainConfig(batch_size=6, seed=3)
    batches = [batch for rank in (0, 1) for batch in islice(streamed.stream_batches(train, 0, rank, 2), 4)]
    ids = [i for batch in batches for i in batch.indices]
    assert sorted(ids) == list(range(24))
    for batch in batches:  # each id names its image: the pixels the folder loader gives
        assert torch.equal(batch.images, in_memory.train.images[batch.indices])
    assert batches[0].random.positions == [0, 1, 2] and batches[4].random.positions == [3, 4, 5]


def test_the_shuffle_depends_on_seed_and_epoch_only(streamed):
    parts = streamed.train.parts
    first = [epoch_ids(parts, 5, 0, reader, 2) for reader in range(2)]
    assert first == [epoch_ids(parts, 5, 0, reader, 2) for reader in range(2)]
    assert first != [epoch_ids(parts, 5, 1, reader, 2) for reader in range(2)]
    assert first != [epoch_ids(parts, 6, 0, reader, 2) for reader in range(2)]
    assert first[0] + first[1] != list(range(24))  # shuffled, not storage order


def test_shuffle_buffer_is_a_permutation_with_golden_order():
    # Random(0).randrange draws 3 3 0 2 3 3 while full, then 2 1 1 0 while draining: worked by hand.
    assert list(shuffle_buffer(range(10), 4, random.Random(0))) == [3, 4, 0, 2, 5, 8, 7, 1, 9, 6]
    assert sorted(shuffle_buffer(range(100), 16, random.Random(1))) == list(range(100))
    assert list(shuffle_buffer(range(5), 1, random.Random(0))) == [0, 1, 2, 3, 4]  # a buffer of one: no shuffle


def test_a_resumed_stream_continues_where_the_uninterrupted_one_was(streamed):
    """Start at batch 7: worker 0 skips 4 batches, worker 1 skips 3; epochs of 3 batches are skipped unread."""
    train = TrainConfig(batch_size=4, seed=1)
    whole = list(islice(streamed.stream_batches(train, 0, 0, 1), 12))
    resumed = list(islice(streamed.stream_batches(train, 7, 0, 1), 5))
    assert [b.indices for b in resumed] == [b.indices for b in whole[7:]]
    assert all(torch.equal(a.images, b.images) for a, b in zip(resumed, whole[7:]))
    assert [b.step for b in resumed] == [7, 8, 9, 10, 11] and resumed[0].random.positions == [28, 29, 30, 31]
    assert len({tuple(b.indices) for b in whole}) == 12  # later epochs are shuffled anew


def test_batches_before_follows_the_dataloader_round_robin():
    assert [batches_before(7, worker, 2) for worker in (0, 1)] == [4, 3]
    assert [batches_before(1, worker, 3) for worker in (0, 1, 2)] == [1, 0, 0]
    assert batches_before(0, 0, 1) == 0


def test_more_readers_than_samples_is_an_error(streamed):
    first_shard = streamed.train.parts[:1]
    stream = ShardStream(first_shard, 16, world=8)
    with pytest.raises(MarbleError, match=f"{len(first_shard[0])} training samples cannot feed 8 readers"):
        next(iter(stream))


def test_storage_order_pass_sees_each_image_once(streamed, in_memory):
    ids, images = zip(*streamed.image_chunks(5))
    order = torch.as_tensor([i for chunk in ids for i in chunk])
    assert sorted(order.tolist()) == list(range(24))
    assert torch.equal(torch.cat(images)[order.argsort()], in_memory.train.images)
    assert torch.equal(streamed.measure_images("holdout"), in_memory.holdout.images)
