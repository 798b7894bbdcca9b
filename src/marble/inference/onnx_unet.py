"""The U-Net exported once to ONNX and run by ONNX Runtime's CPU execution provider (fp32).

The file is content-addressed (a hash of the weights), so a cache folder never serves stale weights:
retrained or LoRA-merged weights export again under a new name.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from marble.errors import MarbleError
from marble.finetune.lora import weights_fingerprint
from marble.inference.live_state import live_state

OPSET = 17
INPUTS = ("sample", "timestep", "context")


class _Positional(torch.nn.Module):
    """UNet2DConditionModel with positional inputs and a tensor output, as the exporter traces it."""

    def __init__(self, unet: torch.nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, sample: Tensor, timestep: Tensor, context: Tensor) -> Tensor:
        return self.unet(sample, timestep, encoder_hidden_states=context, return_dict=False)[0]


def export_unet_onnx(unet: torch.nn.Module, path: Path) -> Path:
    """Trace `unet` at batch 2 with a dynamic batch axis and write `path` atomically."""
    config = unet.config
    sample = torch.randn(2, config.in_channels, config.sample_size, config.sample_size)
    context = torch.randn(2, 8, config.cross_attention_dim)  # any context length works: it is dynamic too
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(handle)
    dynamic = {"sample": {0: "batch"}, "timestep": {0: "batch"}, "context": {0: "batch", 1: "tokens"}, "out": {0: "batch"}}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about diffusers' shape checks: batch is dynamic
            # The TorchScript exporter: as fast a graph as dynamo's here, and it exports in seconds, not minutes.
            torch.onnx.export(_Positional(unet).eval(), (sample, torch.full((2,), 500.0), context), staging,
                              dynamo=False, input_names=list(INPUTS), output_names=["out"],
                              dynamic_axes=dynamic, opset_version=OPSET)
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

    label = "unet (onnxruntime)"

    def load(self, path: Path, threads: int) -> Callable[[dict], np.ndarray]:
        runtime = _onnxruntime()
        settings = runtime.SessionOptions()
        settings.intra_op_num_threads = threads
        settings.inter_op_num_threads = 1
        session = runtime.InferenceSession(str(path), settings, providers=["CPUExecutionProvider"])
        return lambda feed: session.run(None, feed)[0]


class OnnxUNetForward:
    """Runs the exported graph in an engine (ONNX Runtime unless told); the export (seconds) happens on
    the first call, or never if cached."""

    def __init__(self, unet: torch.nn.Module, cache_dir: Path | None, engine=None):
        self.unet = unet
        self.engine = engine or OnnxRuntimeEngine()
        self.cache_dir = writable_or_default(cache_dir)
        self.setup_seconds = 0.0  # export and engine set-up, when they happen
        self._run = None
        self._exported_state: list | None = None
        self.on_feed: Callable[[dict], None] | None = None  # sees every feed, e.g. to gather int8 calibration data

    def onnx_path(self) -> Path:
        # The graph also depends on the exporter, so the torch version is part of the name.
        return self.cache_dir / f"unet-{weights_fingerprint(self.unet)}-torch{torch.__version__.replace('+', '-')}.onnx"

    def runner(self) -> Callable[[dict], np.ndarray]:
        state = live_state(self.unet)
        if self._run is None or state != self._exported_state:
            started = time.perf_counter()
            path = self.onnx_path()
            if not path.is_file():
                export_unet_onnx(self.unet, path)
            self._run = self.engine.load(path, torch.get_num_threads())  # the same thread budget as torch
            self._exported_state = state
            self.setup_seconds += time.perf_counter() - started
        return self._run

    @property
    def compile_seconds(self) -> float:
        """Export, engine set-up and, for engines that compile per input shape, each shape's compile."""
        return self.setup_seconds + getattr(self._run, "compile_seconds", 0.0)

    def __call__(self, sample: Tensor, t: Tensor, context: Tensor) -> Tensor:
        batch = len(sample)
        feed = {
            "sample": sample.detach().float().contiguous().numpy(),
            "timestep": np.broadcast_to(t.detach().float().numpy(), (batch,)).copy(),
            "context": context.detach().float().contiguous().numpy(),
        }
        if self.on_feed is not None:
            self.on_feed(feed)
        run = self.runner()
        with torch.profiler.record_function(self.engine.label):  # shows in torch.profiler tables as one op
            return torch.from_numpy(np.array(run(feed), dtype=np.float32))  # a copy: engines reuse their buffers
