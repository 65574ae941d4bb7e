"""Counts through the whole pipeline against ground truth: a synthetic video of shapes crossing a line.

The video is ``rtseg.offline.synthetic.write_video``'s (shapes moving straight
and bouncing off the frame's edges, occluding each other). The ground truth is
the true geometry: each shape's whole-shape centre (hidden or not) changing
side of the vertical line ``x = line_x``, per class and direction, counted by a
plain sign change, independent of rtseg's rules. ``count_cli`` and
``count_api`` run the same video through ``python -m rtseg`` and
``rtseg.api.process`` with a model that knows the shapes (the README's training
recipe makes one), so the two front doors can be compared with the truth and
with each other; the page's count comes from its video job (tests and
``scripts/eval_analytics.py --pipeline``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rtseg.offline.synthetic import CLASS_NAMES, video_frames, write_video

Counts = dict[str, dict[str, int]]  # 'in' | 'out' -> class -> crossings


@dataclass(frozen=True)
class CrossingVideo:
    video: Path
    line: dict[str, object]  # the analytics.lines entry: a vertical line, "in" on its left hand (the right half)
    truth: Counts


def crossing_video(folder: Path, seed: int = 0, width: int = 320, height: int = 240, frames: int = 150,
                   objects: int = 4, line_x: float = 0.5) -> CrossingVideo:
    """Write the video and count the true crossings of the line ``x = line_x * width`` (from top to bottom, so
    that "in" — its left hand — is the right half: a shape moving right crosses in)."""
    folder.mkdir(parents=True, exist_ok=True)
    video = folder / f"crossing-{seed}.mp4"
    write_video(video, folder / f"crossing-{seed}.json", seed=seed, width=width, height=height, num_frames=frames,
                num_objects=objects)
    x = line_x * width
    truth: dict[str, Counter[str]] = {"in": Counter(), "out": Counter()}
    sides: dict[int, bool] = {}
    for _, instances in video_frames(seed, width, height, frames, objects):
        for index, instance in enumerate(instances):
            right = instance.centre[0] > x
            if index in sides and sides[index] != right:
                truth["in" if right else "out"][CLASS_NAMES[instance.kind]] += 1
            sides[index] = right
    line: dict[str, object] = {"name": "gate", "points": [[line_x, 0.0], [line_x, 1.0]], "in": "left"}
    return CrossingVideo(video, line, {way: dict(counts) for way, counts in truth.items()})


def _counts(lines: dict[str, dict[str, dict[str, int]]]) -> Counts:
    gate = lines.get("gate", {})
    return {"in": dict(gate.get("in", {})), "out": dict(gate.get("out", {}))}


def count_cli(case: CrossingVideo, weights: str, work: Path) -> Counts:
    """``python -m rtseg --source VIDEO --line gate=... --save-stats`` with ``weights``: the line's counts."""
    stats = work / f"{case.video.stem}-cli-stats.json"
    points = case.line["points"]
    assert isinstance(points, list)
    spec = "gate=" + ",".join(f"{v:g}" for point in points for v in point)
    command = [sys.executable, "-m", "rtseg", "--source", str(case.video), "--weights", weights, "--line", spec,
               "--save-stats", str(stats), "--no-show", "--overwrite"]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=3600)
    return _counts(json.loads(stats.read_text())["analytics"]["lines"])


def count_api(case: CrossingVideo, weights: str) -> Counts:
    """``rtseg.api.process`` on the same video with the same line: the line's counts."""
    from rtseg.api import Outputs, process
    from rtseg.core.config import Config, apply_overrides

    config = apply_overrides(Config(), {"model": {"weights": weights}, "analytics": {"lines": [case.line]},
                                        "output": {"show": False}}, "eval")
    summary = process(str(case.video), Outputs(), config=config).summary
    tally = summary.streams[0].analytics
    assert tally is not None
    return _counts(tally.as_dict()["lines"])


def errors(counted: Counts, truth: Counts) -> int:
    """Sum over directions and classes of |counted - true|."""
    total = 0
    for way in ("in", "out"):
        names = set(counted.get(way, {})) | set(truth.get(way, {}))
        total += sum(abs(counted.get(way, {}).get(n, 0) - truth.get(way, {}).get(n, 0)) for n in names)
    return total
