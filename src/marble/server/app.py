"""The FastAPI app: a thin adapter from HTTP to MarblePipeline via one queue and worker per model."""

from __future__ import annotations

import hmac
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Mapping, Optional

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Path
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles

from marble.diffusion.samplers import SAMPLERS
from marble.errors import MarbleError
from marble.server.errors import install_error_handlers
from marble.server.events import image_links, job_events
from marble.server.guard import RequestGuard
from marble.server.jobs import Job, JobRegistry, JobState
from marble.server.schemas import JobCreated, JobStatus, JobSubmission, Message, ModelInfo
from marble.server.settings import ServerSettings
from marble.server.worker import ModelWorker, QueueFull

STATIC = files("marble.server") / "static"
PAGE_POLICY = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
               "connect-src 'self'; frame-ancestors 'none'")
ERRORS = {404: {"model": Message}, 401: {"model": Message}}


def hex_id():
    """A path parameter that is a server-made uuid4 hex id, never a file path (a fresh Path() per route)."""
    return Path(pattern="^[0-9a-f]{32}$", description="a uuid4 hex id made by the server")


def create_app(pipelines: Mapping[str, object], settings: ServerSettings = ServerSettings()) -> FastAPI:
    """`pipelines`: model name → a loaded MarblePipeline (anything with generate() and image_size)."""
    if not pipelines:
        raise MarbleError("serve: give at least one model")
    registry = JobRegistry(settings.keep_jobs)
    workers = {name: ModelWorker(name, pipeline, registry, settings) for name, pipeline in pipelines.items()}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        for worker in workers.values():
            worker.close()

    app = FastAPI(title="Marble", version="0.1.0", docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Text-to-image generation: submit a job, stream its previews, fetch its PNGs.")
    app.add_middleware(RequestGuard, settings=settings)
    install_error_handlers(app)
    app.include_router(_api(workers, registry, settings), prefix="/api")
    _page_routes(app)
    return app


def _bearer(settings: ServerSettings):
    scheme = HTTPBearer(auto_error=False, description="the token given to `marble serve --token`")

    def require_token(credentials: Optional[HTTPAuthorizationCredentials] = Depends(scheme)) -> None:
        given = credentials.credentials if credentials else ""
        if not hmac.compare_digest(given.encode(), settings.token.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    return require_token


def _api(workers: dict[str, ModelWorker], registry: JobRegistry, settings: ServerSettings) -> APIRouter:
    api = APIRouter(dependencies=[Depends(_bearer(settings))] if settings.token else [], responses=ERRORS)

    def known_job(job_id: str = hex_id()) -> Job:
        job = registry.get(job_id)
        if job is None:
            raise HTTPException(404, "no such job (finished jobs are forgotten after a while)")
        job.touch()
        return job

    @api.get("/models", response_model=list[ModelInfo])
    def list_models():
        return [ModelInfo(name=name, image_size=worker.pipeline.image_size, samplers=list(SAMPLERS),
                          queued=worker.queued()) for name, worker in workers.items()]

    @api.post("/jobs", status_code=202, response_model=JobCreated,
              responses={403: {"model": Message, "description": "sent from a page of another origin"},
                         413: {"model": Message, "description": "body over the size limit"},
                         422: {"description": "a field is invalid; its name leads the message"},
                         429: {"model": Message, "description": "queue full; see Retry-After"}})
    def submit_job(submission: JobSubmission):
        model = submission.model or next(iter(workers))
        if model not in workers:
            raise MarbleError(f"model: unknown {model!r}; choose one of {', '.join(workers)}")
        request = submission.generation_request()
        if request.edit is not None:
            request.edit.check_size(workers[model].pipeline.image_size)  # a 422 now, not a failed job later
        job = Job(request, model)
        try:
            workers[model].submit(job)
        except QueueFull as full:
            return JSONResponse({"detail": str(full)}, 429, headers={"Retry-After": str(full.retry_after)})
        registry.add(job)
        base = f"/api/jobs/{job.id}"
        return JobCreated(id=job.id, token=job.token, state=job.state.value, seed=job.request.seed,
                          status_url=base, events_url=f"{base}/events", cancel_url=f"{base}/cancel")

    @api.get("/jobs/{job_id}", response_model=JobStatus)
    def job_status(job: Job = Depends(known_job)):
        now = job.snapshot()
        return JobStatus(id=job.id, model=job.model, state=now.state.value, position=workers[job.model].position(job),
                         step=now.step, total=now.total, request=job.request.settings(),
                         images=image_links(job, now.image_ids), error=now.error, seconds=now.seconds)

    @api.get("/jobs/{job_id}/events", response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "events: state, progress, preview (data URL), done, error"}})
    def job_event_stream(job: Job = Depends(known_job)):
        stream = job_events(job, workers[job.model].position, settings.keepalive_seconds)
        return StreamingResponse(stream, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @api.post("/jobs/{job_id}/cancel", response_model=Message, responses={403: {"model": Message}})
    def cancel_job(job: Job = Depends(known_job), x_job_token: Optional[str] = Header(default=None)):
        if not hmac.compare_digest((x_job_token or "").encode(), job.token.encode()):
            raise HTTPException(403, "X-Job-Token is not this job's token")
        if job.snapshot().state.finished:
            return Message(detail=f"the job had already ended: {job.state.value}")
        job.request_cancel("cancelled by its submitter")
        if workers[job.model].withdraw(job):
            job.update(state=JobState.CANCELLED, error=job.cancel_reason)
            registry.finished(job)
        return Message(detail="cancelling")

    @api.get("/images/{image_id}", response_class=Response,
             responses={200: {"content": {"image/png": {}}, "description": "the PNG, settings in its text chunk"}})
    def image(image_id: str = hex_id()):
        png = registry.png(image_id)
        if png is None:
            raise HTTPException(404, "no such image (finished jobs are forgotten after a while)")
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    return api


def _page_routes(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.mount("/docs-assets", StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-assets")

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(str(STATIC / "index.html"), headers={"Content-Security-Policy": PAGE_POLICY})

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Marble API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon.png")
