"""Starting a stage from a model another run trained (`<stage>.init_from`) instead of a fresh init.

Continue a model whose checkpoints are gone, or fine-tune part of it (the autoencoder's decoder):
the weights are copied in, the optimizer and learning-rate schedule start fresh. A checkpoint of
the run itself still wins, so a killed run resumes where it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from marble.errors import MarbleError
from marble.layout import RunLayout


def source_run(init_from: str) -> RunLayout:
    """The run (or exported model) `init_from` names: "reference" is the shipped model."""
    if init_from == "reference":
        from marble.reference import reference_model_dir

        return RunLayout(reference_model_dir())
    return RunLayout(Path(init_from))


def model_folder(init_from: str, in_run: Callable[[RunLayout], Path]) -> Path:
    """The folder `init_from` names: "reference" (the shipped model), a run folder, or the model folder itself."""
    inside = in_run(source_run(init_from))
    return inside if init_from == "reference" or inside.is_dir() else Path(init_from)


def load_initial_weights(target: torch.nn.Module, model_class, folder: Path, new_parts: tuple[str, ...] = ()):
    """Copy the weights of the `model_class` saved in `folder` into `target` (same architecture, any
    float dtype); returns the saved model's config.

    `new_parts`: name prefixes of modules `target` may add to the saved architecture; they keep the
    init `target` gave them (which should make them a no-op, so training starts from the saved model).
    """
    if not (folder / "config.json").is_file():
        raise MarbleError(f"no model to start from in {folder} (config.json missing)")
    saved = model_class.from_pretrained(folder)
    ours, theirs = target.state_dict(), saved.state_dict()
    added = {k for k in ours.keys() - theirs.keys() if k.startswith(new_parts)} if new_parts else set()
    mismatched = sorted(k for k in (ours.keys() - added) | theirs.keys()
                        if k not in ours or k not in theirs or ours[k].shape != theirs[k].shape)
    if mismatched:
        raise MarbleError(f"the model in {folder} does not match this run's config ({len(mismatched)} tensors "
                          f"differ, e.g. {mismatched[0]}); use the settings it was trained with")
    target.load_state_dict({k: v.to(ours[k].dtype) for k, v in theirs.items()}, strict=not added)
    return saved.config
