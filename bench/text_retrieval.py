"""Which training images a run's CLIP finds nearest to a prompt: is the text encoder the bottleneck?

    python bench/text_retrieval.py --clip runs/emoji-ref/text/clip --data data/emoji "red apple" "sun"
    python bench/text_retrieval.py --clip runs/emoji-ref/text/clip --data data/emoji --recall

--recall ranks every image of the folder against each of its captions (per language) and prints
recall@1/5/10: how often an image's own caption retrieves it among all the folder's images.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from marble.config import DataConfig
from marble.data.folder import load_image_folder
from marble.data.split import holdout_mask
from marble.evaluation.clip_score import load_clip_with_tokenizer
from marble.evaluation.extractors import resize_for
from marble.text.clip import images_to_clip_pixels
from marble.text.tokenizer import tokenize_prompts

BATCH = 256


@torch.no_grad()
def image_embeddings(clip, images: torch.Tensor) -> torch.Tensor:
    size = clip.config.vision_config.image_size
    chunks = [clip.get_image_features(pixel_values=images_to_clip_pixels(resize_for(images[i:i + BATCH], size)))
              .pooler_output for i in range(0, len(images), BATCH)]
    return F.normalize(torch.cat(chunks), dim=-1)  # (N, P)


@torch.no_grad()
def text_embeddings(clip, tokenizer, prompts: list[str]) -> torch.Tensor:
    chunks = [clip.get_text_features(input_ids=tokenize_prompts(tokenizer, prompts[i:i + BATCH]).input_ids).pooler_output
              for i in range(0, len(prompts), BATCH)]
    return F.normalize(torch.cat(chunks), dim=-1)  # (N, P)


def recall_table(clip, tokenizer, captions: list[dict], embeddings: torch.Tensor, held_out: list[bool],
                 ks=(1, 5, 10)) -> str:
    """Recall@k of each image by its own caption, among all images, per caption language.

    One row for every image and one for the held-out ones alone: captions the text stage never saw.
    """
    langs = sorted({key for c in captions for key in c if key != "text"} or {"text"})
    rows = [f"| language | images | N | {' | '.join(f'recall@{k}' for k in ks)} |", "|---" * (len(ks) + 3) + "|"]
    for lang in langs:
        owners = [i for i, c in enumerate(captions) if c.get(lang)]
        prompts = [captions[i][lang] for i in owners]
        scores = text_embeddings(clip, tokenizer, prompts) @ embeddings.T  # (captions, images)
        own = scores[torch.arange(len(owners)), torch.tensor(owners)]
        rank = (scores > own[:, None]).sum(dim=1)  # 0 = the caption's own image is the nearest
        for label, keep in (("all", torch.ones(len(owners), dtype=torch.bool)),
                            ("held out", torch.tensor([held_out[i] for i in owners]))):
            rows.append(f"| {lang} | {label} | {int(keep.sum())} | "
                        + " | ".join(f"{(rank[keep] < k).float().mean():.3f}" for k in ks) + " |")
    return "\n".join(rows)


@torch.no_grad()
def nearest(clip, tokenizer, embeddings: torch.Tensor, prompt: str, count: int) -> list[int]:
    text = clip.get_text_features(input_ids=tokenize_prompts(tokenizer, [prompt]).input_ids).pooler_output
    return (embeddings @ F.normalize(text, dim=-1)[0]).topk(count).indices.tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prompts", nargs="*")
    parser.add_argument("--recall", action="store_true", help="print recall@1/5/10 per caption language")
    parser.add_argument("--clip", type=Path, required=True, help="a CLIP folder with its tokenizer (RUN/text/clip)")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--top", type=int, default=3)
    parser.add_argument("--holdout-fraction", type=float, default=DataConfig().holdout_fraction,
                        help="the training run's held-out fraction (default: the presets')")
    args = parser.parse_args()
    clip, tokenizer = load_clip_with_tokenizer(args.clip)
    clip.eval()
    data, _ = load_image_folder(args.data, clip.config.vision_config.image_size, progress=False)
    embeddings = image_embeddings(clip, data.images)
    if args.recall:
        held_out = holdout_mask(data.file_names, args.holdout_fraction)
        print(recall_table(clip, tokenizer, data.captions, embeddings, held_out), "\n")
    if not args.prompts:
        return
    print("| prompt | the CLIP's nearest images |\n| --- | --- |")
    for prompt in args.prompts:
        names = [data.captions[i]["text"] for i in nearest(clip, tokenizer, embeddings, prompt, args.top)]
        print(f"| {prompt} | {', '.join(names)} |")


if __name__ == "__main__":
    main()
