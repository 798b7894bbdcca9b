"""Time `marble data shard` and the shard stream against loading the folder into memory.

    python bench/shard_stream.py --data data/emoji [--shard-size 500] [--batches 60] [--batch-size 64]

Prints one line per measurement; docs/streaming.md quotes them.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from itertools import islice
from pathlib import Path

from marble.config import preset
from marble.data.shards import write_shards
from marble.training.data import load_training_data


def timed(label: str, work):
    start = time.perf_counter()
    result = work()
    print(f"{label}: {time.perf_counter() - start:.2f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="an image folder")
    parser.add_argument("--shard-size", type=int, default=500)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    config = preset("emoji")
    with tempfile.TemporaryDirectory() as scratch:
        shards = Path(scratch) / "shards"
        index = timed("marble data shard", lambda: write_shards(args.data, shards, args.shard_size, progress=False))
        size = sum(path.stat().st_size for path in shards.iterdir())
        print(f"  {index.samples} samples, {len(index.shards)} shards, {size / 1e6:.1f} MB")
        timed("load the folder into memory", lambda: load_training_data(args.data, config.data, progress=False))
        for workers in (0, 1, 2):
            data_config = dataclasses.replace(config.data, stream_workers=workers)
            data = timed(f"read shard captions (workers={workers})",
                         lambda: load_training_data(shards, data_config, progress=False))
            train = dataclasses.replace(config.autoencoder.train, batch_size=args.batch_size)
            batches = data.stream_batches(train, 0, 0, 1)
            next(batches)  # start the workers before the clock
            start = time.perf_counter()
            images = sum(len(batch.indices) for batch in islice(batches, args.batches))
            print(f"  stream {workers} workers: {images / (time.perf_counter() - start):.0f} images/s")


if __name__ == "__main__":
    main()
