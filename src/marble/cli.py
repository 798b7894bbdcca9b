"""`marble …` subcommands: parse → config → call. Errors the user can fix print one line, exit 2."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from pathlib import Path

from marble.errors import MarbleError

DEFAULT_MODEL = "reference"  # the emoji model shipped inside the package


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="marble", description="Text-to-image diffusion, trained from scratch on your images.")
    commands = parser.add_subparsers(dest="command", required=True)
    _data_parser(commands)
    _train_parser(commands)
    _generate_parser(commands)
    _export_parser(commands)
    return parser


def _data_parser(commands) -> None:
    data = commands.add_parser("data", help="build a training dataset").add_subparsers(dest="dataset", required=True)
    emoji = data.add_parser("emoji", help="Twemoji images with emojibase captions, fetched with npm")
    emoji.add_argument("--out", type=Path, default=Path("data/emoji"), help="dataset folder to write (default: data/emoji)")
    emoji.add_argument("--langs", default="en,zh,zh-hant,ja", help="caption languages, comma-separated")
    emoji.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")
    emoji.set_defaults(handler=run_data_emoji)


def _train_parser(commands) -> None:
    train = commands.add_parser("train", help="train a stage (or all of them) on an image folder")
    train.add_argument("stage", choices=["text", "autoencoder", "unet", "all"])
    train.add_argument("--data", type=Path, required=True, help="image folder (metadata.jsonl or .txt captions)")
    train.add_argument("--run", type=Path, required=True, help="run folder: models, checkpoints, logs (resumes if present)")
    train.add_argument("--preset", default="emoji", help="configuration preset: emoji (default) or tiny")
    train.add_argument("--text-encoder", choices=["clip", "minilm"], help="train a CLIP (default) or use frozen MiniLM")
    train.add_argument("--steps", type=int, help="override training steps of the stage(s)")
    train.add_argument("--batch-size", type=int, help="override batch size of the stage(s)")
    train.add_argument("--lr", type=float, help="override learning rate of the stage(s)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                       help="change any config field, e.g. unet.prediction_type=v_prediction (repeatable)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    train.set_defaults(handler=run_train)


def _generate_parser(commands) -> None:
    generate = commands.add_parser("generate", help="generate images from a prompt")
    generate.add_argument("prompt")
    generate.add_argument("--model", default=DEFAULT_MODEL, help="run folder, or 'reference' for the shipped emoji model")
    generate.add_argument("--negative-prompt", default="")
    generate.add_argument("--steps", type=int, default=30)
    generate.add_argument("--guidance", type=float, default=5.0, help="classifier-free guidance scale (1: off)")
    generate.add_argument("--sampler", default="dpm++", help="ddpm, ddim, dpm++, dpm++-sde, euler, euler-a, heun, unipc, pndm")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--num-images", type=int, default=4)
    generate.add_argument("--out", type=Path, default=Path("outputs"))
    generate.add_argument("--preview", type=int, default=0, metavar="K",
                          help="also write the predicted clean image every K steps as a strip and a GIF")
    generate.add_argument("--zoom", type=int, default=4, help="enlarge grids by this factor (pixels stay crisp)")
    generate.set_defaults(handler=run_generate)


def _export_parser(commands) -> None:
    export = commands.add_parser("export", help="write a trained run in another tool's format")
    export.add_argument("model", help="run folder, or 'reference'")
    export.add_argument("--format", choices=["diffusers", "marble"], default="diffusers",
                        help="diffusers: StableDiffusionPipeline folder; marble: the run without training state")
    export.add_argument("--half", action="store_true", help="marble format: store weights as float16")
    export.add_argument("out", type=Path, help="folder to write")
    export.set_defaults(handler=run_export)


# --- handlers --------------------------------------------------------------------------------


def run_data_emoji(args) -> None:
    from marble.data.emoji import build_emoji_dataset

    langs = tuple(code.strip() for code in args.langs.split(",") if code.strip())
    summary = build_emoji_dataset(args.out, langs=langs, overwrite=args.overwrite)
    print(f"wrote {summary.count} images with captions in {', '.join(summary.langs)} to {summary.out_dir} "
          f"({summary.seconds:.1f} s)")


def configured_run(args):
    from marble.config import apply_override, preset, replace_train

    try:
        config = preset(args.preset)
        for assignment in args.overrides:
            config = apply_override(config, assignment)
    except ValueError as error:
        raise MarbleError(str(error)) from None
    if args.text_encoder:
        config = dataclasses.replace(config, text=dataclasses.replace(config.text, kind=args.text_encoder))
    options = {"steps": ("--steps", args.steps), "batch_size": ("--batch-size", args.batch_size),
               "learning_rate": ("--lr", args.lr)}  # TrainConfig field -> (option the user typed, value)
    overrides = {name: value for name, (_, value) in options.items() if value is not None}
    for name, value in overrides.items():
        if not (math.isfinite(value) and value > 0):  # `nan <= 0` is False: test the good case
            raise MarbleError(f"{options[name][0]} must be positive, got {value}")
    stages = ["text", "autoencoder", "unet"] if args.stage == "all" else [args.stage]
    for stage in stages:
        config = dataclasses.replace(config, **{stage: replace_train(getattr(config, stage), **overrides)})
    return config, stages


def run_train(args) -> None:
    from marble.training.run import train_stages

    config, stages = configured_run(args)
    train_stages(stages, config, args.data, args.run, progress=not args.no_progress)


def resolve_model(model: str) -> Path:
    if model == DEFAULT_MODEL:
        from marble.reference import reference_model_dir

        return reference_model_dir()
    return Path(model)


def run_generate(args) -> None:
    from marble.generate_files import generate_to_folder
    from marble.pipeline import GenerationRequest, MarblePipeline

    request = GenerationRequest(args.prompt, args.negative_prompt, args.steps, args.guidance, args.sampler,
                                args.seed, args.num_images, args.preview)
    request.validate()  # before loading any weights: bad arguments fail fast
    pipeline = MarblePipeline.load(resolve_model(args.model))
    for path in generate_to_folder(pipeline, request, args.out, args.zoom):
        print(f"wrote {path}")


def run_export(args) -> None:
    if args.format == "marble":
        from marble.export.run_folder import export_run_folder

        export_run_folder(resolve_model(args.model), args.out, half=args.half)
        print(f"wrote the run's inference files to {args.out}")
        return
    from marble.export.diffusers_folder import export_diffusers

    export_diffusers(resolve_model(args.model), args.out)
    print(f"wrote a diffusers StableDiffusionPipeline folder to {args.out}")


def main(argv: list[str] | None = None) -> int:
    # Two busy threads fighting over one core make a step 5-15x slower (DESIGN.md): spin less.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # Marble never downloads models: everything is trained here or shipped in a package.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # per-file "Loading weights" bars: noise here
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except MarbleError as error:
        print(f"marble: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("marble: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
