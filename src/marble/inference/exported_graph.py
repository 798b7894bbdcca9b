"""A torch module exported once to ONNX and run by an inference engine (ONNX Runtime, OpenVINO).

The file is content-addressed (a hash of the weights), so a cache folder never serves stale weights:
retrained or LoRA-merged weights export again under a new name. The U-Net (onnx_unet.py) and the
autoencoder's decoder (onnx_decoder.py) are both run this way.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from marble.errors import MarbleError
from marble.finetune.lora import weights_fingerprint
from marble.inference.live_state import live_state

OPSET = 17


@dataclass(frozen=True)
class GraphSpec:
    """How to export one kind of module: its name in the cache, a wrapper with positional tensor inputs and
    one tensor output, example inputs to trace, and which axes of each input are dynamic."""

    name: str
    wrap: Callable[[torch.nn.Module], torch.nn.Module]
    example: Callable[[torch.nn.Module], tuple[torch.Tensor, ...]]
    inputs: tuple[str, ...]
    dynamic: dict[str, dict[int, str]]


def export_onnx(module: torch.nn.Module, spec: GraphSpec, path: Path) -> Path:
    """Trace `module` as `spec` says and write `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(handle)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about diffusers' shape checks: the batch is dynamic
            # The TorchScript exporter: as fast a graph as dynamo's here, and it exports in seconds, not minutes.
            torch.onnx.export(spec.wrap(module).eval(), spec.example(module), staging, dynamo=False,
                              input_names=list(spec.inputs), output_names=["out"],
                              dynamic_axes={**spec.dynamic, "out": {0: "batch"}}, opset_version=OPSET)
        os.replace(staging, path)
    finally:
        Path(staging).unlink(missing_ok=True)
    return path


def _onnxruntime():
    try:
        import onnx  # noqa: F401  (torch.onnx.export writes through it)
        import onnxruntime
    except ImportError:
        raise MarbleError("backend onnx needs ONNX Runtime and onnx: pip install onnxruntime onnx, "
                          "or choose --backend torch") from None
    return onnxruntime


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "marble" / "onnx"


def writable_or_default(cache_dir: Path | None) -> Path:
    """`cache_dir` if it can be written (a run folder installed read-only cannot), else the user's cache."""
    if cache_dir is not None:
        try:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            if os.access(cache_dir, os.W_OK):
                return Path(cache_dir)
        except OSError:
            pass
    return default_cache_dir()


class OnnxRuntimeEngine:
    """ONNX Runtime's CPU execution provider, fp32."""

    label = "onnxruntime"

    def load(self, path: Path, threads: int) -> Callable[[dict], np.ndarray]:
        runtime = _onnxruntime()
        settings = runtime.SessionOptions()
        settings.intra_op_num_threads = threads
        settings.inter_op_num_threads = 1
        session = runtime.InferenceSession(str(path), settings, providers=["CPUExecutionProvider"])
        return lambda feed: session.run(None, feed)[0]


class ExportedGraph:
    """`module` as `spec` exports it, run in `engine`; the export (seconds) happens on the first call, or never
    if cached, and again whenever the module's weights change in place."""

    def __init__(self, module: torch.nn.Module, spec: GraphSpec, cache_dir: Path | None, engine):
        self.module, self.spec, self.engine = module, spec, engine
        self.cache_dir = writable_or_default(cache_dir)
        self.setup_seconds = 0.0  # export and engine set-up, when they happen
        self._run = None
        self._exported_state: tuple | None = None

    def onnx_path(self) -> Path:
        # The graph also depends on the exporter, so the torch version is part of the name.
        torch_version = torch.__version__.replace("+", "-")
        return self.cache_dir / f"{self.spec.name}-{weights_fingerprint(self.module)}-torch{torch_version}.onnx"

    def runner(self) -> Callable[[dict], np.ndarray]:
        state = live_state(self.module)
        if self._run is None or state != self._exported_state:
            started = time.perf_counter()
            path = self.onnx_path()
            if not path.is_file():
                export_onnx(self.module, self.spec, path)
            self._run = self.engine.load(path, torch.get_num_threads())  # the same thread budget as torch
            self._exported_state = state
            self.setup_seconds += time.perf_counter() - started
        return self._run

    @property
    def compile_seconds(self) -> float:
        """Export, engine set-up and, for engines that compile per input shape, each shape's compile."""
        return self.setup_seconds + getattr(self._run, "compile_seconds", 0.0)

    def __call__(self, feed: dict[str, np.ndarray]) -> torch.Tensor:
        run = self.runner()
        with torch.profiler.record_function(f"{self.spec.name} ({self.engine.label})"):  # one op in torch.profiler tables
            return torch.from_numpy(np.array(run(feed), dtype=np.float32))  # a copy: engines reuse their buffers


def float_engine(backend: str, precision: str):
    """The engine that runs an exported graph for `backend` ("onnx" or "openvino") at a float precision;
    "int8" gets the bf16 engine here, as only the U-Net is quantized (int8_unet.py)."""
    if backend == "onnx":
        return OnnxRuntimeEngine()
    from marble.inference.openvino_engine import OpenVinoEngine

    return OpenVinoEngine("auto" if precision == "int8" else precision)
