"""The exported U-Net graph (onnx_unet.py) compiled by OpenVINO for the CPU.

OpenVINO runs bf16 on its own kernels where the CPU has AMX or AVX-512 BF16 ("auto" leaves that
choice to it); "fp32" asks for full precision. Same content-addressed ONNX cache as backend onnx.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from marble.errors import MarbleError

PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}  # Marble's names -> OpenVINO's INFERENCE_PRECISION_HINT


def _openvino():
    try:
        import openvino
    except ImportError:
        raise MarbleError("backend openvino needs OpenVINO: pip install openvino, "
                          "or choose --backend onnx or torch") from None
    return openvino


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
        request = core.compile_model(core.read_model(str(path)), "CPU", settings).create_infer_request()
        return lambda feed: request.infer(feed)[0]
