"""The README's examples work as written: its Python blocks run (random weights standing in for the COCO download,
which this machine cannot make), and every `rtseg` command line in it is one that rtseg's own parsers accept."""

from __future__ import annotations

import importlib
import re
import shlex
import textwrap
from pathlib import Path

import pytest
from helpers import make_clip

import rtseg.detect.maskrcnn
from rtseg.cli import SUBCOMMANDS, build_parser
from rtseg.core.config import load_config
from rtseg.detect.models import load_model

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
# Each Python block by what it shows, so that moving a section does not change which block a test runs.
BLOCKS = {"json reader": "def read_detections", "many streams": "StreamConfig(", "segmenter": "Segmenter(",
          "whole runs": "load_config()", "pipeline": "Pipeline("}


def _python_blocks() -> list[str]:
    return [textwrap.dedent(block) for block in re.findall(r"```python\n(.*?)```", README, flags=re.S)]


def _block(name: str) -> str:
    (block,) = [b for b in _python_blocks() if BLOCKS[name] in b]
    return block


def _command_lines() -> list[str]:
    """Every `rtseg ...` / `python -m rtseg ...` command of the README's shell blocks, continuation lines joined and
    comments dropped."""
    commands: list[str] = []
    fence: str | None = None  # the open block's language ("" for shell), None outside blocks
    lines: list[str] = []
    for line in README.splitlines():
        if line.strip().startswith("```"):
            if fence == "":
                commands += "\n".join(lines).replace("\\\n", " ").splitlines()
            fence, lines = (line.strip()[3:] if fence is None else None), []
        elif fence == "":
            lines.append(line)
    commands = [c.split(" #")[0].strip() for c in commands]
    return [c for c in commands if re.match(r"(python -m )?rtseg( |$)", c)]


def test_readme_has_every_python_example():
    blocks = _python_blocks()
    assert len(blocks) == len(BLOCKS) and all(sum(m in b for b in blocks) == 1 for m in BLOCKS.values())


@pytest.fixture
def offline(monkeypatch):
    """torchvision's COCO weights cannot be downloaded here: 'default' builds the seeded random model instead."""
    def load(name, weights, **kwargs):
        return load_model(name, "none" if weights == "default" else weights, **kwargs)

    monkeypatch.setattr(rtseg.detect.maskrcnn, "load_model", load)


@pytest.mark.parametrize("name", list(BLOCKS))
def test_readme_example_runs(name, tmp_path, monkeypatch, offline):
    code = _block(name)
    code = code.replace('"default", 512', '"default", 96').replace("size=512", "size=96")  # small: fast on a CPU
    code = code.replace("samples/", str(ROOT / "samples") + "/")
    monkeypatch.chdir(tmp_path)
    if name == "many streams":  # its a.mp4 and b.mp4: two short clips
        for clip in ("a.mp4", "b.mp4"):
            make_clip(tmp_path / clip, frames=3)
    namespace: dict = {}
    exec(compile(code, f"README block {name}", "exec"), namespace)
    if name == "json reader":  # feed it a real line
        import json

        import numpy as np

        from rtseg.core.masks import encode_mask

        mask = np.eye(4, dtype=bool)
        line = {"frame": 0, "timestamp": 0.0, "width": 4, "height": 4,
                "instances": [{"mask": encode_mask(mask)}]}
        (tmp_path / "d.jsonl").write_text(json.dumps(line) + "\n")
        (record,) = namespace["read_detections"](tmp_path / "d.jsonl")
        assert (record["instances"][0]["mask"] == mask).all()
    if name == "many streams":
        streams = namespace["result"].summary.streams
        assert [(s.name, s.status, s.frames_written) for s in streams] == [("a", "done", 3), ("side", "done", 3)]
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mp4", "side.mp4"]
    if name == "segmenter":
        assert "N/A" not in namespace["detections"].names()
    if name == "whole runs":  # the sample clip, 25 frames of it
        assert len((tmp_path / "car.jsonl").read_text().splitlines()) == 25
    if name == "pipeline":  # your own source, detector and sink through Pipeline: every frame, in order
        summary = namespace["summary"]
        assert (summary.frames_read, summary.frames_written, summary.error) == (10, 10, None)


def _parser_for(words: list[str]):
    if words and words[0] in SUBCOMMANDS:
        module = importlib.import_module(SUBCOMMANDS[words[0]])
        return (getattr(module, "build_parser", None) or module._parser)(), words[1:]
    return build_parser(), words


def test_every_rtseg_command_in_the_readme_is_accepted_by_its_parser():
    commands = _command_lines()
    assert len(commands) > 30
    for command in commands:
        words = shlex.split(command.removeprefix("python -m ").removeprefix("rtseg").strip())
        if "--help" in words:
            continue
        parser, argv = _parser_for(words)
        parser.parse_args(argv)  # a flag that no longer exists, or a wrong value, raises UsageError: the test fails


def test_the_quick_start_runs_the_shipped_sample_and_train_help_shows_the_readmes_recipe(capsys):
    assert "rtseg --source samples/car.mp4 --output car-seg.mp4" in _command_lines()
    assert (ROOT / "samples" / "car.mp4").stat().st_size < 1_000_000
    recipe = [c for c in _command_lines() if c.startswith("python -m rtseg train") and "maskrcnn_r18" in c]
    assert len(recipe) == 1
    train_help = " ".join(importlib.import_module("rtseg.offline.train")._parser().format_help()
                          .replace("\\\n", " ").split())
    assert " ".join(recipe[0].split()) in train_help


def test_every_yaml_example_is_a_valid_config(tmp_path):
    """The streams: lists of the README (the single-machine fleet, the cluster's cameras) load as written."""
    blocks = re.findall(r"```yaml\n(.*?)```", README, flags=re.S)
    assert len(blocks) >= 2
    for i, block in enumerate(blocks):
        path = tmp_path / f"{i}.yaml"
        path.write_text(textwrap.dedent(block))
        assert load_config(path).streams
    cameras = load_config(tmp_path / f"{len(blocks) - 1}.yaml")  # the cluster's: cameras only
    assert all(str(s.source).startswith("rtsp://") for s in cameras.streams)
