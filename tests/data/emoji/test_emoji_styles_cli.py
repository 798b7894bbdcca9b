"""`marble data emoji --styles ... --size ... --holdout ...` from the command line."""

import pytest

from marble.cli import main
from marble.data.emoji.npm import default_cache_dir


@pytest.fixture
def home_cache(tmp_path, monkeypatch, fake_packages):
    """HOME whose npm cache already holds the fake packages."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    fake_packages(default_cache_dir())


def test_styles_size_and_holdout(tmp_path, home_cache, capsys, read_metadata):
    out = tmp_path / "emoji4"
    code = main(["data", "emoji", "--out", str(out), "--langs", "en", "--styles", "twitter,fluent3d,openmoji",
                 "--size", "16", "--holdout", "red apple:fluent3d"])
    printed = capsys.readouterr().out
    assert code == 0
    assert f"wrote 8 images with captions in en to {out}" in printed
    assert "fluent3d: 1 images, 1 held out; skipped 3 not in the package" in printed
    assert "1 of 5 concepts drawn in every style" in printed
    assert f"held out 1 images to {out}-holdout" in printed
    assert {r["style"] for r in read_metadata(out)} == {"twitter", "fluent3d", "openmoji"}


@pytest.mark.parametrize("options, message", [
    (["--styles", "twitter,clay"], "unknown emoji styles ['clay']"),
    (["--size", "0"], "--size must be 8 to 1024"),
    (["--holdout", "fox"], "'fox' is not CONCEPT:STYLE"),
])
def test_bad_options_are_one_line_errors(tmp_path, home_cache, capsys, options, message):
    code = main(["data", "emoji", "--out", str(tmp_path / "emoji"), *options])
    error = capsys.readouterr().err
    assert code == 2 and message in error and error.count("\n") == 1
    assert not (tmp_path / "emoji").exists()
