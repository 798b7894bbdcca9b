"""The page in real headless Chromium against a real server on the tiny run: type, watch, get images."""

from __future__ import annotations

import time

import pytest

from marble.pipeline import MarblePipeline
from marble.server.app import create_app
from marble.server.headless_chromium import CHROMIUM, headless_chromium, wait_until
from marble.server.settings import ServerSettings

# Every src the preview <img> takes, recorded in the page so no change between two polls is missed.
RECORD_PREVIEWS = """
window.previews = [];
new MutationObserver(() => window.previews.push(document.getElementById("preview").src))
  .observe(document.getElementById("preview"), {attributes: true, attributeFilter: ["src"]});
"""

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                       "(`apt-get install -y chromium`, done by `scripts/setup.sh --test`)"),
]


class Paced:
    """The tiny run, slowed per step so the page has time to show several previews."""

    def __init__(self, pipeline: MarblePipeline, step_seconds: float):
        self.pipeline, self.step_seconds, self.image_size = pipeline, step_seconds, pipeline.image_size

    def generate(self, request, on_preview=None, on_progress=None):
        def paced(done: int, total: int) -> None:
            time.sleep(self.step_seconds)
            if on_progress:
                on_progress(done, total)

        return self.pipeline.generate(request, on_preview=on_preview, on_progress=paced)


@pytest.fixture
def page_url(tiny_run, live_server):
    return live_server(create_app({"tiny": Paced(MarblePipeline.load(tiny_run), 0.05)}, ServerSettings()))


@pytest.fixture
def browser():
    with headless_chromium() as chromium:
        yield chromium


def test_typing_a_prompt_shows_changing_previews_then_the_images(browser, page_url):
    page = browser.new_page(viewport={"width": 1100, "height": 760})
    page.goto(page_url)
    page.wait_for_selector("#sampler option", state="attached")
    page.fill("#prompt", "red circle")
    page.fill("#steps", "20")
    page.fill("#num_images", "4")
    page.evaluate(RECORD_PREVIEWS)
    page.click("#generate")

    page.wait_for_selector("#gallery figure:nth-child(4) img", timeout=30_000)
    wait_until(page, "() => [...document.querySelectorAll('#gallery img')].every(i => i.naturalWidth > 0)")
    previews = page.evaluate("window.previews")
    assert len(set(previews)) >= 2 and all(src.startswith("data:image/png") for src in previews)
    assert page.eval_on_selector("#progress", "p => [p.value, p.max]") == [20, 20]
    assert page.inner_text("#status").startswith("Done")
    seed = page.input_value("#seed")
    captions = page.eval_on_selector_all("#gallery figcaption", "cs => cs.map(c => c.textContent)")
    assert captions[0].startswith(f"seed {seed} · #0")
    assert page.eval_on_selector("#gallery img", "i => i.naturalWidth") == 16
    assert page.eval_on_selector("#gallery a", "a => a.download") == f"marble-seed{seed}-0.png"

    assert len(page.screenshot(full_page=True)) > 10_000  # docs' screenshots: bench/serve_screenshot.py


def test_cancel_button_stops_the_job(browser, page_url):
    page = browser.new_page(viewport={"width": 1100, "height": 760})
    page.goto(page_url)
    page.fill("#prompt", "blue square")
    page.fill("#steps", "400")  # 20 s if nobody stopped it
    page.click("#generate")
    wait_until(page, "() => document.getElementById('progress').value >= 2")
    page.click("#cancel")
    wait_until(page, "() => document.getElementById('status').textContent.startsWith('Cancelled')")
    assert page.eval_on_selector("#generate", "b => b.disabled") is False
    assert page.locator("#gallery figure").count() == 0


def test_the_page_fits_a_narrow_phone_screen(browser, page_url):
    page = browser.new_page(viewport={"width": 360, "height": 740})
    page.goto(page_url)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    form, output = (page.locator(selector).bounding_box() for selector in ("#settings", "#output"))
    assert output["y"] >= form["y"] + form["height"]  # stacked, not side by side
    assert not page.locator("#model-choice").is_visible()  # one model: no model picker
