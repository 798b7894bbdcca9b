"""fp32 vs bf16 autocast, one training step of each stage of a preset, side by side in one run.

    python bench/stage_precision.py [--preset emoji] [--repeats 5] [--out docs/precision.md]

Why: bf16 on this CPU uses AMX and is much faster for big matmuls and convolutions, but not for
every model size (DESIGN.md). Each stage's TrainConfig.mixed_precision is set from this table.
Timings are medians of `repeats` steps after one warm-up step, alternating the two precisions
so that background load hits both alike.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from marble.autoencoder.loss import reconstruction_loss
from marble.autoencoder.model import build_autoencoder, latent_shape
from marble.config import preset
from marble.generators.unet import build_unet, use_matmul_attention_on_cpu
from marble.text.clip import build_clip, contrastive_loss
from marble.text.tokenizer import train_tokenizer


def clip_step(config):
    tokenizer = train_tokenizer([f"caption {i}" for i in range(200)], config.text.vocab_size, config.text.max_length)
    model = build_clip(config.text, config.data.image_size, tokenizer)
    batch = config.text.train.batch_size
    pixels = torch.randn(batch, 3, config.data.image_size, config.data.image_size)
    ids = torch.randint(0, len(tokenizer), (batch, config.text.max_length))
    return model, lambda: contrastive_loss(model, pixels, ids)[0]


def autoencoder_step(config):
    model = build_autoencoder(config.autoencoder, config.data.image_size)
    batch = config.autoencoder.train.batch_size
    images = torch.rand(batch, 3, config.data.image_size, config.data.image_size) * 2 - 1
    noise = torch.randn(batch, *latent_shape(config.autoencoder, config.data.image_size))
    return model, lambda: reconstruction_loss(model, images, noise, config.autoencoder.kl_weight)[0]


def unet_step(config):
    channels, size, _ = latent_shape(config.autoencoder, config.data.image_size)
    model = build_unet(config.unet, channels, size, config.text.width)
    use_matmul_attention_on_cpu(model, torch.device("cpu"))  # as the U-Net stage trains on a CPU
    batch = config.unet.train.batch_size
    latents = torch.randn(batch, channels, size, size)
    context = torch.randn(batch, config.text.max_length, config.text.width)
    steps = torch.randint(0, 1000, (batch,))
    return model, lambda: (model(latents, steps, encoder_hidden_states=context).sample.float() - latents).square().mean()


def time_step(model, loss_fn, optimizer, bf16: bool) -> float:
    started = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = loss_fn()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - started


def measure(name, builder, config, repeats):
    model, loss_fn = builder(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    times = {False: [], True: []}
    for bf16 in (False, True):
        time_step(model, loss_fn, optimizer, bf16)  # warm-up
    for _ in range(repeats):
        for bf16 in (False, True):
            times[bf16].append(time_step(model, loss_fn, optimizer, bf16))
    fp32, bf16 = statistics.median(times[False]), statistics.median(times[True])
    spread = lambda xs: f"{min(xs):.2f}–{max(xs):.2f}"
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return f"| {name} | {params:.1f} M | {fp32:.2f} ({spread(times[False])}) | {bf16:.2f} ({spread(times[True])}) | {fp32 / bf16:.2f}× |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="emoji")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("docs/precision.md"))
    args = parser.parse_args()
    config = preset(args.preset)
    rows = [measure(f"text (CLIP, batch {config.text.train.batch_size})", clip_step, config, args.repeats),
            measure(f"autoencoder (batch {config.autoencoder.train.batch_size})", autoencoder_step, config, args.repeats),
            measure(f"unet (batch {config.unet.train.batch_size})", unet_step, config, args.repeats)]
    table = "\n".join(["| stage | parameters | fp32 s/step (range) | bf16 s/step (range) | fp32/bf16 |",
                       "| --- | --- | --- | --- | --- |", *rows])
    header = (f"# Training step time: fp32 vs bf16 autocast\n\nPreset `{args.preset}`, median of {args.repeats} "
              f"steps each (forward, backward, fused AdamW), one run of `python bench/stage_precision.py`.\n"
              f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
              f"torch {torch.__version__}.\n\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(header + table + "\n")
    print(header + table)


if __name__ == "__main__":
    main()
