"""Server test helpers: a stand-in pipeline whose speed the test controls, and app clients."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import torch
import uvicorn
from fastapi.testclient import TestClient

from marble.pipeline import GenerationResult, MarblePipeline, Preview
from marble.server.app import create_app
from marble.server.settings import ServerSettings


class FakePipeline:
    """MarblePipeline's generate() contract in 8 px grey images; `hold` pauses it before each step."""

    image_size = 8

    def __init__(self, step_seconds: float = 0.0, hold: threading.Event | None = None, fail: Exception | None = None):
        self.step_seconds = step_seconds
        self.hold = hold
        self.fail = fail
        self.started = threading.Event()
        self.calls = 0

    def generate(self, request, on_preview=None, on_progress=None):
        request.validate()
        self.calls += 1
        self.started.set()
        if self.fail is not None:
            raise self.fail
        n = request.num_images
        for step in range(1, request.steps + 1):
            if self.hold is not None:
                self.hold.wait(10)
            time.sleep(self.step_seconds)
            if on_progress:
                on_progress(step, request.steps)
            if on_preview and request.preview_every and step % request.preview_every == 0:
                on_preview(Preview(step, request.steps, torch.full((n, 3, 8, 8), step * 10 % 256, dtype=torch.uint8)))
        images = torch.full((n, 3, 8, 8), request.seed % 256, dtype=torch.uint8)
        return GenerationResult(images, request, 0.01)


@pytest.fixture
def make_client():
    """make_client(pipelines, **settings) → a started TestClient; all are closed after the test."""
    opened = []

    def make(pipelines=None, **settings) -> TestClient:
        client = TestClient(create_app(pipelines or {"fake": FakePipeline()}, ServerSettings(**settings)))
        opened.append(client.__enter__())
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


def _read_events(text: str) -> list[tuple[str, dict]]:
    """An SSE body → [(event name, data)], comments dropped."""
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


def _wait_for_state(client: TestClient, job_id: str, states: set[str], seconds: float = 10.0) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = client.get(f"/api/jobs/{job_id}").json()
        if status["state"] in states:
            return status
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} still {status['state']} after {seconds} s")


@pytest.fixture
def live_server():
    """live_server(app) → base URL of a real uvicorn serving `app` on a free loopback port (stopped after)."""
    running = []

    def start(app) -> str:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
        thread.start()
        running.append((server, thread, listener))
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return f"http://127.0.0.1:{listener.getsockname()[1]}"

    yield start
    for server, thread, listener in running:
        server.should_exit = True
        thread.join(10)
        listener.close()


# Helpers as fixtures: test modules cannot import this conftest under --import-mode=importlib.
@pytest.fixture
def fake_pipeline():
    return FakePipeline


@pytest.fixture
def read_events():
    return _read_events


@pytest.fixture
def wait_for_state():
    return _wait_for_state


@pytest.fixture(scope="module")
def tiny_pipeline(tiny_run) -> MarblePipeline:
    return MarblePipeline.load(tiny_run)


@pytest.fixture
def client(make_client, tiny_pipeline):
    return make_client({"tiny": tiny_pipeline})
