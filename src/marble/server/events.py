"""PNG encoding and the server-sent-events stream of one job (progress, previews, the end)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
from typing import AsyncIterator, Callable

import torch
from PIL import PngImagePlugin

from marble.generate_files import settings_text
from marble.images import grid, to_pil, upscale
from marble.pipeline import GenerationRequest
from marble.server.jobs import Job, JobSnapshot, JobState


def png_bytes(image: torch.Tensor, request: GenerationRequest | None = None, extra: dict[str, str] | None = None) -> bytes:
    """(3, H, W) uint8 → PNG; the request's settings go into a text chunk so the image can be reproduced."""
    info = PngImagePlugin.PngInfo()
    text = {**(settings_text(request) if request else {}), **(extra or {})}
    for key, value in text.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def preview_data_url(images: torch.Tensor, min_width: int) -> str:
    """(n, 3, H, W) uint8 → one grid, enlarged to about `min_width` so 16 px images are visible, as a data: URL."""
    columns = math.ceil(math.sqrt(len(images)))
    tiles = upscale(images, max(1, min_width // (columns * images.shape[-1])))
    picture = grid(tiles, columns) if len(images) > 1 else tiles[0]
    return "data:image/png;base64," + base64.b64encode(png_bytes(picture)).decode("ascii")


def sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def image_links(job: Job, image_ids: tuple[str, ...]) -> list[dict]:
    return [{"id": image_id, "url": f"/api/images/{image_id}", "index": k, "seed": job.request.seed}
            for k, image_id in enumerate(image_ids)]


def changes(job: Job, now: JobSnapshot, before: JobSnapshot | None, position: int | None, position_before) -> list[str]:
    """The SSE messages that bring a client that saw `before` (at queue `position_before`) up to `now`."""
    messages = []
    if before is None or (now.state, position) != (before.state, position_before):
        messages.append(sse("state", {"state": now.state.value, "position": position}))
    if now.step and (before is None or now.step != before.step):
        messages.append(sse("progress", {"step": now.step, "total": now.total}))
    if now.preview and (before is None or now.preview_step != before.preview_step):
        messages.append(sse("preview", {"step": now.preview_step, "total": now.total, "image": now.preview}))
    if now.state == JobState.DONE:
        messages.append(sse("done", {"images": image_links(job, now.image_ids), "seconds": now.seconds}))
    elif now.state.finished:
        messages.append(sse("error", {"state": now.state.value, "message": now.error}))
    return messages


async def job_events(job: Job, position: Callable[[Job], int | None], keepalive_seconds: float) -> AsyncIterator[str]:
    """Stream a job until it ends; an open stream counts as someone waiting (see Job.abandoned)."""
    wake = job.listen()
    seen, seen_position = None, None
    try:
        while True:
            wake.clear()  # before reading: a change after this read sets it again, none is lost
            now, where = job.snapshot(), position(job)
            for message in changes(job, now, seen, where, seen_position):
                yield message
            seen, seen_position = now, where
            if now.state.finished:
                return
            try:
                await asyncio.wait_for(wake.wait(), keepalive_seconds)
            except asyncio.TimeoutError:
                yield ": keepalive\n\n"
    finally:
        job.unlisten(wake)
