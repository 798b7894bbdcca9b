"""An exported graph (exported_graph.py) compiled by OpenVINO for the CPU.

OpenVINO runs bf16 on its own kernels where the CPU has AMX or AVX-512 BF16 ("auto" leaves that
choice to it); "fp32" asks for full precision. Same content-addressed ONNX cache as backend onnx.

Each input shape gets its own compiled graph with every dimension fixed: OpenVINO then plans its
memory and picks kernels for that shape, which measured 25-30% faster than the dynamic-batch graph
at batch 1, 16 and 32 (a side-by-side timing of the two graphs on the AMD machine, session 8; the
suite in docs/performance.md times only this one). A compile takes about a second; the context length is
fixed by the tokenizer's padding, so a shape is a batch size, and few are ever seen.

An even batch is split in two halves run at once, each on its own stream with half the threads
(OpenVINO's THROUGHPUT mode): two single-threaded streams keep both cores busy through the small
convolutions and the glue between layers, where one two-threaded stream waits on itself. On the
2-core AMD machine (session 9, interleaved timings of the U-Net) that took batch 2 from 10.3 to
7.4 ms, batch 8 from 19.4 to 18.1 and batch 32 from 70.5 to 67.5. With guidance the U-Net batch is
always even; an odd batch, or a single thread, runs as one latency-tuned call.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np

from marble.errors import MarbleError

PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}  # Marble's names -> OpenVINO's INFERENCE_PRECISION_HINT
MAX_COMPILED_SHAPES = 8  # a server sees a handful of batch sizes; each compiled graph holds its own buffers
STREAMS = 2  # halves of a batch run at once; measured only on 2 cores (module docstring)


def _openvino():
    try:
        import openvino
    except ImportError:
        raise MarbleError("backend openvino needs OpenVINO: pip install openvino, "
                          "or choose --backend onnx or torch") from None
    return openvino


def split_count(batch: int, threads: int) -> int:
    """How many streams a batch runs on: STREAMS when it splits evenly and each stream gets a thread, else 1."""
    return STREAMS if threads >= STREAMS and batch >= STREAMS and batch % STREAMS == 0 else 1


class StaticShapeRunner:
    """Runs a feed through the graph compiled for exactly its shapes, compiling on first sight (LRU-bounded).
    Every input's first axis is the batch."""

    def __init__(self, core, model, settings: dict, threads: int, capacity: int = MAX_COMPILED_SHAPES):
        self.core, self.model, self.settings, self.threads, self.capacity = core, model, settings, threads, capacity
        self.requests: OrderedDict[tuple, list] = OrderedDict()  # (shapes of one part, parts) -> an infer request per part
        self.compile_seconds = 0.0

    def requests_for(self, part: dict[str, np.ndarray], parts: int) -> list:
        key = (tuple((name, value.shape) for name, value in sorted(part.items())), parts)
        if key in self.requests:
            self.requests.move_to_end(key)
            return self.requests[key]
        started = time.perf_counter()
        fixed = self.model.clone()
        fixed.reshape({name: list(value.shape) for name, value in part.items()})
        mode = {"PERFORMANCE_HINT": "LATENCY"} if parts == 1 else {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": parts}
        compiled = self.core.compile_model(fixed, "CPU", {**self.settings, "INFERENCE_NUM_THREADS": self.threads, **mode})
        self.requests[key] = [compiled.create_infer_request() for _ in range(parts)]
        self.compile_seconds += time.perf_counter() - started
        if len(self.requests) > self.capacity:
            self.requests.popitem(last=False)
        return self.requests[key]

    def __call__(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        parts = split_count(len(next(iter(feed.values()))), self.threads)
        if parts == 1:
            return self.requests_for(feed, 1)[0].infer(feed)[0]
        chunks = [{name: part for name, part in zip(feed, pieces)}
                  for pieces in zip(*(np.split(value, parts) for value in feed.values()))]
        requests = self.requests_for(chunks[0], parts)
        for request, chunk in zip(requests, chunks):
            request.start_async(chunk)
        for request in requests:
            request.wait()
        return np.concatenate([request.get_output_tensor(0).data for request in requests])


class OpenVinoEngine:
    """OpenVINO's CPU plugin: one call at a time, its batch split over streams where it divides evenly."""

    label = "openvino"

    def __init__(self, precision: str = "auto"):
        self.precision = precision

    def load(self, path: Path, threads: int) -> Callable[[dict], np.ndarray]:
        openvino = _openvino()
        core = openvino.Core()
        settings = {}
        if self.precision in PRECISION_HINTS:
            settings["INFERENCE_PRECISION_HINT"] = PRECISION_HINTS[self.precision]
        return StaticShapeRunner(core, core.read_model(str(path)), settings, threads)
