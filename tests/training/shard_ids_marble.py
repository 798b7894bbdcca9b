"""audited_marble that also records the sample ids of every streamed batch this process trains on
(to $MARBLE_AUDIT_OUT.ids.rank<RANK>.json: one list of [step, ids] per stage that streamed)."""

import atexit
import json
import os
import sys

from audited_marble import audited_main  # this folder is sys.path[0] of the launched script

from marble.training.shard_data import ShardTrainingData

streams: list[list[list]] = []
stream_batches = ShardTrainingData.stream_batches


def recorded_stream_batches(self, train, start_step, rank, world):
    taken: list[list] = []
    streams.append(taken)
    for batch in stream_batches(self, train, start_step, rank, world):
        taken.append([batch.step, batch.indices])
        yield batch


def save() -> None:
    with open(f"{os.environ['MARBLE_AUDIT_OUT']}.ids.rank{os.environ.get('RANK', '0')}.json", "w") as handle:
        json.dump(streams, handle)


if __name__ == "__main__":
    ShardTrainingData.stream_batches = recorded_stream_batches
    atexit.register(save)
    sys.exit(audited_main(sys.argv[1:]))
