"""`marble …` subcommands: parse → config → call. Errors the user can fix print one line, exit 2."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from pathlib import Path

from marble import lora_cli
from marble.errors import MarbleError

DEFAULT_MODEL = "reference"  # the emoji model shipped inside the package


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="marble", description="Text-to-image diffusion, trained from scratch on your images.")
    commands = parser.add_subparsers(dest="command", required=True)
    _data_parser(commands)
    _train_parser(commands)
    _generate_parser(commands)
    _export_parser(commands)
    _serve_parser(commands)
    _eval_parser(commands)
    lora_cli.add_lora_parser(commands)
    _condition_parser(commands)
    return parser


def _data_parser(commands) -> None:
    data = commands.add_parser("data", help="build a training dataset").add_subparsers(dest="dataset", required=True)
    emoji = data.add_parser("emoji", help="emoji images (Twemoji and more styles) with emojibase captions")
    emoji.add_argument("--out", type=Path, default=Path("data/emoji"), help="dataset folder to write (default: data/emoji)")
    emoji.add_argument("--langs", default="en,zh,zh-hant,ja", help="caption languages, comma-separated")
    emoji.add_argument("--styles", default="twitter",
                       help="twitter, noto, fluent3d, openmoji, comma-separated (default twitter); "
                            "with several, captions name the style: 'fox, 3d style'")
    emoji.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    emoji.add_argument("--holdout", default="", metavar="CONCEPT:STYLE,...",
                       help="pairs kept out of training, e.g. 1f98a:fluent3d or fox:noto (written to --holdout-out)")
    emoji.add_argument("--holdout-out", type=Path, help="folder for the held-out pairs (default: OUT-holdout)")
    emoji.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")
    emoji.set_defaults(handler=run_data_emoji)
    _data_shard_parser(data)


def _data_shard_parser(data) -> None:
    shard = data.add_parser("shard", help="write an image folder as WebDataset tar shards, to train on as a stream")
    shard.add_argument("src", type=Path, help="image folder (metadata.jsonl, metadata.csv or .txt captions)")
    shard.add_argument("dst", type=Path, help="shard folder to write: shard-000000.tar, ... and index.json")
    shard.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default 1000)")
    shard.add_argument("--image-size", type=int, help="store images squared at this size (default: as they are)")
    shard.add_argument("--overwrite", action="store_true", help="replace an existing shard folder")
    shard.set_defaults(handler=run_data_shard)


def _train_parser(commands) -> None:
    train = commands.add_parser("train", help="train a stage (or all of them) on an image folder")
    train.add_argument("stage", choices=["text", "autoencoder", "unet", "all", "eval-clip", "lora", "controlnet"],
                       help="eval-clip: the separate CLIP that `marble eval` grades with (writes --out, not a run); "
                            "lora: adapters for the run --base (writes --out); "
                            "controlnet: a ControlNet on top of --base RUN (writes --out, default RUN/controlnet/C)")
    train.add_argument("--data", type=Path, required=True,
                       help="image folder (metadata.jsonl or .txt captions), or shards from `marble data shard`")
    train.add_argument("--run", type=Path, help="run folder: models, checkpoints, logs (resumes if present)")
    train.add_argument("--out", type=Path, help="eval-clip, lora, controlnet: folder to write the model or adapter to")
    train.add_argument("--condition", metavar="canny|mask|scribble", help="controlnet only: what it is conditioned on")
    train.add_argument("--seed", type=int, help="eval-clip, lora, controlnet: training seed (eval-clip default 1)")
    train.add_argument("--preset", default="emoji",
                       help="configuration preset: emoji (default), emoji4 (four styles, 128 px) or tiny")
    train.add_argument("--text-encoder", choices=["clip", "minilm"], nargs="?", const=True,
                       help="train a CLIP (default) or use frozen MiniLM; lora: no value, also adapt the text tower")
    train.add_argument("--steps", type=int, help="override training steps of the stage(s)")
    train.add_argument("--batch-size", type=int, help="override batch size of the stage(s)")
    train.add_argument("--lr", type=float, help="override learning rate of the stage(s)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                       help="change any config field, e.g. unet.prediction_type=v_prediction (repeatable)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    lora_cli.add_train_options(train)
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
    lora_cli.add_generate_options(generate)
    _edit_arguments(generate)
    generate.add_argument("--control", type=Path, metavar="IMAGE", help="condition map to follow (`marble condition`)")
    generate.add_argument("--controlnet", type=Path, metavar="DIR", help="trained ControlNet (default: the run's one)")
    generate.add_argument("--control-scale", type=float, help="strength of the ControlNet's residuals (default 1)")
    _inference_arguments(generate)
    generate.set_defaults(handler=run_generate)


def _edit_arguments(generate) -> None:
    """img2img and inpainting (docs/editing.md)."""
    generate.add_argument("--init-image", type=Path, metavar="IMG",
                          help="img2img (SDEdit): start from this PNG/JPEG, noised to --strength, instead of pure noise")
    generate.add_argument("--strength", type=float,
                          help="0-1: how far the source is noised before denoising (default 0.8; 1.0 with --mask)")
    generate.add_argument("--mask", type=Path, metavar="MASK",
                          help="inpainting: white repaints, black (or transparent) keeps; same size as --init-image")
    generate.add_argument("--paste-unmasked", action="store_true",
                          help="copy the source's pixels outside the mask into the result (exact; may show a seam)")
    generate.add_argument("--resize", action="store_true",
                          help="pad and scale --init-image/--mask/--control to the model's size (otherwise another size "
                               "is an error)")


def _condition_parser(commands) -> None:
    condition = commands.add_parser("condition", help="write the condition map a ControlNet sees for an image")
    condition.add_argument("kind", metavar="canny|mask|scribble")
    condition.add_argument("image", type=Path)
    condition.add_argument("--size", type=int, help="first fit the image to SIZE pixels as training data is")
    condition.add_argument("--out", type=Path, help="PNG to write (default outputs/IMAGE-KIND.png)")
    condition.set_defaults(handler=run_condition)


def _inference_arguments(parser) -> None:
    from marble.inference.options import BACKENDS, FASTEST, PRECISIONS

    parser.add_argument("--precision", choices=PRECISIONS, default=FASTEST.precision,
                        help=f"U-Net arithmetic; auto: bf16 where it is faster (torch: large batches; openvino: CPUs "
                             f"with bf16 units); int8 (openvino): quantized once on the run's calibration prompts "
                             f"(default {FASTEST.precision})")
    parser.add_argument("--backend", choices=BACKENDS, default=FASTEST.backend,
                        help=f"torch; onnx: ONNX Runtime on a graph exported into RUN/cache; openvino: that graph "
                             f"compiled by OpenVINO (default {FASTEST.backend})")
    parser.add_argument("--compile", action="store_true", default=FASTEST.compile,
                        help="torch.compile the U-Net (the first image pays the compile time)")
    parser.add_argument("--channels-last", action="store_true", default=FASTEST.channels_last,
                        help="channels_last memory format for the U-Net")


def inference_options(args):
    from marble.inference.options import InferenceOptions

    options = InferenceOptions(args.precision, args.channels_last, args.compile, args.backend)
    options.validate()
    return options


def _export_parser(commands) -> None:
    export = commands.add_parser("export", help="write a trained run in another tool's format")
    export.add_argument("model", help="run folder, or 'reference'")
    export.add_argument("--format", choices=["diffusers", "marble", "single-file"], default="diffusers",
                        help="diffusers: StableDiffusionPipeline folder; marble: the run without training state; "
                             "single-file: OUT.safetensors in the original Stable Diffusion layout (+ OUT-config/)")
    export.add_argument("--half", action="store_true", help="marble format: store weights as float16")
    export.add_argument("out", type=Path, help="folder to write (single-file: the .safetensors file)")
    export.set_defaults(handler=run_export)


def _serve_parser(commands) -> None:
    serve = commands.add_parser("serve", help="HTTP API and a web page with live previews")
    serve.add_argument("--model", action="append", dest="models", metavar="RUN",
                       help="run folder, or 'reference' (default); repeat to serve several models")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; any other needs --token)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--queue-depth", type=int, default=4, help="jobs waiting per model before 429 (default 4)")
    serve.add_argument("--job-timeout", type=float, default=300.0,
                       help="cancel a job nobody has watched for this many seconds (default 300)")
    serve.add_argument("--token", default=os.environ.get("MARBLE_TOKEN"),
                       help="require `Authorization: Bearer TOKEN` on every API call (default: $MARBLE_TOKEN)")
    serve.set_defaults(handler=run_serve)


def _eval_parser(commands) -> None:
    evaluate = commands.add_parser("eval", help="measure a run: FD beside its floor, KID, CLIP score, autoencoder")
    evaluate.add_argument("run", help="run folder, or 'reference'")
    evaluate.add_argument("--data", type=Path, required=True, help="captioned image folder: real images and prompts")
    evaluate.add_argument("--eval-clip", type=Path, required=True,
                          help="evaluation CLIP folder from `marble train eval-clip` (not the run's own encoder)")
    evaluate.add_argument("--num-images", type=int, default=1000, help="N generated images (default 1000)")
    evaluate.add_argument("--extractors", default="effnet,clip", help="FD feature extractors: effnet, clip, inception")
    evaluate.add_argument("--inception-weights", type=Path, help="pytorch-fid Inception weights file, for inception")
    evaluate.add_argument("--steps", type=int, default=30, help="sampling steps (default 30)")
    evaluate.add_argument("--sampler", default="dpm++", help="sampler of the main numbers (default dpm++)")
    evaluate.add_argument("--guidance", type=float, default=5.0, help="classifier-free guidance scale (default 5)")
    evaluate.add_argument("--negative-prompt", default="")
    evaluate.add_argument("--seed", type=int, default=0, help="chooses the real images; image k samples with seed+k")
    evaluate.add_argument("--batch-size", type=int, default=32, help="prompts per sampling batch")
    evaluate.add_argument("--lang-num-images", type=int, default=200, help="images per caption language (at most N)")
    evaluate.add_argument("--curves", action="store_true",
                          help="also FD vs steps for ddpm/ddim/dpm++/euler and FD vs CLIP score across guidance")
    evaluate.add_argument("--curve-num-images", type=int, default=200, help="images per curve point (at most N)")
    evaluate.add_argument("--out", type=Path, help="report folder (default RUN/eval)")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bars")
    _inference_arguments(evaluate)  # eval measures the path `marble generate` takes unless told otherwise
    evaluate.set_defaults(handler=run_eval)


# --- handlers --------------------------------------------------------------------------------


def run_data_emoji(args) -> None:
    from marble.data.emoji import build_emoji_dataset, summary_lines

    langs = tuple(code.strip() for code in args.langs.split(",") if code.strip())
    summary = build_emoji_dataset(args.out, langs=langs, overwrite=args.overwrite, styles=args.styles,
                                  size=args.size, holdout=args.holdout, holdout_dir=args.holdout_out)
    print("\n".join(summary_lines(summary)))


def run_data_shard(args) -> None:
    from marble.data.shards import write_shards

    index = write_shards(args.src, args.dst, args.shard_size, args.image_size, overwrite=args.overwrite)
    print(f"wrote {index.samples} samples in {len(index.shards)} shards to {args.dst} "
          f"({index.skip_report().summary()}; {index.seconds:.1f} s)")


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
    overrides = train_overrides(args)
    stages = ["text", "autoencoder", "unet"] if args.stage == "all" else [args.stage]
    for stage in stages:
        config = dataclasses.replace(config, **{stage: replace_train(getattr(config, stage), **overrides)})
    return config, stages


def train_overrides(args) -> dict:
    """TrainConfig fields changed by --steps, --batch-size, --lr; each must be positive."""
    options = {"steps": ("--steps", args.steps), "batch_size": ("--batch-size", args.batch_size),
               "learning_rate": ("--lr", args.lr)}  # TrainConfig field -> (option the user typed, value)
    overrides = {name: value for name, (_, value) in options.items() if value is not None}
    for name, value in overrides.items():
        if not (math.isfinite(value) and value > 0):  # `nan <= 0` is False: test the good case
            raise MarbleError(f"{options[name][0]} must be positive, got {value}")
    return overrides


def run_train(args) -> None:
    from marble.training.run import train_stages

    if args.stage == "controlnet":
        from marble.control.commands import run_train_controlnet

        run_train_controlnet(args, resolve_model(args.base) if args.base else None, train_overrides(args))
        return
    if args.condition:
        raise MarbleError("--condition is an option of `marble train controlnet`")
    if args.stage == "lora":
        lora_cli.run_train_lora(args)
        return
    lora_cli.reject_lora_options(args)
    if args.stage == "eval-clip":
        run_train_eval_clip(args)
        return
    if args.run is None:
        raise MarbleError(f"`marble train {args.stage}` needs --run RUN (the run folder to train into)")
    if args.out is not None or args.seed is not None:
        raise MarbleError("--out and --seed are options of `marble train eval-clip`, `lora` and `controlnet`; "
                          "use --set text.train.seed=N here")
    config, stages = configured_run(args)
    train_stages(stages, config, args.data, args.run, progress=not args.no_progress)


def resolve_model(model: str) -> Path:
    if model == DEFAULT_MODEL:
        from marble.reference import reference_model_dir

        return reference_model_dir()
    return Path(model)


def run_generate(args) -> None:
    from marble.control.commands import ControlOptions
    from marble.editing import make_edit
    from marble.generate_files import generate_to_folder
    from marble.pipeline import GenerationRequest, MarblePipeline

    if args.resize and args.init_image is None and args.control is None:
        raise MarbleError("--resize applies to --init-image, --mask and --control; give one of them")
    edit = make_edit(args.init_image, args.strength, args.mask, args.paste_unmasked)
    request = GenerationRequest(args.prompt, args.negative_prompt, args.steps, args.guidance, args.sampler,
                                args.seed, args.num_images, args.preview, edit)
    request.validate()  # before loading any weights: bad arguments fail fast
    adapters = lora_cli.read_lora_options(args.lora)
    control = ControlOptions.from_args(args)
    pipeline = MarblePipeline.load(resolve_model(args.model), inference_options(args))
    lora_cli.apply_lora_options(pipeline, adapters)  # before the ControlNet copies any U-Net layer
    if control is not None:
        pipeline = control.apply(pipeline, resolve_model(args.model))
    if args.resize and edit is not None:
        request = dataclasses.replace(request, edit=edit.resized(pipeline.image_size))
    if request.edit is not None:
        request.edit.check_size(pipeline.image_size)  # before any output file or progress bar
    for path in generate_to_folder(pipeline, request, args.out, args.zoom):
        print(f"wrote {path}")


def run_export(args) -> None:
    if args.format == "marble":
        from marble.export.run_folder import export_run_folder

        export_run_folder(resolve_model(args.model), args.out, half=args.half)
        print(f"wrote the run's inference files to {args.out}")
        return
    if args.format == "single-file":
        from marble.export.single_file import export_single_file

        weights, config = export_single_file(resolve_model(args.model), args.out)
        print(f"wrote {weights} and {config}/; load with StableDiffusionPipeline.from_single_file("
              f"{str(weights)!r}, config={str(config)!r}, local_files_only=True)")
        return
    from marble.export.diffusers_folder import export_diffusers

    export_diffusers(resolve_model(args.model), args.out)
    print(f"wrote a diffusers StableDiffusionPipeline folder to {args.out}")


def run_serve(args) -> None:
    from marble.server.serve import model_names, serve
    from marble.server.settings import ServerSettings

    if args.queue_depth < 1 or not (math.isfinite(args.job_timeout) and args.job_timeout > 0):
        raise MarbleError("--queue-depth and --job-timeout must be positive")
    runs = args.models or [DEFAULT_MODEL]
    models = model_names([(run if run == DEFAULT_MODEL else Path(run).name, resolve_model(run)) for run in runs])
    settings = ServerSettings(queue_depth=args.queue_depth, job_timeout=args.job_timeout, token=args.token or None)
    serve(models, args.host, args.port, settings)


def run_condition(args) -> None:
    from marble.control.commands import run_condition as write_condition

    write_condition(args)


def run_train_eval_clip(args) -> None:
    from marble.evaluation.eval_clip import DEFAULT_SEED, eval_clip_config, train_eval_clip

    if args.out is None:
        raise MarbleError("`marble train eval-clip` needs --out DIR (the folder to write the evaluation CLIP to)")
    if args.overrides or args.text_encoder or args.run:
        raise MarbleError("`marble train eval-clip` takes --data, --out, --preset, --seed, --steps, --batch-size, --lr; "
                          "not --run, --set or --text-encoder")
    config = eval_clip_config(args.preset, DEFAULT_SEED if args.seed is None else args.seed, steps=args.steps,
                              batch_size=args.batch_size, learning_rate=args.lr)
    summary = train_eval_clip(args.data, args.out, config, progress=not args.no_progress)
    print(f"eval-clip: {summary['images']} images, {summary['steps']} steps, seed {summary['seed']}; wrote {args.out}")


def run_eval(args) -> None:
    from marble.evaluation.run_eval import EvalSettings, evaluate
    from marble.evaluation.sampling import SamplingOptions

    run_dir = resolve_model(args.run)
    out = args.out or (Path("outputs") / "eval-reference" if args.run == DEFAULT_MODEL else run_dir / "eval")
    extractors = tuple(name.strip() for name in args.extractors.split(",") if name.strip())
    settings = EvalSettings(
        run_dir, args.data, args.eval_clip, out, args.num_images, extractors, args.inception_weights,
        SamplingOptions(args.steps, args.sampler, args.guidance, args.negative_prompt), args.seed, args.batch_size,
        args.lang_num_images, args.curves, args.curve_num_images, inference=inference_options(args),
    )
    evaluate(settings, progress=not args.no_progress)


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
