"""Sample sheet of a model: one row per prompt, fixed seeds, written as a PNG for the docs.

    python bench/reference_samples.py [--model reference] [--out docs/images/reference-samples.png]
    python bench/reference_samples.py --judge runs/eval-clip --data data/emoji

--judge also says, for each prompt, whether the samples look like the emoji the prompt names: an
independent CLIP (`marble train eval-clip`, its image tower) ranks every real image of --data by
cosine to each sample, and the table counts the samples whose nearest real image, or one of the
nearest five, is an image captioned with the prompt (in any language). --random-prompts N judges
N English captions drawn at random from --data instead of the fixed prompts, for a rate over the
data rather than over eight hand-picked emoji.
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from pathlib import Path

import torch

from marble.cli import resolve_model
from marble.data.folder import SkipReport, find_metadata, load_image_folder
from marble.evaluation.clip_score import load_clip_with_tokenizer
from marble.images import grid, save_png, upscale
from marble.pipeline import GenerationRequest, MarblePipeline
from text_retrieval import image_embeddings  # bench/ is on sys.path when this file is run as a script

PROMPTS = ("red apple", "smiling face with sunglasses", "紅蘋果", "dog face", "red heart", "rocket", "sun", "pizza")


def judge_table(samples: dict[str, torch.Tensor], clip, data_dir: Path) -> str:
    """Markdown: per prompt, how many samples' nearest real images are the prompt's own emoji;
    then the same counts per metadata `category` when the folder's metadata has one."""
    data, _ = load_image_folder(data_dir, clip.config.vision_config.image_size, progress=False)
    real = image_embeddings(clip, data.images)
    by_category = category_of_caption(data_dir)
    tally = Counter()  # (category, "samples" | "top1" | "top5") -> count; category "all" for the total
    rows = ["| prompt | samples | nearest is the prompt's emoji | in the nearest 5 | most common nearest |",
            "| --- | --- | --- | --- | --- |"]
    for prompt, images in samples.items():
        targets = torch.tensor([prompt in caption.values() for caption in data.captions])
        if not targets.any():
            raise SystemExit(f"no image in {data_dir} is captioned {prompt!r}: nothing to judge against")
        top5 = (image_embeddings(clip, images) @ real.T).topk(5, dim=1).indices  # (samples, 5)
        hits = targets[top5]
        for category in ("all", by_category.get(prompt)):
            tally[category, "samples"] += len(images)
            tally[category, "top1"] += int(hits[:, 0].sum())
            tally[category, "top5"] += int(hits.any(dim=1).sum())
        common, count = Counter(data.captions[i]["text"] for i in top5[:, 0].tolist()).most_common(1)[0]
        rows.append(f"| {prompt} | {len(images)} | {int(hits[:, 0].sum())} | {int(hits.any(dim=1).sum())} "
                    f"| {common} ({count}) |")
    rows.append(_tally_row(f"**all {len(samples)} prompts**", tally, "all"))
    categories = sorted({c for c, _ in tally if c not in ("all", None)}, key=lambda c: -tally[c, "samples"])
    if categories:
        rows += ["", "| category | samples | nearest is the prompt's emoji | in the nearest 5 |", "| --- | --- | --- | --- |"]
        rows += [_tally_row(category, tally, category).removesuffix(" |") for category in categories]
    return "\n".join(rows)


def _tally_row(label: str, tally: Counter, key) -> str:
    n, top1, top5 = tally[key, "samples"], tally[key, "top1"], tally[key, "top5"]
    return f"| {label} | {n} | {top1} ({top1 / n:.0%}) | {top5} ({top5 / n:.0%}) | |"


def category_of_caption(data_dir: Path) -> dict[str, str]:
    """Every caption (any language) -> its image's metadata `category`, where the metadata has one."""
    found = {}
    for entry in find_metadata(data_dir, SkipReport()).values():
        if isinstance(entry.fields.get("category"), str):
            found.update((caption, entry.fields["category"]) for caption in entry.captions.values())
    return found


def random_captions(data_dir: Path, count: int, seed: int = 0) -> tuple[str, ...]:
    """`count` distinct English captions of the folder, drawn reproducibly."""
    data, _ = load_image_folder(data_dir, 8, progress=False)
    captions = sorted({caption["text"] for caption in data.captions})
    if count > len(captions):
        raise SystemExit(f"--random-prompts {count}: {data_dir} has only {len(captions)} distinct captions")
    return tuple(random.Random(seed).sample(captions, count))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="reference")
    parser.add_argument("--out", type=Path, default=Path("docs/images/reference-samples.png"))
    parser.add_argument("--per-prompt", type=int, default=6)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--sampler", default="dpm++")
    parser.add_argument("--judge", type=Path, help="an evaluation CLIP folder (the RUN of `marble train eval-clip --run RUN`)")
    parser.add_argument("--data", type=Path, help="the image folder --judge ranks the samples against")
    parser.add_argument("--random-prompts", type=int, default=0,
                        help="use N random English captions of --data instead of the fixed prompts")
    args = parser.parse_args()
    if (args.judge or args.random_prompts) and not args.data:
        parser.error("--judge and --random-prompts need --data")
    judge = load_clip_with_tokenizer(args.judge)[0].eval() if args.judge else None  # fail before sampling
    prompts = random_captions(args.data, args.random_prompts) if args.random_prompts else PROMPTS
    pipeline = MarblePipeline.load(resolve_model(args.model))
    samples = {prompt: pipeline.generate(GenerationRequest(prompt, steps=args.steps, guidance=args.guidance,
                                                           sampler=args.sampler, seed=0,
                                                           num_images=args.per_prompt)).images
               for prompt in prompts}
    save_png(grid(upscale(torch.cat(list(samples.values())), 2), columns=args.per_prompt), args.out)
    print(f"wrote {args.out}: rows = {', '.join(prompts)}; seed 0, {args.sampler}, {args.steps} steps, "
          f"guidance {args.guidance}")
    if args.judge:
        print(judge_table(samples, judge, args.data))


if __name__ == "__main__":
    main()
