"""Fixtures shared by the training tests."""

from pathlib import Path

import pytest

from marble.data.shards import write_shards


@pytest.fixture(scope="session")
def shards(synthetic_dataset, tmp_path_factory) -> Path:
    """The synthetic dataset as 7 shards of at most 5 samples (24 train, 8 held out)."""
    return write_shards(synthetic_dataset, tmp_path_factory.mktemp("shards") / "shapes", shard_size=5,
                        progress=False).root
