"""ASGI middleware run before any route: Host allow-list, foreign-Origin writes, body size."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

from marble.server.settings import ServerSettings

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def host_name(host_header: str) -> str:
    """'127.0.0.1:8000' → '127.0.0.1'; '[::1]:8000' → '::1'."""
    return (urlsplit(f"//{host_header}").hostname or "") if host_header else ""


class RequestGuard:
    def __init__(self, app, settings: ServerSettings):
        self.app = app
        self.settings = settings

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        refusal = self._refusal(scope["method"], headers)
        if refusal is not None:
            return await refusal(scope, receive, send)
        if scope["method"] in SAFE_METHODS:
            return await self.app(scope, receive, send)
        body = await self._read_body(receive)
        if body is None:
            return await _message(413, f"request body over {self.settings.max_body_bytes} bytes")(scope, receive, send)
        return await self.app(scope, _replay(body, receive), send)

    def _refusal(self, method: str, headers: Headers) -> JSONResponse | None:
        host = headers.get("host", "")
        if self.settings.allowed_hosts is not None and host_name(host) not in self.settings.allowed_hosts:
            return _message(400, "unexpected Host header; open the page through the address the server printed")
        origin = headers.get("origin")
        if method not in SAFE_METHODS and origin is not None and not self._same_or_allowed(origin, host):
            return _message(403, f"requests that change state are not accepted from the page at {origin}")
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.settings.max_body_bytes):
            return _message(413, f"request body over {self.settings.max_body_bytes} bytes")
        return None

    def _same_or_allowed(self, origin: str, host: str) -> bool:
        return urlsplit(origin).netloc == host or origin in self.settings.allowed_origins

    async def _read_body(self, receive) -> bytes | None:
        """The whole body, or None once it passes the limit (chunked bodies carry no Content-Length)."""
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.settings.max_body_bytes:
                return None
            more = message.get("more_body", False)
        return b"".join(chunks)


def _message(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _replay(body: bytes, receive):
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
