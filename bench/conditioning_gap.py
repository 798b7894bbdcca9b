"""Does the U-Net use the text? ε-loss on training images with the right caption, a shuffled one and "".

    python bench/conditioning_gap.py --run runs/emoji-ref --data data/emoji [--images 512]

Each image is noised at a few fixed timesteps with one shared noise draw; the three losses differ
only in the context. Right ≪ shuffled says the model reads the caption; right < empty says the
caption helps beyond the unconditional prediction that guidance starts from.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from marble.config import RunConfig, load_json
from marble.diffusion.schedule import NoiseSchedule
from marble.layout import RunLayout
from marble.training.data import load_training_data
from marble.training.unet_stage import prepare_inputs

TIMESTEPS = (100, 300, 500, 700, 900)
CHUNK = 128


@torch.no_grad()
def mean_loss(unet, x_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor, noise: torch.Tensor) -> float:
    losses = []
    for s in range(0, len(x_t), CHUNK):
        with torch.autocast("cpu", torch.bfloat16):
            prediction = unet(x_t[s:s + CHUNK], t[s:s + CHUNK], encoder_hidden_states=context[s:s + CHUNK]).sample
        losses.append(((prediction.float() - noise[s:s + CHUNK]) ** 2).mean(dim=(1, 2, 3)))
    return torch.cat(losses).mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a training run folder (needs its run.json)")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--images", type=int, default=512)
    args = parser.parse_args()
    layout = RunLayout(args.run)
    config = load_json(RunConfig, layout.run_config)
    data = load_training_data(args.data, config.data, progress=False)
    inputs = prepare_inputs(layout, data, progress=False)
    unet = UNet2DConditionModel.from_pretrained(layout.unet).eval()
    schedule = NoiseSchedule.from_unet_config(config.unet)
    generator = torch.Generator().manual_seed(0)
    chosen = torch.randperm(len(data.train), generator=generator)[:args.images].tolist()
    right = inputs.contexts[inputs.captions.pick(chosen, [0] * len(chosen))]  # each image's primary caption
    contexts = {"right caption": right, "shuffled caption": right[torch.randperm(len(chosen), generator=generator)],
                "empty prompt": inputs.empty_context.expand_as(right)}
    x0 = inputs.latent_mean[chosen] * inputs.latent_scale
    print(f"| t | ᾱ_t | {' | '.join(contexts)} |\n| --- | --- |{' --- |' * len(contexts)}")
    for step in TIMESTEPS:
        t = torch.full((len(chosen),), step)
        noise = torch.randn(x0.shape, generator=generator)
        x_t = schedule.q_sample(x0, t, noise)
        losses = [mean_loss(unet, x_t, t, context, noise) for context in contexts.values()]
        alpha_bar = float(schedule.alphas_cumprod[step])
        print(f"| {step} | {alpha_bar:.4f} | {' | '.join(f'{loss:.4f}' for loss in losses)} |")


if __name__ == "__main__":
    main()
