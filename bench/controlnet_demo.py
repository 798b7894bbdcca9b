"""ControlNet demonstration: a canny ControlNet on the reference model, and how faithfully it draws edges.

    python bench/controlnet_demo.py --data data/emoji --minutes 15      # the recorded run
    python bench/controlnet_demo.py --data data/emoji --steps 20 \\
        --out /tmp/cn-smoke --doc /tmp/cn-smoke/controlnet.md --images /tmp/cn-smoke   # smoke run

1. Trains `marble train controlnet --condition canny` on the base model (default: the shipped
   reference) for --steps, or for as many steps as fit --minutes of training at the step time
   measured here first (caching latents and conditions comes on top).
2. For held-out images (never trained on by the base model or the ControlNet) takes the canny map
   of the real image as the condition and its English caption as the prompt, and generates with
   and without the ControlNet from the same seeds.
3. Edge F1 (marble.evaluation.edge_f1) between the condition and the Canny edges of each output,
   pooled over the images, at radius 1 and 2 px; the autoencoder's reconstruction of the real
   image is the ceiling the decoder allows.
4. Writes the numbers between the markers of docs/controlnet.md, a grid (source | condition |
   without | with) and a sheet of the three conditions to docs/images/.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from marble.autoencoder.model import images_to_model, model_to_images
from marble.cli import resolve_model
from marble.config import RunConfig, load_json
from marble.control.conditions import CONDITIONS, condition_images, edges_of
from marble.control.config import ControlNetConfig, controlnet_config
from marble.control.files import load_controlnet
from marble.control.generation import controlled_pipeline
from marble.control.model import build_controlnet, control_residuals
from marble.evaluation.edge_f1 import edge_f1_scores, pooled
from marble.images import grid, save_png, upscale
from marble.layout import RunLayout
from marble.pipeline import MarblePipeline
from marble.training.controlnet_stage import train_controlnet
from marble.training.data import load_training_data
from marble.training.loop import make_optimizer

BEGIN, END = "<!-- controlnet-demo:begin -->", "<!-- controlnet-demo:end -->"
RADII = (1.0, 2.0)
GRID_ROWS = 8


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the base model's dataset (data/emoji)")
    parser.add_argument("--base", default="reference", help="run folder, or 'reference'")
    parser.add_argument("--out", type=Path, default=Path("runs/controlnet-demo"), help="ControlNet folder (resumes)")
    parser.add_argument("--minutes", type=float, default=15.0, help="training-loop budget when --steps is not given")
    parser.add_argument("--steps", type=int, help="train exactly this many steps instead of a time budget")
    parser.add_argument("--num-images", type=int, default=64, help="held-out edge maps to generate for")
    parser.add_argument("--sampling-steps", type=int, default=30)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=16, help="prompts per sampling batch")
    parser.add_argument("--doc", type=Path, default=Path("docs/controlnet.md"))
    parser.add_argument("--images", type=Path, default=Path("docs/images"), help="folder for the two PNGs")
    return parser.parse_args()


def seconds_per_step(base: Path, config: ControlNetConfig, repeats: int = 3) -> float:
    """Median time of a full training step (ControlNet + frozen U-Net, forward, backward, AdamW) on random inputs."""
    unet = UNet2DConditionModel.from_pretrained(RunLayout(base).unet).requires_grad_(False)
    base_config = load_json(RunConfig, RunLayout(base).run_config)
    image_size, context_length = base_config.data.image_size, base_config.text.max_length
    latent = unet.config.sample_size
    controlnet = build_controlnet(unet, config, image_size // latent)
    optimizer = make_optimizer(controlnet, config.train, config.train.learning_rate)
    batch = config.train.batch_size
    x = torch.randn(batch, unet.config.in_channels, latent, latent)
    t = torch.randint(0, 1000, (batch,))
    context = torch.randn(batch, context_length, unet.config.cross_attention_dim)
    condition = (torch.rand(batch, 3, image_size, image_size) > 0.9).float()
    times = []
    for _ in range(repeats + 1):  # the first step warms up
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.train.mixed_precision == "bf16"):
            residuals = control_residuals(controlnet, x, t, context, condition)
            loss = unet(x, t, encoder_hidden_states=context, **residuals).sample.float().square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return sorted(times[1:])[repeats // 2]


def spread(count: int, available: int) -> list[int]:
    """`count` indices spread evenly over `available` items (held-out files are sorted by code point)."""
    count = min(count, available)
    return sorted({round(k * (available - 1) / max(1, count - 1)) for k in range(count)})


@torch.no_grad()
def reconstruct(base: Path, images: torch.Tensor) -> torch.Tensor:
    """The autoencoder's posterior-mean reconstruction: the most faithful image the decoder can give."""
    vae = AutoencoderKL.from_pretrained(RunLayout(base).autoencoder).eval()
    return model_to_images(vae.decode(vae.encode(images_to_model(images)).latent_dist.mean).sample)


