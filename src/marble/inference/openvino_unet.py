"""The exported U-Net graph (onnx_unet.py) compiled by OpenVINO for the CPU.

OpenVINO runs bf16 on its own kernels where the CPU has AMX or AVX-512 BF16 ("auto" leaves that
choice to it); "fp32" asks for full precision. Same content-addressed ONNX cache as backend onnx.

Each input shape gets its own compiled graph with every dimension fixed: OpenVINO then plans its
memory and picks kernels for that shape, which measured 25-30% faster than the dynamic-batch graph
at batch 1, 16 and 32 (a side-by-side timing of the two graphs on the AMD machine, session 8; the
suite in docs/performance.md times only this one). A compile takes about a second; the context length is
fixed by the tokenizer's padding, so a shape is a batch size, and few are ever seen.
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


def _openvino():
    try:
        import openvino
    except ImportError:
        raise MarbleError("backend openvino needs OpenVINO: pip install openvino, "
                          "or choose --backend onnx or torch") from None
    return openvino


class StaticShapeRunner:
    """Runs a feed through the graph compiled for exactly its shapes, compiling on first sight (LRU-bounded)."""

    def __init__(self, core, model, settings: dict, capacity: int = MAX_COMPILED_SHAPES):
        self.core, self.model, self.settings, self.capacity = core, model, settings, capacity
        self.requests: OrderedDict[tuple, object] = OrderedDict()
        self.compile_seconds = 0.0

    def request_for(self, feed: dict[str, np.ndarray]):
        key = tuple((name, value.shape) for name, value in sorted(feed.items()))
        if key in self.requests:
            self.requests.move_to_end(key)
            return self.requests[key]
        started = time.perf_counter()
        fixed = self.model.clone()
        fixed.reshape({name: list(value.shape) for name, value in feed.items()})
        self.requests[key] = self.core.compile_model(fixed, "CPU", self.settings).create_infer_request()
        self.compile_seconds += time.perf_counter() - started
        if len(self.requests) > self.capacity:
            self.requests.popitem(last=False)
        return self.requests[key]

    def __call__(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return self.request_for(feed).infer(feed)[0]


class OpenVinoEngine:
    """OpenVINO's CPU plugin, tuned for the latency of one call at a time."""

    label = "unet (openvino)"

    def __init__(self, precision: str = "auto"):
        self.precision = precision

    def load(self, path: Path, threads: int) -> Callable[[dict], np.ndarray]:
        openvino = _openvino()
        core = openvino.Core()
        settings = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        if self.precision in PRECISION_HINTS:
            settings["INFERENCE_PRECISION_HINT"] = PRECISION_HINTS[self.precision]
        return StaticShapeRunner(core, core.read_model(str(path)), settings)
