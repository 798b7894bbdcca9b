"""The exported U-Net quantized to int8 by NNCF's post-training quantization, run by OpenVINO.

At bf16, OpenVINO's convolutions and matmuls already run near the CPU's bf16 matmul peak
(docs/performance.md), so the U-Net gets faster only through cheaper arithmetic: int8 weights and
activations (AVX-512 VNNI, AMX-int8) wherever NNCF finds it safe, bf16 elsewhere.

Calibration sees what generation sees: the U-Net inputs met while sampling the run's calibration
prompts (latents along real trajectories at every noise level, both guidance halves, the prompts'
text contexts). The quantized graph is cached beside the ONNX export, named by that export and by
the calibration prompts, so it is built once (tens of seconds) per set of weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Callable

import numpy as np

from marble.errors import MarbleError
from marble.inference.openvino_engine import OpenVinoEngine, _openvino
from marble.training.artifacts import save_atomically

Feeds = list[dict[str, np.ndarray]]
# TRANSFORMER keeps attention's softmax and the like in float and smooths outlier channels (SmoothQuant);
# MIXED gives activations a zero point, as SiLU outputs are one-sided. The input and output convolutions
# and the time embedding stay float: cheap, and each of them feeds every later layer.
FLOAT_LAYERS = [".*conv_in.*", ".*conv_out.*", ".*time_embedding.*"]


def _quantization(nncf) -> dict:
    return dict(model_type=nncf.ModelType.TRANSFORMER, preset=nncf.QuantizationPreset.MIXED,
                ignored_scope=nncf.IgnoredScope(patterns=FLOAT_LAYERS, validate=False))


def _nncf():
    try:
        import nncf
    except ImportError:
        raise MarbleError("precision int8 needs NNCF: pip install nncf, or choose --precision auto") from None
    return nncf


def prompts_fingerprint(prompts: list[str]) -> str:
    """Names the calibration, recipe included: a change to either quantizes again."""
    recipe = ["transformer", "mixed", *FLOAT_LAYERS]
    return hashlib.sha256(json.dumps([recipe, prompts], ensure_ascii=False).encode()).hexdigest()[:12]


def int8_folder(onnx_path: Path, prompts: list[str]) -> Path:
    """Where the int8 graph of `onnx_path` calibrated on `prompts` lives."""
    return onnx_path.with_name(f"{onnx_path.stem}-int8-{prompts_fingerprint(prompts)}")


def quantize_graph(onnx_path: Path, feeds: Feeds, folder: Path) -> Path:
    """Quantize the ONNX graph with `feeds` as calibration data; write `folder`/unet.xml (+ .bin) atomically."""
    openvino, nncf = _openvino(), _nncf()
    logging.getLogger("nncf").setLevel(logging.WARNING)  # its INFO lines list every node it leaves in float
    model = openvino.Core().read_model(str(onnx_path))
    quantized = nncf.quantize(model, nncf.Dataset(feeds), subset_size=len(feeds), **_quantization(nncf))
    save_atomically(lambda staging: openvino.save_model(quantized, str(staging / "unet.xml"), compress_to_fp16=False),
                    folder)
    return folder / "unet.xml"


class Int8Engine:
    """OpenVINO running the int8 graph; `calibration()` supplies the feeds when the graph must be built."""

    label = "openvino int8"

    def __init__(self, prompts: list[str], calibration: Callable[[], Feeds]):
        if not prompts:
            raise MarbleError("precision int8 calibrates on the run's unet/calibration_prompts.json, which this run lacks "
                              "(`marble train unet` writes it): write a JSON list of a few training captions there")
        self.prompts, self.calibration = prompts, calibration

    def load(self, path: Path, threads: int) -> Callable[[dict], np.ndarray]:
        graph = int8_folder(path, self.prompts) / "unet.xml"
        if not graph.is_file():
            graph = quantize_graph(path, self.calibration(), graph.parent)
        # Layers NNCF left in float run in OpenVINO's own choice of precision, as on the bf16 path.
        return OpenVinoEngine("auto").load(graph, threads)