def generate(pipeline: MarblePipeline, prompts: list[str], conditions: torch.Tensor, controlnet,
             args) -> torch.Tensor:
    """(n, 3, H, W) uint8: image k from prompt k with seed k, steered by condition k when a ControlNet is given."""
    chunks = []
    for start in range(0, len(prompts), args.batch):
        part = slice(start, start + args.batch)
        steered = pipeline if controlnet is None else controlled_pipeline(pipeline, controlnet, conditions[part])
        chunks.append(steered.generate_batch(prompts[part], list(range(start, start + len(prompts[part]))),
                                             steps=args.sampling_steps, guidance=args.guidance))
    return torch.cat(chunks)


def f1_table(conditions: torch.Tensor, outputs: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """Pooled precision / recall / F1 and mean per-image F1 of each output's edges against the conditions."""
    target = conditions[:, 0] > 127  # (n, H, W)
    table = {}
    for name, images in outputs.items():
        predicted = edges_of(images)
        for radius in RADII:
            scores = edge_f1_scores(predicted, target, radius)
            total = pooled(scores)
            table[f"{name}@{radius:g}"] = {"precision": total.precision, "recall": total.recall, "f1": total.f1,
                                           "mean_image_f1": sum(s.f1 for s in scores) / len(scores)}
    return table


def results_markdown(table: dict, summary: dict, config: ControlNetConfig, how_many_steps: str, seconds: dict,
                     prompts: list[str], args) -> str:
    labels = {"without": "without ControlNet", "with": "with ControlNet",
              "autoencoder": "autoencoder reconstruction (ceiling)"}
    rows = ["| images | radius | precision | recall | **F1** (pooled) | mean per-image F1 |",
            "| --- | --- | --- | --- | --- | --- |"]
    for key, value in table.items():
        name, radius = key.split("@")
        rows.append(f"| {labels[name]} | {radius} px | {value['precision']:.3f} | {value['recall']:.3f} | "
                    f"**{value['f1']:.3f}** | {value['mean_image_f1']:.3f} |")
    loss = summary["final"].get("controlnet/loss", float("nan"))
    return "\n".join([
        f"Recorded by `python bench/controlnet_demo.py {' '.join(sys.argv[1:])}` on {platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads.",
        "",
        f"- Training: {summary['steps']} steps × batch {config.train.batch_size} ({how_many_steps}), "
        f"{summary['seconds'] / 60:.1f} min in the training loop (this invocation); ControlNet "
        f"{summary['parameters'] / 1e6:.2f} M parameters beside the U-Net's {summary['unet_parameters'] / 1e6:.2f} M; "
        f"last logged loss {loss:.4f} (one batch: noisy).",
        f"- Evaluation: {len(prompts)} held-out images spread over the held-out set; prompt = the English caption, "
        f"seed k for image k, dpm++ {args.sampling_steps} steps, guidance {args.guidance:g}, control scale 1; "
        f"sampling took {seconds['without']:.0f} s without and {seconds['with']:.0f} s with the ControlNet.",
        "",
        *rows,
        "",
        "![source | condition | without | with](images/controlnet-demo.png)",
        "",
        "Columns: the real held-out image, its canny condition, the base model without the ControlNet, "
        "with it (same prompt and seed). Rows: " + "; ".join(f"\"{p}\"" for p in prompts[:GRID_ROWS]) + ".",
    ])


def write_between_markers(doc: Path, text: str) -> None:
    body = doc.read_text() if doc.exists() else f"# ControlNet demonstration\n\n{BEGIN}\n{END}\n"
    if BEGIN not in body or END not in body:
        raise SystemExit(f"{doc} lacks the markers {BEGIN} ... {END}")
    head, rest = body.split(BEGIN, 1)
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(f"{head}{BEGIN}\n{text}\n{END}{rest.split(END, 1)[1]}")


def training_steps(args, base: Path) -> tuple[int, str]:
    """--steps, or as many steps as fit --minutes at the step time measured now (under today's load)."""
    if args.steps is not None:
        return args.steps, "--steps"
    if (args.out / "controlnet.json").is_file():  # resuming: keep the step count the run was started with
        return load_json(ControlNetConfig, args.out / "controlnet.json").train.steps, f"resumed in {args.out}"
    per_step = seconds_per_step(base, controlnet_config("emoji", "canny"))
    steps = max(1, math.floor(args.minutes * 60 / per_step))
    return steps, f"{args.minutes:g}-minute budget at {per_step:.2f} s/step measured before training"


def main() -> None:
    args = parse_args()
    base = resolve_model(args.base)
    steps, how_many_steps = training_steps(args, base)
    print(f"training {steps} steps ({how_many_steps})")
    config = controlnet_config("emoji", "canny", steps=steps, warmup_steps=min(50, max(1, steps // 10)))
    summary = train_controlnet(base, args.data, args.out, config)

    holdout = load_training_data(args.data, load_json(RunConfig, RunLayout(base).run_config).data).holdout
    picked = holdout.subset(spread(args.num_images, len(holdout)))
    conditions = condition_images("canny", picked.images)
    prompts = [captions.get("en", captions["text"]) for captions in picked.captions]
    pipeline = MarblePipeline.load(base)
    controlnet, _ = load_controlnet(args.out)
    outputs, seconds = {}, {}
    for name, net in (("without", None), ("with", controlnet)):
        started = time.perf_counter()
        outputs[name] = generate(pipeline, prompts, conditions, net, args)
        seconds[name] = time.perf_counter() - started
    outputs["autoencoder"] = reconstruct(base, picked.images)
    table = f1_table(conditions, outputs)
    (args.out / "demo.json").write_text(json.dumps({"f1": table, "prompts": prompts, "files": picked.file_names,
                                                    "steps": summary["steps"]}, indent=2, ensure_ascii=False))

    rows = min(GRID_ROWS, len(prompts))
    columns = [picked.images, conditions, outputs["without"], outputs["with"]]
    tiles = torch.stack([column[k] for k in range(rows) for column in columns])
    save_png(grid(upscale(tiles, 2), columns=4), args.images / "controlnet-demo.png")
    sheet = torch.cat([picked.images[:rows], *[condition_images(c, picked.images[:rows]) for c in CONDITIONS]])
    save_png(grid(upscale(sheet, 2), columns=rows), args.images / "controlnet-conditions.png")
    write_between_markers(args.doc, results_markdown(table, summary, config, how_many_steps, seconds, prompts, args))
    for key, value in table.items():
        print(f"{key:>16}: P {value['precision']:.3f}  R {value['recall']:.3f}  F1 {value['f1']:.3f}")
    print(f"wrote {args.doc}, {args.images / 'controlnet-demo.png'}, {args.images / 'controlnet-conditions.png'}")


if __name__ == "__main__":
    main()
