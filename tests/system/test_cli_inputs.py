"""The command line refuses what no setting can mean and never prints a secret: ``nan`` and ``inf`` in flags and
files, a YAML alias bomb answered at once in a short line, and credentials masked in every form they take in a URL
(``user:pass@``, ``token@``, ``?password=``) in errors, logs, tracebacks, stream names and summaries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import make_clip

from rtseg.api import Outputs, plan_run, process
from rtseg.cli import main
from rtseg.core.config import Config
from rtseg.core.errors import SourceError
from rtseg.pipeline.summary import StreamSummary

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--weights", "none", "--size", "64", "--no-show"]


def last_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and not any("Traceback" in line for line in err)
    assert err[-1].startswith("rtseg: error: ")
    return err[-1]


# -- nan and inf -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag, value", [("--score-threshold", "nan"), ("--score-threshold", "inf"),
                                         ("--read-timeout", "nan"), ("--read-timeout", "Infinity")])
def test_nan_and_inf_flags_are_refused(flag, value, tmp_path, capsys):
    source = make_clip(tmp_path / "in.mp4")
    out = tmp_path / "out.mp4"
    assert main(["--source", str(source), "--output", str(out), flag, value, *FAST]) == 2
    assert f"argument {flag}: '{value}' is not a finite number" in last_error(capsys)
    assert not out.exists()


def test_nan_and_inf_in_a_config_file_are_refused_with_or_without_bounds(tmp_path, capsys):
    source = make_clip(tmp_path / "in.mp4")
    config = tmp_path / "bad.yaml"
    config.write_text("model:\n  score_threshold: .nan\npipeline:\n  stage_timeout: .inf\n"
                      "analytics:\n  loiter_seconds: .nan\n")
    assert main(["--source", str(source), "--config", str(config), *FAST]) == 2
    line = last_error(capsys)
    assert "model.score_threshold: nan is not a finite number" in line  # bounded: 0..1
    assert "pipeline.stage_timeout: inf is not a finite number" in line  # a minimum only
    assert "analytics.loiter_seconds: nan is not a finite number" in line


def test_a_yaml_alias_bomb_is_one_short_line_at_once(tmp_path, capsys):
    """380 bytes whose nine levels of aliases expand to 9**9 (387 million) strings."""
    names = "abcdefghi"
    levels = ["a: &a [x,x,x,x,x,x,x,x,x]"] + [f"{n}: &{n} [{','.join(['*' + p] * 9)}]" for p, n in zip(names, names[1:])]
    config = tmp_path / "bomb.yaml"
    config.write_text("\n".join(levels) + "\nmodel:\n  classes: *i\n")
    assert len(config.read_bytes()) < 400
    source = make_clip(tmp_path / "in.mp4")
    started = time.monotonic()
    assert main(["--source", str(source), "--config", str(config), *FAST]) == 2
    took = time.monotonic() - started
    line = last_error(capsys)
    assert "YAML aliases" in line and len(line) < 300
    assert took < 5  # the bound: it took 15 s and printed 312 MB


def test_a_huge_bad_value_is_shown_as_a_short_excerpt(tmp_path, capsys):
    source = make_clip(tmp_path / "in.mp4")
    config = tmp_path / "long.yaml"
    config.write_text("model:\n  classes: " + "x" * 1_000_000 + "\n")
    assert main(["--source", str(source), "--config", str(config), *FAST]) == 2
    line = last_error(capsys)
    assert "model.classes: expected list of strings, got str 'xxx" in line and len(line) < 300


# -- secrets ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["rtsp://SECRET@127.0.0.1:1/s",
                                 "rtsp://127.0.0.1:1/s?user=admin&password=SECRET",
                                 "rtsp://admin:SECRET@127.0.0.1:1/s",
                                 "http://127.0.0.1:1/video.mjpg?token=SECRET",
                                 "rtsp://127.0.0.1:1/s?channel=1&apikey=SECRET&x=2"])
@pytest.mark.parametrize("debug", [False, True])
def test_credentials_never_reach_the_terminal(url, debug, tmp_path, capsys):
    """An unreachable camera: the failure, its log lines and (with --debug) its traceback name it, masked."""
    argv = ["--source", url, "--output", str(tmp_path / "cam.mp4"), *FAST, *(["--debug"] if debug else [])]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "SECRET" not in captured.out + captured.err
    assert "127.0.0.1" in captured.err and "***" in captured.err


def test_credentials_are_kept_out_of_stream_names_and_summaries():
    """A stream's name is its window title, its files' names and its manifest line; a summary's error goes into
    --save-stats."""
    urls = ["rtsp://SECRET@cam.local/s", "rtsp://cam.local/s?user=admin&password=SECRET"]
    plan = plan_run(urls, Outputs(), Config())
    assert [s.name for s in plan.streams] == ["cam.local-s", "cam.local-s-2"]
    failed = StreamSummary(0, "cam", status="failed", error=SourceError(f"cannot open {urls[0]} and {urls[1]}"))
    assert "SECRET" not in json.dumps(failed.as_dict())


def test_an_over_budget_video_is_refused_before_the_model_is_built(tmp_path):
    source = make_clip(tmp_path / "in.mp4", width=96, height=64)
    config = Config()
    config.pipeline.max_pixels = 5000
    built: list[object] = []
    with pytest.raises(SourceError, match="over the budget"):
        process(str(source), Outputs(output=tmp_path / "out.mp4"), config=config,
                build_detector=lambda settings: built.append(settings))  # type: ignore[func-returns-value]
    assert built == [] and not (tmp_path / "out.mp4").exists()


def test_config_values_are_checked_before_torch_is_imported(tmp_path):
    """A mistake in the settings is one line at once: the CLI checks them before importing the pipeline."""
    code = ("import sys; from rtseg.cli import main; "
            "code = main(['--source', 'x.mp4', '--score-threshold', '2']); "
            "print(code, 'torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # run from tmp_path: the checkout's rtseg, whatever is installed
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env=env)
    assert result.stdout.split() == ["2", "False"]
    assert "model.score_threshold: 2.0 is above the maximum 1.0" in result.stderr
