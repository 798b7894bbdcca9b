"""`marble serve`: refuses unsafe bindings before loading anything; wires the loopback Host guard."""

from __future__ import annotations

import pytest
import uvicorn
from fastapi.testclient import TestClient

from marble.cli import build_parser, main


def test_defaults_bind_to_loopback():
    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.queue_depth, args.job_timeout, args.models) == ("127.0.0.1", 8000, 4, 300.0, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::"])
def test_a_public_host_without_token_is_refused(tmp_path, capsys, monkeypatch, host):
    monkeypatch.delenv("MARBLE_TOKEN", raising=False)
    assert main(["serve", "--host", host, "--model", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"--host {host}" in err and "--token" in err and "Traceback" not in err


@pytest.mark.parametrize("option", [["--queue-depth", "0"], ["--job-timeout", "nan"], ["--job-timeout", "-1"]])
def test_bad_limits_are_one_line_errors(tmp_path, capsys, option):
    assert main(["serve", "--model", str(tmp_path), *option]) == 2
    assert "must be positive" in capsys.readouterr().err


def test_missing_model_is_a_one_line_error(tmp_path, capsys):
    assert main(["serve", "--model", str(tmp_path / "nothing")]) == 2
    assert "no trained model" in capsys.readouterr().err


def test_two_models_with_one_name_are_refused(tmp_path, capsys):
    (tmp_path / "a" / "run").mkdir(parents=True)
    (tmp_path / "b" / "run").mkdir(parents=True)
    assert main(["serve", "--model", str(tmp_path / "a" / "run"), "--model", str(tmp_path / "b" / "run")]) == 2
    assert "two models are named 'run'" in capsys.readouterr().err


def test_loopback_serving_accepts_only_loopback_host_names(tiny_run, monkeypatch):
    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(app=app, **options))
    monkeypatch.delenv("MARBLE_TOKEN", raising=False)
    assert main(["serve", "--model", str(tiny_run), "--port", "8123"]) == 0
    assert (served["host"], served["port"]) == ("127.0.0.1", 8123)
    with TestClient(served["app"]) as client:
        assert client.get("/api/models", headers={"Host": "127.0.0.1:8123"}).json()[0]["name"] == tiny_run.name
        assert client.get("/api/models", headers={"Host": "attacker.example:8123"}).status_code == 400


def test_a_token_lets_a_public_host_serve_and_guards_the_api(tiny_run, monkeypatch):
    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(app=app, **options))
    monkeypatch.setenv("MARBLE_TOKEN", "s3cret")
    assert main(["serve", "--model", str(tiny_run), "--host", "0.0.0.0"]) == 0
    with TestClient(served["app"]) as client:
        assert client.get("/api/models").status_code == 401
        assert client.get("/api/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
