"""The autoencoder's decoder exported once to ONNX (exported_graph.py) and run by the U-Net's engine.

Sampling ends in one decoder call over the whole batch, and previews add one every k steps: in eager
fp32 that was 8% of a batch-16 generation once the U-Net ran in OpenVINO (docs/performance.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from diffusers import AutoencoderKL
from torch import Tensor

from marble.inference.exported_graph import ExportedGraph, GraphSpec, float_engine
from marble.inference.options import InferenceOptions


class _Decode(torch.nn.Module):
    """latents (already divided by the scaling factor) -> images in [-1, 1], as diffusers' decode gives them."""

    def __init__(self, vae: AutoencoderKL):
        super().__init__()
        self.vae = vae

    def forward(self, latents: Tensor) -> Tensor:
        return self.vae.decode(latents, return_dict=False)[0]


def _example(vae: AutoencoderKL) -> tuple[Tensor]:
    size = vae.config.sample_size // 2 ** (len(vae.config.block_out_channels) - 1)
    draw = torch.Generator().manual_seed(0)  # tracing must not move the caller's global random state
    return (torch.randn(2, vae.config.latent_channels, size, size, generator=draw),)


DECODER_GRAPH = GraphSpec(name="decoder", wrap=_Decode, example=_example, inputs=("latents",),
                          dynamic={"latents": {0: "batch", 2: "height", 3: "width"}})


class OnnxDecoder:
    """vae.decode(latents).sample on the exported graph; the export is named by all of the autoencoder's weights."""

    def __init__(self, vae: AutoencoderKL, cache_dir: Path | None, engine):
        self.vae = vae
        self.graph = ExportedGraph(vae, DECODER_GRAPH, cache_dir, engine)

    @property
    def compile_seconds(self) -> float:
        return self.graph.compile_seconds

    def __call__(self, latents: Tensor) -> Tensor:
        return self.graph({"latents": latents.detach().float().contiguous().numpy()})


def make_decoder(vae: AutoencoderKL, options: InferenceOptions, cache_dir: Path | None) -> Callable[[Tensor], Tensor]:
    """latents / scaling factor -> images in [-1, 1]: the exported graph for backends onnx and openvino, which
    decode at the options' float precision; eager fp32 for backend torch."""
    if options.backend == "torch":
        return lambda latents: vae.decode(latents).sample
    return OnnxDecoder(vae, cache_dir, float_engine(options.backend, options.precision))
