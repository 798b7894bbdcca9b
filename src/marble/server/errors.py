"""Error answers: 4xx with a message naming the field; never a traceback or an echo of the input."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from marble.errors import MarbleError
from marble.server.schemas import JobSubmission

log = logging.getLogger("marble.server")


def field_error(loc: list, message: str, kind: str = "value_error") -> dict:
    # The input is left out on purpose: it may be NaN (not JSON) or megabytes long.
    return {"loc": loc, "msg": message, "type": kind}


async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    details = [field_error([str(part) for part in item["loc"]], _named(item), item["type"]) for item in error.errors()]
    return JSONResponse({"detail": details}, status_code=422)


def _named(item: dict) -> str:
    """Pydantic's message with the field's name in front, e.g. 'guidance: Input should be a finite number'."""
    fields = [str(part) for part in item["loc"] if part not in ("body", "query", "path", "header")]
    return f"{'.'.join(fields)}: {item['msg']}" if fields else item["msg"]


async def marble_error(request: Request, error: MarbleError) -> JSONResponse:
    """GenerationRequest.validate() says 'field: message'; a known field makes it a 422 like pydantic's."""
    message = str(error)
    name = message.split(":", 1)[0]
    if name in JobSubmission.model_fields:
        return JSONResponse({"detail": [field_error(["body", name], message)]}, status_code=422)
    return JSONResponse({"detail": message}, status_code=400)


async def unexpected(request: Request, error: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "internal server error; see the server log"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(MarbleError, marble_error)
    app.add_exception_handler(Exception, unexpected)
