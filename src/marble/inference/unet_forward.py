"""The U-Net call the sampler makes, run as InferenceOptions say: eager or compiled, fp32 or bf16 autocast."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Protocol

import torch
from diffusers import UNet2DConditionModel
from torch import Tensor

from marble.inference.live_state import has_adapters
from marble.inference.options import InferenceOptions


class UNetForward(Protocol):
    """(sample (B, C, h, w), t 0-d or (B,), context (B, L, D)) -> float32 model output (B, C, h, w)."""

    unet: torch.nn.Module
    compile_seconds: float

    def __call__(self, sample: Tensor, t: Tensor, context: Tensor) -> Tensor: ...


class TorchUNetForward:
    """diffusers' UNet2DConditionModel under autocast / channels_last / torch.compile, as chosen."""

    def __init__(self, unet: torch.nn.Module, options: InferenceOptions):
        self.unet, self.options = unet, options
        if options.channels_last:
            unet.to(memory_format=torch.channels_last)
        self.module = torch.compile(unet) if options.compile else unet
        self.compile_seconds = 0.0  # first calls at each new input shape, when compiling: they trace and build
        self._shapes_seen: set[tuple] = set()

    def __call__(self, sample: Tensor, t: Tensor, context: Tensor) -> Tensor:
        if self.options.channels_last:
            sample = sample.contiguous(memory_format=torch.channels_last)
        first_at_shape = self.options.compile and (sample.shape, context.shape) not in self._shapes_seen
        started = time.perf_counter()
        with torch.autocast(sample.device.type, dtype=torch.bfloat16, enabled=self.options.bf16_at(len(sample))):
            output = self.module(sample, t, encoder_hidden_states=context).sample
        if first_at_shape:
            self._shapes_seen.add((sample.shape, context.shape))
            self.compile_seconds += time.perf_counter() - started
        # The scheduler's arithmetic stays fp32 whatever the U-Net ran in.
        return output.float().contiguous()


def onnx_ready(unet: torch.nn.Module) -> bool:
    """Whether backends onnx and openvino can run `unet`: a plain diffusers U-Net. A ControlNet wrapper or LoRA layers
    run in torch instead: the export is named by the weights' hash, which a LoRA scale is not part of."""
    return isinstance(unet, UNet2DConditionModel) and not has_adapters(unet)


def make_unet_forward(unet: torch.nn.Module, options: InferenceOptions, cache_dir: Path | None,
                      calibration: tuple[list[str], Callable[[], list]] | None = None) -> UNetForward:
    """The runner for `options`; the ONNX one exports `unet` into `cache_dir` on its first call. `calibration`
    gives precision int8 its prompts and a function that gathers U-Net feeds by sampling them (once, if ever)."""
    options.validate()
    if options.backend in ("onnx", "openvino") and onnx_ready(unet):
        from marble.inference.exported_graph import float_engine
        from marble.inference.onnx_unet import OnnxUNetForward

        engine = float_engine(options.backend, options.precision)
        if options.precision == "int8":
            from marble.inference.int8_unet import Int8Engine

            engine = Int8Engine(*(calibration or ([], list)))
        return OnnxUNetForward(unet, cache_dir, engine)
    return TorchUNetForward(unet, options)
