"""`marble generate` output: one PNG per image (settings in its text chunk), a grid, preview strip + GIF."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from tqdm.auto import tqdm

from marble.images import grid, save_gif, save_png, upscale
from marble.pipeline import GenerationRequest, MarblePipeline, Preview


def slug(prompt: str, limit: int = 40) -> str:
    """A file-name-safe stem from a prompt; keeps CJK letters, drops path characters."""
    cleaned = re.sub(r"[^\w]+", "-", prompt.strip().lower(), flags=re.UNICODE).strip("-_")
    return cleaned[:limit] or "image"


def settings_text(request: GenerationRequest) -> dict[str, str]:
    return {"marble": json.dumps(request.settings(), ensure_ascii=False)}


def generate_to_folder(pipeline: MarblePipeline, request: GenerationRequest, out_dir: Path, zoom: int = 4) -> list[Path]:
    out_dir = Path(out_dir)
    previews: list[Preview] = []
    with tqdm(desc="sample", unit="step") as bar:
        def on_progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        result = pipeline.generate(request, on_preview=previews.append, on_progress=on_progress)
    stem = f"{slug(request.prompt)}-seed{request.seed}"
    metadata = settings_text(request)
    written = [save_png(image, out_dir / f"{stem}-{k}.png", metadata) for k, image in enumerate(result.images)]
    written.append(save_png(grid(upscale(result.images, zoom)), out_dir / f"{stem}-grid.png", metadata))
    if previews:
        frames = [grid(upscale(p.images, zoom)) for p in previews]
        written.append(save_png(grid(torch.stack(frames), columns=len(frames)), out_dir / f"{stem}-preview-strip.png"))
        written.append(save_gif(frames, out_dir / f"{stem}-preview.gif"))
    return written
