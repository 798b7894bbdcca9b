"""img2img at several strengths and an inpainting on a model, as one PNG sheet for docs/editing.md.

    python bench/edit_demo.py [--model reference] [--out docs/images/edit-demo.png]

Rows 1-2: a crude drawing (column 1), then img2img at each strength in STRENGTHS, one seed.
Row 3: a generated face, the mask (white = repaint), three seeds inpainted, the first with paste_unmasked.
Prints the numbers docs/editing.md quotes: distance from the source per strength, kept-region error.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from marble.cli import resolve_model
from marble.editing import ImageEdit
from marble.images import grid, save_png, upscale
from marble.pipeline import GenerationRequest, MarblePipeline

STRENGTHS = (0.0, 0.3, 0.5, 0.7, 0.85, 1.0)
DRAWINGS = {"smiling face": "face", "red heart": "heart"}  # prompt → what the crude source shows


def drawing(kind: str, size: int) -> torch.Tensor:
    """A child's drawing on white, (3, size, size) uint8: the kind of source SDEdit turns into an image."""
    picture = Image.new("RGB", (size, size), "white")
    pen, s = ImageDraw.Draw(picture), size / 64
    if kind == "face":
        pen.ellipse([8 * s, 8 * s, 56 * s, 56 * s], fill=(250, 200, 40))
        for x in (24, 40):
            pen.ellipse([(x - 4) * s, 22 * s, (x + 4) * s, 32 * s], fill=(60, 40, 20))
        pen.arc([20 * s, 28 * s, 44 * s, 46 * s], 20, 160, fill=(60, 40, 20), width=max(1, round(3 * s)))
    else:
        pen.ellipse([10 * s, 14 * s, 34 * s, 38 * s], fill=(220, 30, 50))
        pen.ellipse([30 * s, 14 * s, 54 * s, 38 * s], fill=(220, 30, 50))
        pen.polygon([(12 * s, 30 * s), (52 * s, 30 * s), (32 * s, 54 * s)], fill=(220, 30, 50))
    return torch.from_numpy(np.array(picture)).permute(2, 0, 1).contiguous()


def upper_band_mask(size: int) -> torch.Tensor:
    """(size, size) bool: the band across the eyes, on whole 4-pixel latent cells."""
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[size // 8: size // 2, size // 8: size - size // 8] = True
    return mask


def mean_abs(a: torch.Tensor, b: torch.Tensor, where: torch.Tensor | None = None) -> float:
    """Mean |a − b| in grey levels (0-255), over the pixels `where` (H, W) if given."""
    difference = (a.float() - b.float()).abs().mean(dim=-3)
    return (difference if where is None else difference[..., where]).mean().item()


def img2img_row(pipeline: MarblePipeline, prompt: str, source: torch.Tensor, settings: dict) -> torch.Tensor:
    images = [source]
    for strength in STRENGTHS:
        started = time.perf_counter()
        out = pipeline.generate(GenerationRequest(prompt, edit=ImageEdit(source, strength), **settings)).images[0]
        print(f"  {prompt!r} strength {strength:.2f}: mean |image − source| {mean_abs(out, source):5.1f} grey levels, "
              f"{time.perf_counter() - started:.2f} s")
        images.append(out)
    return torch.stack(images)


def inpainting_row(pipeline: MarblePipeline, prompt: str, settings: dict) -> torch.Tensor:
    source = pipeline.generate(GenerationRequest("smiling face", **settings)).images[0]
    mask = upper_band_mask(pipeline.image_size)
    outs = pipeline.generate(GenerationRequest(prompt, **{**settings, "num_images": 3},
                                               edit=ImageEdit(source, 1.0, mask))).images
    pasted = pipeline.generate(GenerationRequest(prompt, **settings, edit=ImageEdit(source, 1.0, mask, True))).images
    reconstruction = pipeline.decode(pipeline.encode(source[None]))
    print(f"  inpainting {prompt!r}: outside the mask |image − source| {mean_abs(outs, source, ~mask):.1f} against the "
          f"autoencoder's own {mean_abs(reconstruction, source, ~mask):.1f}; inside, the images moved "
          f"{mean_abs(outs, reconstruction, mask):.1f} from the source's reconstruction; with paste_unmasked "
          f"{mean_abs(pasted, source, ~mask):.1f}")
    mask_image = (mask.to(torch.uint8) * 255).expand(3, -1, -1)
    return torch.cat([source[None], mask_image[None], outs, pasted])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="reference")
    parser.add_argument("--out", type=Path, default=Path("docs/images/edit-demo.png"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--sampler", default="dpm++")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--inpaint-prompt", default="smiling face with sunglasses")
    args = parser.parse_args()
    pipeline = MarblePipeline.load(resolve_model(args.model))
    settings = dict(steps=args.steps, guidance=args.guidance, sampler=args.sampler, seed=args.seed)
    rows = [img2img_row(pipeline, prompt, drawing(kind, pipeline.image_size), settings)
            for prompt, kind in DRAWINGS.items()]
    rows.append(inpainting_row(pipeline, args.inpaint_prompt, settings))
    columns = len(STRENGTHS) + 1
    save_png(grid(upscale(torch.cat(rows), 2), columns=columns), args.out)
    print(f"wrote {args.out}: seed {args.seed}, {args.sampler}, {args.steps} steps, guidance {args.guidance}")


if __name__ == "__main__":
    main()
