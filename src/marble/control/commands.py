"""The ControlNet side of the CLI: `train controlnet`, `condition`, and `generate --control`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from marble.control.conditions import check_condition, condition_image
from marble.control.files import (
    default_controlnet_dir,
    find_controlnet,
    fit_control_image,
    fit_source_image,
    load_controlnet,
    read_rgb,
)
from marble.control.generation import check_control_scale, controlled_pipeline
from marble.errors import MarbleError
from marble.images import save_png
from marble.pipeline import MarblePipeline


def run_train_controlnet(args, base_dir: Path | None, train_changes: dict) -> None:
    """`marble train controlnet --base RUN --data DIR --condition C [--out DIR]`; resumes if OUT exists."""
    from marble.control.config import controlnet_config
    from marble.training.controlnet_stage import train_controlnet

    if base_dir is None or args.condition is None:
        raise MarbleError("`marble train controlnet` needs --base RUN (the trained model) and --condition "
                          "canny|mask|scribble")
    if args.run or args.text_encoder:
        raise MarbleError("`marble train controlnet` takes --base, --data, --condition, --out, --preset, --steps, "
                          "--batch-size, --lr, --seed, --set; not --run or --text-encoder")
    check_condition(args.condition)
    if args.out is None and args.base == "reference":
        raise MarbleError("pass --out DIR: a ControlNet for the shipped reference model is not written into "
                          "the package")
    try:
        config = controlnet_config(args.preset, args.condition, args.overrides, seed=args.seed, **train_changes)
    except ValueError as error:
        raise MarbleError(str(error)) from None
    out = args.out or default_controlnet_dir(base_dir, args.condition)
    train_controlnet(base_dir, args.data, out, config, progress=not args.no_progress)


def run_condition(args) -> None:
    """`marble condition KIND IMG [--size N] [--out OUT.png]`: the condition map a ControlNet would see."""
    check_condition(args.kind)
    image = read_rgb(args.image)
    if args.size is not None:
        image = fit_source_image(image, args.size)
    out = args.out or Path("outputs") / f"{Path(args.image).stem}-{args.kind}.png"
    print(f"wrote {save_png(condition_image(args.kind, image), out)}")


@dataclass(frozen=True)
class ControlOptions:
    """`generate --control IMAGE [--controlnet DIR] [--control-scale S] [--resize]`, checked before any load."""

    image: Path
    controlnet: Path | None
    scale: float
    resize: bool

    @classmethod
    def from_args(cls, args) -> "ControlOptions | None":
        if args.control is None:
            # --resize is not listed: it also resizes --init-image and --mask
            options = {"--controlnet": args.controlnet is not None, "--control-scale": args.control_scale is not None}
            given = [name for name, present in options.items() if present]
            if given:
                raise MarbleError(f"{', '.join(given)}: only used with --control IMAGE")
            return None
        scale = 1.0 if args.control_scale is None else args.control_scale
        check_control_scale(scale)
        if not Path(args.control).is_file():
            raise MarbleError(f"control image {args.control} does not exist")
        return cls(Path(args.control), args.controlnet, scale, args.resize)

    def apply(self, pipeline: MarblePipeline, run_dir: Path) -> MarblePipeline:
        """`pipeline` steered by the ControlNet (--controlnet, or the one inside the run) and the control image."""
        controlnet, _ = load_controlnet(self.controlnet or find_controlnet(run_dir))
        image = fit_control_image(read_rgb(self.image), pipeline.image_size, self.resize, f"control image {self.image}")
        return controlled_pipeline(pipeline, controlnet, image[None], self.scale)
