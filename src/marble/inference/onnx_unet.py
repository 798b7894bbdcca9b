"""The U-Net exported once to ONNX (exported_graph.py) and run by ONNX Runtime (fp32) or another engine."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from marble.inference.exported_graph import ExportedGraph, GraphSpec, OnnxRuntimeEngine


class _Positional(torch.nn.Module):
    """UNet2DConditionModel with positional inputs and a tensor output, as the exporter traces it."""

    def __init__(self, unet: torch.nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, sample: Tensor, timestep: Tensor, context: Tensor) -> Tensor:
        return self.unet(sample, timestep, encoder_hidden_states=context, return_dict=False)[0]


def _example(unet: torch.nn.Module) -> tuple[Tensor, ...]:
    config = unet.config
    draw = torch.Generator().manual_seed(0)  # tracing must not move the caller's global random state
    sample = torch.randn(2, config.in_channels, config.sample_size, config.sample_size, generator=draw)
    context = torch.randn(2, 8, config.cross_attention_dim, generator=draw)  # any context length works: it is dynamic too
    return sample, torch.full((2,), 500.0), context


UNET_GRAPH = GraphSpec(
    name="unet", wrap=_Positional, example=_example, inputs=("sample", "timestep", "context"),
    dynamic={"sample": {0: "batch"}, "timestep": {0: "batch"}, "context": {0: "batch", 1: "tokens"}})


class OnnxUNetForward:
    """The U-Net call of the sampler, run on the exported graph (ONNX Runtime unless another engine is given)."""

    def __init__(self, unet: torch.nn.Module, cache_dir: Path | None, engine=None):
        self.unet = unet
        self.graph = ExportedGraph(unet, UNET_GRAPH, cache_dir, engine or OnnxRuntimeEngine())
        self.on_feed: Callable[[dict], None] | None = None  # sees every feed, e.g. to gather int8 calibration data

    def onnx_path(self) -> Path:
        return self.graph.onnx_path()

    def runner(self) -> Callable[[dict], np.ndarray]:
        return self.graph.runner()

    @property
    def compile_seconds(self) -> float:
        return self.graph.compile_seconds

    def __call__(self, sample: Tensor, t: Tensor, context: Tensor) -> Tensor:
        batch = len(sample)
        feed = {
            "sample": sample.detach().float().contiguous().numpy(),
            "timestep": np.broadcast_to(t.detach().float().numpy(), (batch,)).copy(),
            "context": context.detach().float().contiguous().numpy(),
        }
        if self.on_feed is not None:
            self.on_feed(feed)
        return self.graph(feed)
