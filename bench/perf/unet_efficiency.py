"""U-Net forward: achieved GFLOP/s (FlopCounterMode's count) beside the matmul peak measured here."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from torch.utils.flop_counter import FlopCounterMode

from marble.layout import RunLayout
from marble.pipeline import MarblePipeline
from perf.timing import current_rss_mib, interleaved, summarize
from perf.variants import PATHS


def unet_inputs(layout: RunLayout, unet: UNet2DConditionModel, batch: int) -> tuple:
    """Noise latents (B, C, h, w), one timestep, random contexts (B, L, D) of the run's text length."""
    length = json.loads((layout.text_encoder / "encoder.json").read_text())["max_length"]
    config = unet.config
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(batch, config.in_channels, config.sample_size, config.sample_size, generator=generator)
    context = torch.randn(batch, length, config.cross_attention_dim, generator=generator)
    return sample, torch.tensor(500), context


def count_flops(unet: UNet2DConditionModel, inputs: tuple) -> int:
    """FLOPs of one fp32 forward (matmuls, convolutions, attention: what FlopCounterMode counts)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        unet(inputs[0], inputs[1], encoder_hidden_states=inputs[2])
    return counter.get_total_flops()


def forwards(params: dict, layout: RunLayout) -> dict:
    """name → a U-Net forward of its own model copy (channels_last and compile change the module), made as
    `marble generate` makes it (int8 calibrates by sampling the run's prompts)."""
    found = {}
    for name in params["paths"]:
        pipeline = MarblePipeline.load(layout.root, PATHS[name])
        pipeline.cache_dir = Path(params["cache_dir"])  # a scratch folder: the suite never writes into the model
        found[name] = pipeline.unet_forward()
    return found


@torch.no_grad()
def measure_unet(params: dict) -> dict:
    layout = RunLayout(Path(params["model"]))
    paths = forwards(params, layout)
    results = {}
    for batch in params["batches"]:
        inputs = unet_inputs(layout, next(iter(paths.values())).unet, batch)
        flops = count_flops(UNet2DConditionModel.from_pretrained(layout.unet).eval(), inputs)
        calls = {name: (lambda f: lambda: f(*inputs))(forward) for name, forward in paths.items()}
        times = interleaved(calls, params["rounds"], warmup=2)  # compile / ONNX export happen in the warm-up
        results[str(batch)] = {"flops": flops, "paths": {name: {
            "seconds": summarize(values), "gflops_median": flops / summarize(values)["median"] / 1e9,
            "gflops_best": flops / min(values) / 1e9} for name, values in times.items()}}
    compile_seconds = {name: round(forward.compile_seconds, 2) for name, forward in paths.items()}
    return {"batches": results, "compile_seconds": compile_seconds}


@torch.no_grad()
def measure_unet_memory(params: dict) -> dict:
    layout = RunLayout(Path(params["model"]))
    forward = forwards({**params, "paths": [params["path"]]}, layout)[params["path"]]
    loaded = current_rss_mib()
    forward(*unet_inputs(layout, forward.unet, max(params["batches"])))
    return {"path": params["path"], "rss_after_load_mib": round(loaded, 1)}


def measure_matmul_peak(params: dict) -> dict:
    """GFLOP/s of an n×n matmul in fp32 and bf16, interleaved; the best round is the peak."""
    n = params["matmul_size"]
    a32 = torch.randn(n, n)
    b32 = torch.randn(n, n)
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    times = interleaved({"fp32": lambda: a32 @ b32, "bf16": lambda: a16 @ b16}, params["rounds"], warmup=1)
    flops = 2 * n**3
    return {"n": n, **{name: {"peak_gflops": flops / min(values) / 1e9, "median_gflops": flops / summarize(values)["median"] / 1e9}
                       for name, values in times.items()}}
