"""Sample sheet of a model: one row per prompt, fixed seeds, written as a PNG for the docs.

    python bench/reference_samples.py [--model reference] [--out docs/images/reference-samples.png]
    python bench/reference_samples.py --judge runs/eval-clip/clip --data data/emoji

--judge also says, for each prompt, whether the samples look like the emoji the prompt names: an
independent CLIP (`marble train eval-clip`, its image tower) ranks every real image of --data by
cosine to each sample, and the table counts the samples whose nearest real image, or one of the
nearest five, is an image captioned with the prompt (in any language).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import torch

from marble.cli import resolve_model
from marble.data.folder import load_image_folder
from marble.evaluation.clip_score import load_clip_with_tokenizer
from marble.images import grid, save_png, upscale
from marble.pipeline import GenerationRequest, MarblePipeline
from text_retrieval import image_embeddings  # bench/ is on sys.path when this file is run as a script

PROMPTS = ("red apple", "smiling face with sunglasses", "紅蘋果", "dog face", "red heart", "rocket", "sun", "pizza")


def judge_table(samples: dict[str, torch.Tensor], clip_dir: Path, data_dir: Path) -> str:
    """Markdown: per prompt, how many samples' nearest real images are the prompt's own emoji."""
    clip, _ = load_clip_with_tokenizer(clip_dir)
    clip.eval()
    data, _ = load_image_folder(data_dir, clip.config.vision_config.image_size, progress=False)
    real = image_embeddings(clip, data.images)
    rows = ["| prompt | samples | nearest is the prompt's emoji | in the nearest 5 | most common nearest |",
            "| --- | --- | --- | --- | --- |"]
    for prompt, images in samples.items():
        targets = torch.tensor([prompt in caption.values() for caption in data.captions])
        if not targets.any():
            raise SystemExit(f"no image in {data_dir} is captioned {prompt!r}: nothing to judge against")
        top5 = (image_embeddings(clip, images) @ real.T).topk(5, dim=1).indices  # (samples, 5)
        hits = targets[top5]
        common, count = Counter(data.captions[i]["text"] for i in top5[:, 0].tolist()).most_common(1)[0]
        rows.append(f"| {prompt} | {len(images)} | {int(hits[:, 0].sum())} | {int(hits.any(dim=1).sum())} "
                    f"| {common} ({count}) |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="reference")
    parser.add_argument("--out", type=Path, default=Path("docs/images/reference-samples.png"))
    parser.add_argument("--per-prompt", type=int, default=6)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--sampler", default="dpm++")
    parser.add_argument("--judge", type=Path, help="an evaluation CLIP folder (RUN/clip of `marble train eval-clip`)")
    parser.add_argument("--data", type=Path, help="the image folder --judge ranks the samples against")
    args = parser.parse_args()
    if args.judge and not args.data:
        parser.error("--judge needs --data")
    pipeline = MarblePipeline.load(resolve_model(args.model))
    samples = {prompt: pipeline.generate(GenerationRequest(prompt, steps=args.steps, guidance=args.guidance,
                                                           sampler=args.sampler, seed=0,
                                                           num_images=args.per_prompt)).images
               for prompt in PROMPTS}
    save_png(grid(upscale(torch.cat(list(samples.values())), 2), columns=args.per_prompt), args.out)
    print(f"wrote {args.out}: rows = {', '.join(PROMPTS)}; seed 0, {args.sampler}, {args.steps} steps, "
          f"guidance {args.guidance}")
    if args.judge:
        print(judge_table(samples, args.judge, args.data))


if __name__ == "__main__":
    main()
