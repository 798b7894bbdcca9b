"""`marble serve`: load the models, check the address is safe to bind, run uvicorn."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from marble.errors import MarbleError
from marble.server.settings import LOOPBACK_NAMES, ServerSettings, is_loopback


def check_binding(host: str, token: str | None) -> None:
    if not is_loopback(host) and not token:
        raise MarbleError(f"--host {host} makes the server reachable from other machines: also pass --token SECRET "
                          "(or set MARBLE_TOKEN) so every API call needs `Authorization: Bearer SECRET`")


def model_names(paths: list[tuple[str, Path]]) -> dict[str, Path]:
    names: dict[str, Path] = {}
    for name, path in paths:
        if name in names:
            raise MarbleError(f"--model: two models are named {name!r}; rename one of the folders")
        names[name] = path
    return names


def serve(models: dict[str, Path], host: str, port: int, settings: ServerSettings) -> None:
    import uvicorn

    from marble.inference.options import FASTEST
    from marble.pipeline import MarblePipeline
    from marble.server.app import create_app

    check_binding(host, settings.token)
    if settings.token is None and is_loopback(host):  # a page on another site must not reach us by DNS rebinding
        settings = dataclasses.replace(settings, allowed_hosts=LOOPBACK_NAMES)
    pipelines = {name: MarblePipeline.load(path, FASTEST) for name, path in models.items()}
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    shown = f"[{host}]" if ":" in host else host
    print(f"marble: serving {', '.join(pipelines)} on http://{shown}:{port}/ (API docs at /docs)", flush=True)
    uvicorn.run(create_app(pipelines, settings), host=host, port=port, log_level="info")
