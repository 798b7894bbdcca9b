"""What a running server may do: queue size, timeouts, limits, who may call it."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServerSettings:
    queue_depth: int = 4  # jobs waiting per model (the running one not counted); more are answered 429
    job_timeout: float = 300.0  # seconds a job may go unwatched (no stream open, no status read) before it is cancelled
    keep_jobs: int = 64  # finished jobs (and their PNGs) kept in memory; the oldest are forgotten first
    max_body_bytes: int = 262_144  # a job with a source image and a mask (base64 PNGs) fits
    preview_pixels: int = 128  # previews are enlarged (nearest neighbour) to at least this width
    token: str | None = None  # when set, every /api route needs `Authorization: Bearer <token>`
    allowed_hosts: tuple[str, ...] | None = None  # Host header names accepted; None: any (guards DNS rebinding)
    allowed_origins: tuple[str, ...] = ()  # foreign origins allowed to change state besides the server's own
    keepalive_seconds: float = 15.0  # SSE comment sent this often so proxies and the timeout see a live client


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
