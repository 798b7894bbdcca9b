"""The page's image inputs in headless Chromium: files are scaled to the model's size in the browser and sent."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from marble.pipeline import MarblePipeline
from marble.server.app import create_app
from marble.server.headless_chromium import CHROMIUM, headless_chromium, wait_until
from marble.server.settings import ServerSettings

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                       "(`apt-get install -y chromium`, done by `scripts/setup.sh --test`)"),
]


class Recording:
    """The tiny run, remembering each request it was given."""

    def __init__(self, pipeline: MarblePipeline):
        self.pipeline, self.image_size, self.requests = pipeline, pipeline.image_size, []

    def generate(self, request, on_preview=None, on_progress=None):
        self.requests.append(request)
        return self.pipeline.generate(request, on_preview=on_preview, on_progress=on_progress)


@pytest.fixture
def files(tmp_path):
    """A 48 × 32 red image and a 48 × 32 mask whose left half is white (the rest transparent)."""
    Image.new("RGB", (48, 32), (200, 20, 20)).save(tmp_path / "source.png")
    mask = np.zeros((32, 48, 4), np.uint8)
    mask[:, :24] = 255
    Image.fromarray(mask, "RGBA").save(tmp_path / "mask.png")
    return tmp_path


def test_chosen_files_become_a_model_sized_inpainting_job(tiny_run, live_server, files):
    model = Recording(MarblePipeline.load(tiny_run))
    url = live_server(create_app({"tiny": model}, ServerSettings()))
    with headless_chromium() as browser:
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(url)
        page.wait_for_selector("#sampler option", state="attached")
        page.fill("#prompt", "red circle")
        page.fill("#steps", "4")
        page.fill("#num_images", "1")
        page.click("#edit summary")
        page.set_input_files("#init_image", str(files / "source.png"))
        page.set_input_files("#mask", str(files / "mask.png"))
        page.fill("#strength", "0.75")
        page.click("#generate")
        wait_until(page, "() => document.getElementById('status').textContent.startsWith('Done')")

        [request] = model.requests
        edit = request.edit
        assert edit.strength == 0.75 and not edit.paste_unmasked
        assert edit.image.shape == (3, 16, 16)  # 48 × 32 padded to 48 × 48, scaled to the model's 16
        assert edit.image[:, 8, 8].tolist() == [200, 20, 20] and (edit.image[:, 0] == 255).all()  # white bands
        assert edit.mask[8, :7].all() and not edit.mask[8, 9:].any()  # left half white; padding kept black
        assert not edit.mask[0].any() and not edit.mask[15].any()

        page.click("#clear_edit")
        page.fill("#strength", "")
        page.evaluate("document.getElementById('status').textContent = ''")  # so the next 'Done' is the new job's
        page.click("#generate")
        wait_until(page, "() => document.getElementById('status').textContent.startsWith('Done')")
        assert len(model.requests) == 2 and model.requests[-1].edit is None
