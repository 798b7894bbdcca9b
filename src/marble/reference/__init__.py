"""The reference emoji model shipped inside the package (trained by `marble train all --preset emoji`)."""

from __future__ import annotations

from pathlib import Path

from marble.errors import MarbleError


def reference_model_dir() -> Path:
    directory = Path(__file__).parent / "emoji"
    if not (directory / "unet" / "model").is_dir():
        raise MarbleError(f"the reference model is not in this installation ({directory}); "
                          "train one with `marble train all --data DIR --run RUN` and pass --model RUN")
    return directory
