"""Screenshots of `marble serve`'s page for docs/serving.md (not a test): one job in headless Chromium.

    python bench/serve_screenshot.py                    # the reference model, into docs/images/
    python bench/serve_screenshot.py --model RUN --out-dir /tmp/shots

Writes serve-screenshot-preview.png (mid-sampling), serve-screenshot.png (desktop, gallery full) and
serve-screenshot-narrow.png (360 px wide). Serves on a free 127.0.0.1 port; the browser is Debian's
/usr/bin/chromium, so nothing is downloaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from serve_load import start_server  # bench/ is on sys.path when this file is run as a script

from marble.cli import resolve_model
from marble.pipeline import MarblePipeline
from marble.server.app import create_app
from marble.server.headless_chromium import headless_chromium, wait_until
from marble.server.settings import ServerSettings

DESKTOP = {"width": 1100, "height": 760}
NARROW = {"width": 360, "height": 740}
DOCS_IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
# A preview shown and the job past a third of its steps but not finished: the x̂₀ grid has taken shape.
MID_SAMPLING = """() => !document.getElementById("preview").hidden
  && document.getElementById("status").textContent.startsWith("Step ")
  && 3 * document.getElementById("progress").value >= document.getElementById("progress").max"""
STILL_SAMPLING = '() => document.getElementById("status").textContent.startsWith("Step ")'
GALLERY_LOADED = """() => document.querySelectorAll("#gallery img").length === NUM
  && [...document.querySelectorAll("#gallery img")].every(i => i.complete && i.naturalWidth > 0)"""


def fill_job_form(page, args: argparse.Namespace) -> None:
    page.wait_for_selector("#sampler option", state="attached")
    page.fill("#prompt", args.prompt)
    page.fill("#steps", str(args.steps))
    page.fill("#guidance", f"{args.guidance:g}")
    page.select_option("#sampler", args.sampler)
    page.fill("#num_images", str(args.num_images))
    page.uncheck("#random_seed")  # a fixed seed: the screenshots can be made again
    page.fill("#seed", str(args.seed))


def take_screenshots(base: str, args: argparse.Namespace) -> list[Path]:
    shots = [args.out_dir / f"serve-screenshot{suffix}.png" for suffix in ("-preview", "", "-narrow")]
    with headless_chromium() as browser:
        page = browser.new_page(viewport=DESKTOP)
        page.goto(base)
        fill_job_form(page, args)
        page.click("#generate")
        wait_until(page, MID_SAMPLING, seconds=120)
        page.screenshot(path=str(shots[0]), full_page=True)
        if not page.evaluate(STILL_SAMPLING):  # the job ended while the picture was taken
            raise RuntimeError("sampling ended during the preview screenshot; run again on a less busy machine")
        wait_until(page, GALLERY_LOADED.replace("NUM", str(args.num_images)), seconds=300)
        page.screenshot(path=str(shots[1]), full_page=True)
        page.set_viewport_size(NARROW)
        if page.evaluate("document.documentElement.scrollWidth") > NARROW["width"]:
            raise RuntimeError("the page is wider than a phone screen")
        page.screenshot(path=str(shots[2]), full_page=True)
        print(page.inner_text("#status"))
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="reference", help="run folder, or 'reference'")
    parser.add_argument("--prompt", default="smiling face with sunglasses")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--sampler", default="dpm++")
    parser.add_argument("--num-images", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=DOCS_IMAGES)
    args = parser.parse_args()
    app = create_app({Path(args.model).name: MarblePipeline.load(resolve_model(args.model))}, ServerSettings())
    server, base = start_server(app)
    try:
        for shot in take_screenshots(base, args):
            print(shot)
    finally:
        server.should_exit = True


if __name__ == "__main__":
    main()
