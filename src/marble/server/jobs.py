"""Jobs and the registry that keeps them: state shared between worker threads and the event loop."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import Enum

from marble.pipeline import GenerationRequest


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class JobSnapshot:
    """A consistent copy of a job's progress, read by one SSE stream."""

    state: JobState
    step: int
    total: int
    preview: str | None
    preview_step: int
    image_ids: tuple[str, ...]
    error: str | None
    seconds: float | None


@dataclass(eq=False)
class Job:
    request: GenerationRequest
    model: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    state: JobState = JobState.QUEUED
    step: int = 0
    total: int = 0
    preview: str | None = None  # data URL of the latest decoded preview
    preview_step: int = 0
    image_ids: tuple[str, ...] = ()
    error: str | None = None
    seconds: float | None = None
    last_seen: float = field(default_factory=time.monotonic)
    watchers: int = 0  # open event streams
    cancel_reason: str | None = None  # set once: the worker aborts at the next step
    _listeners: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def update(self, **changes) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(self, name, value)
        self.notify()

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            return JobSnapshot(self.state, self.step, self.total, self.preview, self.preview_step, self.image_ids,
                               self.error, self.seconds)

    def request_cancel(self, reason: str) -> None:
        with self._lock:
            self.cancel_reason = self.cancel_reason or reason
        self.notify()

    # --- who is waiting for this job ------------------------------------------------------------

    def listen(self) -> asyncio.Event:
        """An event set (from any thread) whenever the job changes; call from the event loop."""
        wake = asyncio.Event()
        with self._lock:
            self._listeners[wake] = asyncio.get_running_loop()
            self.watchers += 1
        return wake

    def unlisten(self, wake: asyncio.Event) -> None:
        with self._lock:
            self._listeners.pop(wake, None)
            self.watchers -= 1
            self.last_seen = time.monotonic()

    def notify(self) -> None:
        with self._lock:
            listeners = list(self._listeners.items())
        for wake, loop in listeners:
            if not loop.is_closed():
                loop.call_soon_threadsafe(wake.set)

    def touch(self) -> None:
        self.last_seen = time.monotonic()

    def abandoned(self, timeout: float) -> bool:
        """Nobody streams it and nobody has asked about it for `timeout` seconds."""
        return self.watchers == 0 and time.monotonic() - self.last_seen > timeout


class JobRegistry:
    """Every known job by id, and each finished PNG by its own id; the oldest finished jobs are forgotten."""

    def __init__(self, keep_finished: int):
        self.keep_finished = keep_finished
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._pngs: dict[str, tuple[str, bytes]] = {}  # image id -> (job id, PNG bytes)
        self._lock = threading.Lock()

    def add(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.id] = job
            self._forget_oldest()

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def store_pngs(self, job: Job, pngs: list[bytes]) -> tuple[str, ...]:
        ids = tuple(uuid.uuid4().hex for _ in pngs)
        with self._lock:
            self._pngs.update({image_id: (job.id, png) for image_id, png in zip(ids, pngs)})
        return ids

    def png(self, image_id: str) -> bytes | None:
        with self._lock:
            entry = self._pngs.get(image_id)
        return entry[1] if entry else None

    def finished(self, job: Job) -> None:
        """Called when a job ends: it becomes the newest finished job."""
        with self._lock:
            if job.id in self._jobs:
                self._jobs.move_to_end(job.id)
            self._forget_oldest()

    def counts(self) -> tuple[int, int]:
        """(jobs, images) held: the load check watches these stay bounded."""
        with self._lock:
            return len(self._jobs), len(self._pngs)

    def _forget_oldest(self) -> None:
        finished = [job for job in self._jobs.values() if job.state.finished]
        for job in finished[: max(0, len(finished) - self.keep_finished)]:
            del self._jobs[job.id]
            for image_id in job.image_ids:
                self._pngs.pop(image_id, None)
