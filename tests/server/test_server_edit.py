"""img2img and inpainting over HTTP: base64 PNGs in the job body, the pipeline's pixels out, 4xx for bad images."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from marble.editing import ImageEdit
from marble.pipeline import GenerationRequest

SOURCE = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
MASK = np.zeros((16, 16), np.uint8)
MASK[4:12, 4:12] = 255
JOB = {"prompt": "red circle", "steps": 4, "guidance": 3.0, "sampler": "ddim", "seed": 3, "num_images": 2,
       "preview_every": 0}


def encoded(pixels: np.ndarray, format: str = "PNG") -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=format)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def test_an_inpainting_job_gives_the_pipelines_pixels(client, tiny_pipeline, read_events):
    body = {**JOB, "init_image": f"data:image/png;base64,{encoded(SOURCE)}", "mask": encoded(MASK), "strength": 0.9}
    created = client.post("/api/jobs", json=body)
    assert created.status_code == 202, created.text
    done = read_events(client.get(created.json()["events_url"]).text)[-1]
    assert done[0] == "done"
    edit = ImageEdit(torch.from_numpy(SOURCE).permute(2, 0, 1), 0.9, torch.from_numpy(MASK > 0))
    expected = tiny_pipeline.generate(GenerationRequest(**JOB, edit=edit)).images
    for image, pixels in zip(done[1]["images"], expected):
        png = Image.open(io.BytesIO(client.get(image["url"]).content))
        assert torch.equal(torch.from_numpy(np.array(png)).permute(2, 0, 1), pixels)
        assert json.loads(png.text["marble"])["edit"] == {"strength": 0.9, "mask": True, "paste_unmasked": False,
                                                          "size": [16, 16]}
    status = client.get(created.json()["status_url"]).json()
    assert status["request"]["edit"]["mask"] is True and "init_image" not in status["request"]


def test_img2img_alone_defaults_to_strength_point_eight(client):
    created = client.post("/api/jobs", json={**JOB, "init_image": encoded(SOURCE)})
    assert created.status_code == 202
    assert client.get(created.json()["status_url"]).json()["request"]["edit"]["strength"] == 0.8


@pytest.mark.parametrize("changes, field, fragment", [
    ({"init_image": encoded(SOURCE[:8, :8])}, "init_image", "the model draws 16×16 images, this one is 8×8"),
    ({"init_image": encoded(SOURCE, "JPEG")}, "init_image", "not an image (PNG expected)"),
    ({"init_image": "not base64!"}, "init_image", "not valid base64"),
    ({"init_image": base64.b64encode(b"hello").decode()}, "init_image", "not an image"),
    ({"init_image": "x" * 100_001}, "init_image", "at most 100000 characters"),
    ({"mask": encoded(MASK)}, "mask", "needs init_image"),
    ({"strength": 0.5}, "strength", "needs init_image"),
    ({"init_image": encoded(SOURCE), "mask": encoded(MASK[:8, :8])}, "mask", "is 8×8 but init_image is 16×16"),
    ({"init_image": encoded(SOURCE), "mask": encoded(MASK * 0)}, "mask", "no white pixel"),
    ({"init_image": encoded(SOURCE), "strength": 1.5}, "strength", "less than or equal to 1"),
    ({"init_image": encoded(SOURCE), "paste_unmasked": True}, "paste_unmasked", "needs a mask"),
])
def test_bad_images_are_422s_that_name_the_field(client, changes, field, fragment):
    response = client.post("/api/jobs", json={**JOB, **changes})
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", field] and error["msg"].startswith(f"{field}:") and fragment in error["msg"]


def test_a_job_with_two_images_fits_the_body_limit_and_more_is_413(client):
    noisy = encoded(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8))  # 64 px, incompressible
    body = {**JOB, "init_image": noisy, "mask": noisy}
    assert len(json.dumps(body)) > 16_384  # the old text-only limit
    assert client.post("/api/jobs", json=body).status_code == 422  # read and answered: the model is 16 px
    huge = json.dumps({**JOB, "init_image": "A" * 300_000})
    assert client.post("/api/jobs", content=huge, headers={"Content-Type": "application/json"}).status_code == 413
