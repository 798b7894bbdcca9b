"""The HTTP API over the tiny trained run: a job end to end, every validation error, the guards."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from marble.pipeline import GenerationRequest
from marble.server.app import create_app

GOOD = {"prompt": "red circle", "steps": 6, "guidance": 3.0, "sampler": "ddim", "seed": 11, "num_images": 2,
        "preview_every": 2}


def post_raw(client, text: str):
    return client.post("/api/jobs", content=text.encode(), headers={"Content-Type": "application/json"})


def test_a_job_streams_progress_previews_and_ends_with_reproducible_pngs(client, tiny_pipeline, read_events):
    created = client.post("/api/jobs", json=GOOD)
    assert created.status_code == 202
    job = created.json()
    assert re.fullmatch(r"[0-9a-f]{32}", job["id"]) and job["seed"] == 11 and job["token"]

    events = read_events(client.get(job["events_url"]).text)
    names = [name for name, _ in events]
    assert names[-1] == "done" and "progress" in names
    previews = [data for name, data in events if name == "preview"]
    assert [p["step"] for p in previews] == [2, 4, 6]
    first_preview = Image.open(io.BytesIO(base64.b64decode(previews[0]["image"].split(",", 1)[1])))
    assert first_preview.width >= 128  # 16 px tiles enlarged to be visible
    done = events[-1][1]
    assert [image["index"] for image in done["images"]] == [0, 1]

    expected = tiny_pipeline.generate(GenerationRequest(**GOOD)).images
    for image, pixels in zip(done["images"], expected):
        response = client.get(image["url"])
        assert response.headers["content-type"] == "image/png"
        png = Image.open(io.BytesIO(response.content))
        assert torch.equal(torch.from_numpy(np.array(png)).permute(2, 0, 1), pixels)
        settings = json.loads(png.text["marble"])  # enough to reproduce the image
        assert settings["prompt"] == "red circle" and settings["seed"] == 11 and settings["sampler"] == "ddim"
        assert png.text["marble-model"] == "tiny" and png.text["marble-index"] == str(image["index"])


def test_status_reports_the_finished_job(client, wait_for_state):
    job = client.post("/api/jobs", json=GOOD).json()
    status = wait_for_state(client, job["id"], {"done"})
    assert status["step"] == status["total"] == 6
    assert status["request"]["seed"] == 11 and len(status["images"]) == 2 and status["error"] is None


def test_null_seed_draws_a_random_seed_the_job_reports(client):
    seeds = {client.post("/api/jobs", json={**GOOD, "seed": None, "steps": 1}).json()["seed"] for _ in range(3)}
    assert len(seeds) > 1 and all(0 <= seed < 2**32 for seed in seeds)


def test_models_lists_the_served_model(client):
    [model] = client.get("/api/models").json()
    assert model["name"] == "tiny" and model["image_size"] == 16 and "dpm++" in model["samplers"]


@pytest.mark.parametrize("field, value", [
    ("prompt", ""), ("prompt", "   "), ("prompt", "x" * 501), ("prompt", 5), ("negative_prompt", ["a"]),
    ("steps", 0), ("steps", 1001), ("steps", "5"), ("steps", 5.0), ("steps", True),
    ("guidance", -0.5), ("guidance", 50.5), ("guidance", "3"), ("guidance", True),
    ("sampler", "plms"), ("seed", -1), ("seed", 2**63), ("seed", 1.5),
    ("num_images", 0), ("num_images", 65), ("preview_every", -1), ("model", "nope"), ("colour", "red"),
])
def test_each_bad_field_is_a_422_that_names_it(client, field, value):
    response = client.post("/api/jobs", json={**GOOD, field: value})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"][-1] == field and error["msg"].startswith(f"{field}:")
    assert "input" not in error  # never echo the input back


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_guidance_is_rejected(client, literal):
    response = post_raw(client, json.dumps({**GOOD, "guidance": "G"}).replace('"G"', literal))
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"].startswith("guidance:")


@pytest.mark.parametrize("body", ["{", "[]", "null", '"prompt"', ""])
def test_malformed_bodies_are_4xx(client, body):
    assert post_raw(client, body).status_code == 422


def test_a_body_over_the_limit_is_413(client):
    assert post_raw(client, json.dumps({**GOOD, "prompt": "x" * 300_000})).status_code == 413


def test_a_chunked_body_over_the_limit_is_413_too(client):
    chunks = (b"x" * 4096 for _ in range(80))  # no Content-Length: the guard has to count
    response = client.post("/api/jobs", content=chunks, headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_state_changes_from_a_foreign_origin_are_403(client):
    foreign = client.post("/api/jobs", json=GOOD, headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403 and "evil.example" in foreign.json()["detail"]
    assert client.post("/api/jobs", json=GOOD, headers={"Origin": "null"}).status_code == 403
    assert client.post("/api/jobs", json=GOOD, headers={"Origin": "http://testserver"}).status_code == 202
    assert client.get("/api/models", headers={"Origin": "http://evil.example"}).status_code == 200  # reads: CORS


def test_unknown_and_malformed_ids_are_4xx_never_a_path(client):
    assert client.get(f"/api/jobs/{'0' * 32}").status_code == 404
    assert client.get(f"/api/images/{'0' * 32}").status_code == 404
    assert client.get("/api/images/..%2F..%2Fetc%2Fpasswd").status_code in (404, 422)
    assert client.get("/api/jobs/not-a-job").status_code == 422


def test_token_guards_every_api_route_but_not_the_page(make_client, tiny_pipeline):
    guarded = make_client({"tiny": tiny_pipeline}, token="s3cret")
    assert guarded.get("/api/models").status_code == 401
    assert guarded.get("/api/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert guarded.post("/api/jobs", json=GOOD).status_code == 401
    assert guarded.get(f"/api/jobs/{'0' * 32}").status_code == 401
    assert guarded.get("/api/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert guarded.get("/").status_code == 200


def test_host_allow_list_refuses_other_host_names(make_client, tiny_pipeline):
    local = make_client({"tiny": tiny_pipeline}, allowed_hosts=("127.0.0.1", "localhost"))
    assert local.get("/api/models").status_code == 400  # TestClient sends Host: testserver
    assert local.get("/api/models", headers={"Host": "localhost:8000"}).status_code == 200


def test_page_docs_and_assets_are_served_without_network_urls(client):
    page = client.get("/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    texts = page.text + client.get("/static/app.js").text + client.get("/static/style.css").text
    assert not re.search(r"https?://", texts)
    docs = client.get("/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in docs and "cdn." not in docs
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    assert "/api/jobs/{job_id}/events" in client.get("/openapi.json").json()["paths"]


def test_a_server_error_is_a_bare_500_without_traceback(fake_pipeline):
    class Broken(fake_pipeline):
        @property
        def image_size(self):
            raise RuntimeError("/secret/path in a traceback")

    with TestClient(create_app({"broken": Broken()}), raise_server_exceptions=False) as client:
        response = client.get("/api/models")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal server error; see the server log"}
