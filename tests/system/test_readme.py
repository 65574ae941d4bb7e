"""The README's Python examples run as written, with random weights standing in for the COCO download."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_has_python_examples():
    assert len(_python_blocks()) >= 4


@pytest.mark.parametrize("index", range(4))
def test_readme_example_runs(index, tmp_path, monkeypatch, car_clip):
    code = _python_blocks()[index]
    # This machine cannot download COCO weights: the examples run with seeded random ones, at a small size.
    code = code.replace('weights="default"', 'weights="none"').replace('"default", 512', '"none", 96')
    code = code.replace("size=512", "size=96")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "clips").mkdir()
    code = code.replace("../shared/data/clips/", str(car_clip.parent) + "/")
    namespace: dict = {}
    exec(compile(code, f"README block {index}", "exec"), namespace)
    if index == 0:  # the JSON reader: feed it a real line
        import json

        import numpy as np

        from rtseg.core.masks import encode_mask

        mask = np.eye(4, dtype=bool)
        line = {"frame": 0, "timestamp": 0.0, "width": 4, "height": 4,
                "instances": [{"mask": encode_mask(mask)}]}
        (tmp_path / "d.jsonl").write_text(json.dumps(line) + "\n")
        (record,) = namespace["read_detections"](tmp_path / "d.jsonl")
        assert (record["instances"][0]["mask"] == mask).all()
    if index == 2:
        assert (tmp_path / "bikes.jsonl").exists()
        assert len((tmp_path / "bikes.jsonl").read_text().splitlines()) == 25
    if index == 3:  # your own source, detector and sink through Pipeline: every frame, in order
        summary = namespace["summary"]
        assert (summary.frames_read, summary.frames_written, summary.error) == (10, 10, None)
