"""Queue, cancellation, timeouts and failures, with a stand-in pipeline whose pace the test holds."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from marble.errors import MarbleError
from marble.server.app import create_app
from marble.server.jobs import Job, JobRegistry, JobState
from marble.server.settings import ServerSettings

JOB = {"prompt": "red circle", "steps": 4, "seed": 1, "preview_every": 0}


@pytest.fixture
def hold():
    gate = threading.Event()
    yield gate
    gate.set()  # never leave a worker waiting


def submit(client, **changes) -> dict:
    response = client.post("/api/jobs", json={**JOB, **changes})
    assert response.status_code == 202, response.text
    return response.json()


def cancel(client, job: dict, token: str | None):
    return client.post(job["cancel_url"], headers={"X-Job-Token": token} if token is not None else {})


def test_a_full_queue_answers_429_with_retry_after(make_client, fake_pipeline, hold, wait_for_state):
    pipeline = fake_pipeline(hold=hold)
    client = make_client({"fake": pipeline}, queue_depth=2)
    running = submit(client)
    assert pipeline.started.wait(5)
    waiting = [submit(client), submit(client)]
    assert [client.get(job["status_url"]).json()["position"] for job in waiting] == [0, 1]
    refused = client.post("/api/jobs", json=JOB)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "queue is full" in refused.json()["detail"]
    hold.set()
    for job in [running, *waiting]:
        assert wait_for_state(client, job["id"], {"done", "failed", "cancelled"})["state"] == "done"
    assert client.post("/api/jobs", json=JOB).status_code == 202  # room again


def test_only_the_jobs_own_token_cancels_it(make_client, fake_pipeline, hold, wait_for_state):
    pipeline = fake_pipeline(hold=hold)
    client = make_client({"fake": pipeline})
    mine, theirs = submit(client), submit(client)
    assert pipeline.started.wait(5)
    assert cancel(client, mine, theirs["token"]).status_code == 403
    assert cancel(client, mine, None).status_code == 403
    assert cancel(client, mine, "").status_code == 403
    assert client.get(mine["status_url"]).json()["state"] == "running"
    assert cancel(client, mine, mine["token"]).status_code == 200
    hold.set()
    ended = wait_for_state(client, mine["id"], {"done", "failed", "cancelled"})
    assert ended["state"] == "cancelled" and ended["error"] == "cancelled by its submitter" and ended["images"] == []
    assert wait_for_state(client, theirs["id"], {"done", "failed", "cancelled"})["state"] == "done"


def test_cancelling_a_queued_job_frees_its_place(make_client, fake_pipeline, hold, wait_for_state):
    pipeline = fake_pipeline(hold=hold)
    client = make_client({"fake": pipeline}, queue_depth=1)
    submit(client)
    assert pipeline.started.wait(5)
    queued = submit(client)
    assert client.post("/api/jobs", json=JOB).status_code == 429
    assert cancel(client, queued, queued["token"]).status_code == 200
    assert client.get(queued["status_url"]).json()["state"] == "cancelled"
    assert client.post("/api/jobs", json=JOB).status_code == 202
    hold.set()


def test_cancelling_a_finished_job_changes_nothing(make_client, wait_for_state):
    client = make_client()
    job = submit(client)
    wait_for_state(client, job["id"], {"done"})
    answer = cancel(client, job, job["token"])
    assert answer.status_code == 200 and "already ended" in answer.json()["detail"]
    assert client.get(job["status_url"]).json()["state"] == "done"


def test_a_job_nobody_watches_is_cancelled_after_the_timeout(make_client, fake_pipeline):
    client = make_client({"fake": fake_pipeline(step_seconds=0.05)}, job_timeout=0.3)
    job = submit(client, steps=100)  # 5 s of work if it ran to the end
    time.sleep(1.5)  # no status reads meanwhile: they count as watching
    status = client.get(job["status_url"]).json()
    assert status["state"] == "cancelled" and "nobody watched" in status["error"]
    assert 0 < status["step"] < 100


def test_a_streamed_job_outlives_the_timeout(make_client, fake_pipeline, read_events):
    client = make_client({"fake": fake_pipeline(step_seconds=0.02)}, job_timeout=0.2, keepalive_seconds=0.05)
    job = submit(client, steps=40)  # 0.8 s
    events = read_events(client.get(job["events_url"]).text)
    assert events[-1][0] == "done"


def test_a_client_that_disconnects_leaves_no_work_running(live_server, fake_pipeline):
    pipeline = fake_pipeline(step_seconds=0.05)
    app = create_app({"fake": pipeline}, ServerSettings(job_timeout=0.3, keepalive_seconds=0.05))
    base = live_server(app)
    with httpx.Client(base_url=base, timeout=10) as http:
        job = http.post("/api/jobs", json={**JOB, "steps": 200}).json()
        with http.stream("GET", job["events_url"]) as stream:
            next(stream.iter_lines())  # connected and streaming; now hang up
        time.sleep(1.5)
        status = http.get(job["status_url"]).json()
    assert status["state"] == "cancelled" and "nobody watched" in status["error"]
    assert status["step"] < 100


def test_pipeline_errors_end_the_job_with_a_message_and_no_traceback(make_client, fake_pipeline, wait_for_state):
    broken = fake_pipeline(fail=RuntimeError("secret /home/path in a traceback"))
    client = make_client({"broken": broken, "strict": fake_pipeline(fail=MarbleError("sampler: not here"))})
    failed = wait_for_state(client, submit(client, model="broken")["id"], {"failed"})
    assert failed["error"].startswith("internal error") and "secret" not in failed["error"]
    refused = wait_for_state(client, submit(client, model="strict")["id"], {"failed"})
    assert refused["error"] == "sampler: not here"
    assert submit(client, model="broken")  # the worker survived


def test_old_finished_jobs_and_their_images_are_forgotten(make_client, wait_for_state):
    client = make_client(keep_jobs=2)
    jobs, finished = [], []
    for seed in range(3):
        jobs.append(submit(client, seed=seed))
        finished.append(wait_for_state(client, jobs[-1]["id"], {"done"}))
    assert client.get(jobs[0]["status_url"]).status_code == 404
    assert client.get(finished[0]["images"][0]["url"]).status_code == 404
    assert client.get(finished[2]["images"][0]["url"]).status_code == 200


def test_registry_keeps_running_jobs_and_caps_finished_ones():
    registry = JobRegistry(keep_finished=1)
    request = type("Request", (), {"seed": 0})()
    running, old, new = Job(request, "m"), Job(request, "m"), Job(request, "m")
    for job in (running, old, new):
        registry.add(job)
    for job in (old, new):
        job.update(state=JobState.DONE, image_ids=registry.store_pngs(job, [b"png"]))
        registry.finished(job)
    assert registry.get(running.id) is running and registry.get(old.id) is None and registry.get(new.id) is new
    assert registry.counts() == (2, 1)


def test_a_job_with_an_open_stream_is_never_abandoned():
    job = Job(type("Request", (), {"seed": 0})(), "m")
    job.last_seen -= 10
    assert job.abandoned(timeout=1)
    job.watchers = 1
    assert not job.abandoned(timeout=1)
