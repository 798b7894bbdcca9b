"""The LoRA parts of `marble …`: `train lora` options, `generate --lora PATH[:SCALE]`, `lora merge`."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from marble.errors import MarbleError

LORA_HELP = "LoRA adapter folder, optionally with a scale (default 1), e.g. adapters/noto:0.8; repeat to combine"


def add_train_options(train: argparse.ArgumentParser) -> None:
    group = train.add_argument_group("train lora")
    group.add_argument("--base", help="lora, controlnet: the trained run to adapt or steer, or 'reference' (writes --out, not a run)")
    group.add_argument("--rank", type=int, help="lora: rank r of every adapter matrix (default 8)")
    group.add_argument("--alpha", type=float, help="lora: the update is scaled by alpha / rank (default: alpha = rank)")


def add_generate_options(generate: argparse.ArgumentParser) -> None:
    generate.add_argument("--lora", action="append", default=[], metavar="PATH[:SCALE]", help=LORA_HELP)


def add_lora_parser(commands) -> None:
    lora = commands.add_parser("lora", help="LoRA adapters: bake one into a run")
    actions = lora.add_subparsers(dest="lora_command", required=True)
    merge = actions.add_parser("merge", help="write a run folder with one adapter merged into its weights")
    merge.add_argument("--base", required=True, help="run folder the adapter was trained on, or 'reference'")
    merge.add_argument("--lora", required=True, metavar="PATH[:SCALE]", help="adapter folder, optionally with a scale")
    merge.add_argument("--out", type=Path, required=True, help="run folder to write")
    merge.add_argument("--half", action="store_true", help="store the merged weights as float16")
    merge.set_defaults(handler=run_lora_merge)


def reject_lora_options(args) -> None:
    """Stages other than lora: its options are a mistake, and --text-encoder needs a value there."""
    given = [option for option, value in (("--base", args.base), ("--rank", args.rank), ("--alpha", args.alpha))
             if value is not None]
    if given:
        raise MarbleError(f"{', '.join(given)}: options of `marble train lora`, not of `marble train {args.stage}`")
    if args.text_encoder is True:
        raise MarbleError("--text-encoder needs a value here: clip or minilm")


def lora_config(args):
    from marble.cli import train_overrides
    from marble.training.lora_stage import LoraConfig

    defaults = LoraConfig()
    rank = defaults.rank if args.rank is None else args.rank
    alpha = float(rank) if args.alpha is None else args.alpha
    seed = {} if args.seed is None else {"seed": args.seed}
    train = dataclasses.replace(defaults.train, **train_overrides(args), **seed)
    config = LoraConfig(rank=rank, alpha=alpha, text_encoder=args.text_encoder is True, train=train)
    config.validate()
    return config


def run_train_lora(args) -> None:
    from marble.cli import resolve_model
    from marble.training.lora_stage import train_lora

    if args.base is None or args.out is None:
        raise MarbleError("`marble train lora` needs --base RUN (the model to adapt) and --out DIR (the adapter to write)")
    if args.run is not None or args.overrides or args.text_encoder not in (None, True):
        raise MarbleError("`marble train lora` takes --base, --data, --out, --rank, --alpha, --text-encoder (no value), "
                          "--steps, --batch-size, --lr, --seed; not --run or --set")
    summary = train_lora(resolve_model(args.base), args.data, args.out, lora_config(args), progress=not args.no_progress)
    print(f"lora: {summary['steps']} steps, final loss {summary['final'].get('lora/loss')}; adapter "
          f"{summary['adapter_bytes'] / 1e3:.0f} kB ({summary['adapter_parameters']:,} parameters) beside the U-Net's "
          f"{summary['unet_bytes'] / 1e6:.1f} MB ({summary['unet_parameters']:,}): "
          f"1/{summary['unet_to_adapter_parameters']:g} of its parameters; wrote {args.out}")


def read_lora_options(texts: list[str]):
    """Every --lora option, read and checked before any model is loaded."""
    from marble.finetune.adapter import read_lora_option

    return [read_lora_option(text) for text in texts]


def apply_lora_options(pipeline, adapters) -> None:
    from marble.finetune.apply import apply_adapters

    if adapters:
        apply_adapters(pipeline.unet, pipeline.text_encoder, adapters)


def run_lora_merge(args) -> None:
    from marble.cli import resolve_model
    from marble.export.merged_run import merge_adapter_into_run

    (adapter, scale), = read_lora_options([args.lora])
    merge_adapter_into_run(resolve_model(args.base), adapter, scale, args.out, half=args.half)
    print(f"wrote {args.out}: {args.base} with {adapter.path} merged in at scale {scale:g}")
