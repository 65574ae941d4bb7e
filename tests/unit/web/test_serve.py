"""``rtseg serve``: the extra's hint, the flags, the loopback default and its warning, and a real run."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from web_helpers import KnownObjectsDetector, encode, scene

from rtseg import cli

ROOT = Path(__file__).resolve().parents[3]


def test_without_the_web_extra_one_line_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if it were not installed
    assert cli.main(["serve"]) == 2
    captured = capsys.readouterr()
    assert captured.err == ('rtseg: error: the web page needs its extra: pip install -e ".[web]" '
                            "(FastAPI, uvicorn, websockets)\n")
    assert captured.out == ""


@pytest.mark.parametrize(("argv", "message"), [
    (["--queue-size", "0"], "--queue-size must be from 1 to 256, got 0"),
    (["--port", "70000"], "--port must be from 0 to 65535, got 70000"),
    (["--max-upload-mb", "nan"], "argument --max-upload-mb: 'nan' is not a finite number"),
    (["--max-upload-mb", "inf"], "argument --max-upload-mb: 'inf' is not a finite number"),
    (["--keep-minutes", "nan"], "argument --keep-minutes: 'nan' is not a finite number"),
    (["--keep-minutes", "-1"], "--keep-minutes must be from 0.01 to 525600, got -1.0"),
    (["--idle-timeout", "inf"], "argument --idle-timeout: 'inf' is not a finite number"),
    (["--idle-timeout", "0"], "--idle-timeout must be from 0.1 to 3600, got 0.0"),
    (["--upload-timeout", "1e9"], "--upload-timeout must be from 1 to 86400, got 1000000000.0"),
    (["--max-side", "8"], "--max-side must be from 32 to 16384, got 8"),
    (["--max-pixels", "100"], "pipeline.max_pixels: 100 is below the minimum 4096"),
    (["--score-threshold", "2"], "model.score_threshold: 2.0 is above the maximum 1.0"),
    (["--precision", "fp8"], "invalid choice: 'fp8'"),
])
def test_bad_flags_are_one_line_and_exit_2(argv, message, capsys):
    assert cli.main(["serve", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and len(err) < 200


@pytest.fixture
def started(monkeypatch):
    """Runs ``rtseg serve`` with a stub model and without serving: returns what uvicorn would have been given."""
    uvicorn = pytest.importorskip("uvicorn")
    pytest.importorskip("fastapi")
    given: dict = {}

    def run(self, sockets):
        given.update(app=self.config.app, address=sockets[0].getsockname())

    monkeypatch.setattr(uvicorn.Server, "run", run)
    monkeypatch.setattr("rtseg.detect.maskrcnn.MaskRCNNDetector",
                        lambda config: given.setdefault("model", (config, KnownObjectsDetector()))[1])
    return given


def test_the_default_listens_on_loopback_and_prints_the_url(started, capsys):
    assert cli.main(["serve", "--port", "0", "--weights", "none", "--score-threshold", "0.6"]) == 0
    captured = capsys.readouterr()
    host, port = started["address"]
    assert host == "127.0.0.1"
    assert captured.out == f"rtseg: serving the page at http://127.0.0.1:{port}/ (Ctrl-C stops)\n"
    assert captured.err == ""
    server = started["app"].state.server
    assert set(server.settings.allowed_hosts) == {"127.0.0.1", "localhost", "::1"}
    assert server.settings.config.model.score_threshold == 0.6  # the slider's start
    model_config, _ = started["model"]
    assert (model_config.weights, model_config.score_threshold, model_config.classes) == ("none", 0.05, [])


def test_the_budget_flags_reach_the_page(started):
    assert cli.main(["serve", "--port", "0", "--weights", "none", "--max-pixels", "1000000", "--max-side", "512",
                     "--idle-timeout", "5", "--upload-timeout", "60"]) == 0
    settings = started["app"].state.server.settings
    assert (settings.max_pixels, settings.side_limit, settings.max_side) == (1_000_000, 512, 512)
    assert (settings.idle_timeout, settings.upload_timeout, settings.video_pixels) == (5.0, 60.0, 512 * 512)


def test_any_other_host_warns_once_that_the_page_is_exposed(started, capsys):
    assert cli.main(["serve", "--host", "0.0.0.0", "--port", "0", "--allowed-host", "box.lan"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "rtseg: WARNING: listening on 0.0.0.0" in captured.err
    assert "open to the network" in captured.err and "box.lan" in captured.err
    assert started["address"][0] == "0.0.0.0"
    assert "box.lan" in started["app"].state.server.settings.allowed_hosts
    assert "http://127.0.0.1:" in captured.out


def test_a_taken_port_is_one_line_before_the_model_loads(started, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["serve", "--port", str(port)]) == 2
    assert capsys.readouterr().err == f"rtseg: error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    assert "model" not in started


def test_python_m_rtseg_serve_answers_and_stops_on_ctrl_c():
    pytest.importorskip("uvicorn")
    pytest.importorskip("fastapi")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, "-m", "rtseg", "serve", "--port", "0", "--weights", "none",
                               "--size", "64", "--device", "cpu"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()  # printed once the model is loaded and the port is bound
        url = re.fullmatch(r"rtseg: serving the page at (http://127\.0\.0\.1:\d+/) \(Ctrl-C stops\)\n", line)
        assert url, (line, server.stderr.read() if server.poll() is not None else "")
        with urllib.request.urlopen(url[1] + "api/info", timeout=60) as response:
            info = json.load(response)
        assert "person" in info["classes"] and "N/A" not in info["classes"]
        request = urllib.request.Request(url[1] + "api/images?name=a.png", data=encode(scene(64, 80)), method="POST")
        with urllib.request.urlopen(request, timeout=120) as response:
            assert (json.load(response)["width"]) == 80  # the real model (random weights) ran on it
        with urllib.request.urlopen(url[1], timeout=60) as response:
            assert b'id="run-image"' in response.read()
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=60)
    assert server.returncode == 130, err
    assert "Traceback" not in err
