"""Teach the reference model a style it has never seen (Noto Color Emoji) with a LoRA, and measure it.

    python bench/lora_style_demo.py --twemoji data/emoji --eval-clip runs/eval-clip --work runs/lora-noto

1. Base emoji (no skin-tone variants) are split by concept into: LoRA training, probe fitting, probe
   testing. Captions are the Twemoji dataset's own (emojibase labels), so only the style differs.
2. The LoRA set is rendered in Noto (data/noto_render.py) and an adapter trained on it (`train_lora`).
3. A logistic-regression probe on the evaluation CLIP's image features tells real Noto from real
   Twemoji; its accuracy on held-out concepts says how far to trust it.
4. Captions of held-out concepts (seen by neither the LoRA nor the probe) and of some LoRA-training
   concepts are generated at each LoRA scale (scale 0 is the base model exactly); the report gives
   the fraction of images the probe calls Noto.

Writes WORK/report.json and WORK/sheet.png (rows: prompts; columns: each scale, real Noto, real Twemoji).
Re-running reuses WORK/noto-train and a finished WORK/adapter (delete them to start over).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch
from PIL import Image
from tqdm.auto import tqdm

from marble.cli import resolve_model
from marble.data.noto_render import NOTO_FONT, as_tensor, load_noto_font, read_records, render_emoji, write_noto_dataset
from marble.evaluation.extractors import ClipImageExtractor
from marble.evaluation.sampling import SamplingOptions, generate_batch, image_seeds
from marble.evaluation.style_probe import fit_style_probe
from marble.finetune.adapter import load_adapter
from marble.finetune.apply import apply_adapters, rescale_adapters
from marble.images import grid, save_png, upscale
from marble.pipeline import MarblePipeline
from marble.training.lora_stage import LoraConfig, train_lora

SKIN_TONES = {"1f3fb", "1f3fc", "1f3fd", "1f3fe", "1f3ff"}
SPLITS = ("lora", "probe_fit", "probe_test")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--twemoji", type=Path, required=True, help="dataset from `marble data emoji`")
    parser.add_argument("--eval-clip", type=Path, required=True, help="folder from `marble train eval-clip`")
    parser.add_argument("--work", type=Path, required=True, help="folder for the Noto data, adapter and report")
    parser.add_argument("--base", default="reference", help="run to adapt (default: the shipped reference)")
    parser.add_argument("--font", type=Path, default=NOTO_FONT)
    parser.add_argument("--train-images", type=int, default=400, help="Noto images the LoRA trains on")
    parser.add_argument("--probe-fit", type=int, default=500, help="concepts whose real images fit the probe")
    parser.add_argument("--probe-test", type=int, default=300, help="held-out concepts that test the probe")
    parser.add_argument("--prompts", type=int, default=100, help="held-out captions generated per scale")
    parser.add_argument("--seen-prompts", type=int, default=50, help="LoRA-training captions generated per scale")
    parser.add_argument("--scales", default="0.5,1", help="LoRA scales to measure besides 0 (the base)")
    parser.add_argument("--steps", type=int, default=1000, help="LoRA training steps at --batch-size")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--text-encoder", action="store_true", help="also adapt the CLIP text tower")
    parser.add_argument("--sample-steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0, help="chooses the splits; image k samples with seed + k")
    parser.add_argument("--rows", type=int, default=8, help="prompts shown in the sheet")
    return parser.parse_args()


def split_concepts(records: list[dict], rendered: dict[str, torch.Tensor], sizes: dict[str, int],
                   seed: int) -> dict[str, list[dict]]:
    """Base emoji that Noto can draw, shuffled once and cut into consecutive, disjoint splits."""
    usable = [r for r in records if r["hexcode"] in rendered and not SKIN_TONES & set(r["hexcode"].split("-"))]
    order = torch.randperm(len(usable), generator=torch.Generator().manual_seed(seed)).tolist()
    if sum(sizes.values()) > len(order):
        raise SystemExit(f"the splits ask for {sum(sizes.values())} concepts; only {len(order)} are usable")
    splits, start = {}, 0
    for name, size in sizes.items():
        splits[name] = [usable[i] for i in order[start:start + size]]
        start += size
    return splits


def render_all(records: list[dict], font_path: Path, image_size: int) -> dict[str, torch.Tensor]:
    font = load_noto_font(font_path)
    rendered = {}
    for record in tqdm(records, desc="render noto", unit="img", mininterval=10):
        image = render_emoji(font, record["hexcode"], image_size)
        if image is not None:
            rendered[record["hexcode"]] = as_tensor(image)  # (3, S, S) uint8
    return rendered


def twemoji_images(twemoji: Path, records: list[dict]) -> torch.Tensor:
    """(N, 3, S, S) uint8 of the real Twemoji images (already composited on white by `marble data emoji`)."""
    return torch.stack([as_tensor(Image.open(twemoji / record["file_name"])) for record in records])


def train_adapter(args, base: Path, lora_records: list[dict]) -> dict:
    adapter = args.work / "adapter"
    if (adapter / "lora.json").is_file():
        print(f"reusing the trained adapter in {adapter}")
        return json.loads((adapter / "summary.json").read_text())
    data = args.work / "noto-train"
    if not (data / "metadata.jsonl").is_file():
        write_noto_dataset(lora_records, data, load_noto_font(args.font))
    defaults = LoraConfig()
    train = dataclasses.replace(defaults.train, steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr)
    config = LoraConfig(rank=args.rank, alpha=float(args.rank), text_encoder=args.text_encoder, train=train)
    return train_lora(base, data, adapter, config)


def noto_fractions(pipeline: MarblePipeline, probe, extractor, prompts: list[str], scales: list[float],
                   options: SamplingOptions, seed: int) -> tuple[dict[str, float], dict[float, torch.Tensor]]:
    """Fraction of generated images the probe calls Noto, per LoRA scale; and the images."""
    fractions, images = {}, {}
    for scale in scales:
        rescale_adapters(pipeline.unet, pipeline.text_encoder, [scale])
        batches = [generate_batch(pipeline, prompts[i:i + 25], image_seeds(seed + i, len(prompts[i:i + 25])), options)
                   for i in tqdm(range(0, len(prompts), 25), desc=f"sample, scale {scale:g}", unit="batch")]
        images[scale] = torch.cat(batches)
        fractions[f"{scale:g}"] = round(float(probe.is_second(extractor.features(images[scale])).float().mean()), 3)
    return fractions, images


def write_sheet(path: Path, images: dict[float, torch.Tensor], noto: torch.Tensor, twemoji: torch.Tensor, rows: int) -> None:
    columns = [*(images[s][:rows] for s in sorted(images)), noto[:rows], twemoji[:rows]]
    tiles = torch.stack(columns, dim=1).flatten(0, 1)  # (rows * columns, 3, S, S), row-major
    save_png(grid(upscale(tiles, 2), columns=len(columns)), path)


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    base = resolve_model(args.base)
    pipeline = MarblePipeline.load(base)
    records = read_records(args.twemoji)
    rendered = render_all(records, args.font, pipeline.image_size)
    sizes = {"lora": args.train_images, "probe_fit": args.probe_fit, "probe_test": args.probe_test}
    splits = split_concepts(records, rendered, sizes, args.seed)

    extractor = ClipImageExtractor(args.eval_clip)
    real = {name: {"noto": torch.stack([rendered[r["hexcode"]] for r in splits[name]]),
                   "twemoji": twemoji_images(args.twemoji, splits[name])} for name in ("probe_fit", "probe_test")}
    features = {name: {style: extractor.features(images) for style, images in styles.items()}
                for name, styles in real.items()}
    probe = fit_style_probe(features["probe_fit"]["twemoji"], features["probe_fit"]["noto"], ("twemoji", "noto"))
    probe_accuracy = probe.accuracy(features["probe_test"]["twemoji"], features["probe_test"]["noto"])
    print(f"probe: {probe_accuracy:.1%} correct on real images of {args.probe_test} held-out concepts, each style")

    training = train_adapter(args, base, splits["lora"])
    apply_adapters(pipeline.unet, pipeline.text_encoder, [(load_adapter(args.work / "adapter"), 1.0)])
    options = SamplingOptions(steps=args.sample_steps, guidance=args.guidance)
    scales = [0.0, *(float(s) for s in args.scales.split(",") if s.strip())]
    unseen = [r["text"] for r in splits["probe_test"][:args.prompts]]
    seen = [r["text"] for r in splits["lora"][:args.seen_prompts]]
    unseen_fractions, unseen_images = noto_fractions(pipeline, probe, extractor, unseen, scales, options, args.seed)
    seen_fractions, _ = noto_fractions(pipeline, probe, extractor, seen, scales, options, args.seed)

    args.work.mkdir(parents=True, exist_ok=True)
    write_sheet(args.work / "sheet.png", unseen_images, real["probe_test"]["noto"], real["probe_test"]["twemoji"], args.rows)
    report = {
        "base": str(base), "eval_clip": str(args.eval_clip), "lora_training_images": len(splits["lora"]),
        "lora": {k: training.get(k) for k in ("steps", "seconds", "final", "adapter_parameters", "adapter_bytes",
                                               "unet_parameters", "unet_bytes", "unet_to_adapter_parameters")},
        "probe": {"fit_concepts": args.probe_fit, "test_concepts": args.probe_test,
                  "accuracy_on_real": round(probe_accuracy, 3)},
        "noto_fraction_unseen_prompts": unseen_fractions, "noto_fraction_seen_prompts": seen_fractions,
        "prompts": {"unseen": len(unseen), "seen": len(seen)}, "sampling": options.describe(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    (args.work / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps({k: report[k] for k in ("lora", "probe", "noto_fraction_unseen_prompts",
                                             "noto_fraction_seen_prompts")}, indent=1))
    print(f"wrote {args.work / 'report.json'} and {args.work / 'sheet.png'} "
          f"(rows: unseen prompts; columns: scales {', '.join(f'{s:g}' for s in scales)}, real Noto, real Twemoji)")


if __name__ == "__main__":
    main()
