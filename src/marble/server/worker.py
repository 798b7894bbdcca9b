"""One worker thread per model: a bounded queue of jobs, run one at a time so the event loop stays free."""

from __future__ import annotations

import logging
import math
import threading
from collections import deque

from marble.errors import MarbleError
from marble.server.events import png_bytes, preview_data_url
from marble.server.jobs import Job, JobRegistry, JobState
from marble.server.settings import ServerSettings

log = logging.getLogger("marble.server")


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"the queue is full; retry in {retry_after} s")
        self.retry_after = retry_after


class _Cancelled(Exception):
    """Raised inside the sampling loop's progress callback to stop sampling early."""


class ModelWorker:
    def __init__(self, name: str, pipeline, registry: JobRegistry, settings: ServerSettings):
        self.name = name
        self.pipeline = pipeline  # anything with MarblePipeline's generate() and image_size
        self.registry = registry
        self.settings = settings
        self._pending: deque[Job] = deque()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._running: Job | None = None
        self._mean_seconds = 1.0  # running mean of job durations, for Retry-After

    def submit(self, job: Job) -> None:
        with self._wake:
            if len(self._pending) >= self.settings.queue_depth:
                raise QueueFull(max(1, math.ceil(self._mean_seconds * (len(self._pending) + 1))))
            self._pending.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=f"marble-worker-{self.name}", daemon=True)
                self._thread.start()
            self._wake.notify()

    def position(self, job: Job) -> int | None:
        with self._wake:
            return self._pending.index(job) if job in self._pending else None

    def queued(self) -> int:
        with self._wake:
            return len(self._pending)

    def withdraw(self, job: Job) -> bool:
        """Take a job that has not started out of the queue; False if it already started."""
        with self._wake:
            if job not in self._pending:
                return False
            self._pending.remove(job)
        self._notify_queue()
        return True

    def close(self, wait: float = 5.0) -> None:
        with self._wake:
            self._closing = True
            waiting, self._pending = list(self._pending), deque()
            self._wake.notify_all()
        if self._running is not None:
            self._running.request_cancel("the server is shutting down")
        for job in waiting:
            self._finish(job, JobState.CANCELLED, error="the server is shutting down")
        if self._thread is not None:
            self._thread.join(wait)

    def _serve(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._closing:
                    self._wake.wait()
                if self._closing:
                    return
                job = self._running = self._pending.popleft()
            self._notify_queue()
            self._run(job)
            self._running = None

    def _notify_queue(self) -> None:
        """Queue positions changed: wake the streams of every waiting job."""
        with self._wake:
            waiting = list(self._pending)
        for job in waiting:
            job.notify()

    def _run(self, job: Job) -> None:
        if job.abandoned(self.settings.job_timeout):
            job.request_cancel(f"nobody watched the job for {self.settings.job_timeout:g} s")
        if job.cancel_reason:
            return self._finish(job, JobState.CANCELLED, error=job.cancel_reason)
        job.update(state=JobState.RUNNING, total=job.request.steps)
        try:
            result = self.pipeline.generate(job.request, on_preview=lambda p: self._on_preview(job, p),
                                            on_progress=lambda done, total: self._on_progress(job, done, total))
        except _Cancelled:
            return self._finish(job, JobState.CANCELLED, error=job.cancel_reason)
        except MarbleError as error:
            return self._finish(job, JobState.FAILED, error=str(error))
        except Exception:  # never kill the worker; the client sees a message, the log the traceback
            log.exception("job %s failed", job.id)
            return self._finish(job, JobState.FAILED, error="internal error while generating; see the server log")
        self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * result.seconds
        metadata = {"marble-model": self.name}
        pngs = [png_bytes(image, job.request, {**metadata, "marble-index": str(k)}) for k, image in enumerate(result.images)]
        self._finish(job, JobState.DONE, image_ids=self.registry.store_pngs(job, pngs), seconds=result.seconds)

    def _on_progress(self, job: Job, done: int, total: int) -> None:
        if job.abandoned(self.settings.job_timeout):
            job.request_cancel(f"nobody watched the job for {self.settings.job_timeout:g} s")
        if job.cancel_reason:
            raise _Cancelled
        job.update(step=done, total=total)

    def _on_preview(self, job: Job, preview) -> None:
        job.update(preview=preview_data_url(preview.images, self.settings.preview_pixels), preview_step=preview.step)

    def _finish(self, job: Job, state: JobState, **changes) -> None:
        job.update(state=state, **changes)
        self.registry.finished(job)
