"""Sample sheet of a model: one row per prompt, fixed seeds, written as a PNG for the docs.

    python bench/reference_samples.py [--model reference] [--out docs/images/reference-samples.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from marble.cli import resolve_model
from marble.images import grid, save_png, upscale
from marble.pipeline import GenerationRequest, MarblePipeline

PROMPTS = ("red apple", "smiling face with sunglasses", "紅蘋果", "dog face", "red heart", "rocket", "sun", "pizza")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="reference")
    parser.add_argument("--out", type=Path, default=Path("docs/images/reference-samples.png"))
    parser.add_argument("--per-prompt", type=int, default=6)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--sampler", default="dpm++")
    args = parser.parse_args()
    pipeline = MarblePipeline.load(resolve_model(args.model))
    rows = [pipeline.generate(GenerationRequest(prompt, steps=args.steps, guidance=args.guidance,
                                                sampler=args.sampler, seed=0, num_images=args.per_prompt)).images
            for prompt in PROMPTS]
    save_png(grid(upscale(torch.cat(rows), 2), columns=args.per_prompt), args.out)
    print(f"wrote {args.out}: rows = {', '.join(PROMPTS)}; seed 0, {args.sampler}, {args.steps} steps, "
          f"guidance {args.guidance}")


if __name__ == "__main__":
    main()
