"""How fast ``rtseg export`` reads a run: frames of JSON Lines per second, per format, on a made-up 720p run.

The run holds ``objects`` tracked ellipses per frame, in a grid, moving a pixel a frame, two of them overlapping
(so MOTS's overlap rule is exercised, as Mask R-CNN's masks do overlap). Its masks are encoded once for
``distinct`` frames and the lines repeated with rising frame numbers, so making the run takes seconds; every
line is still parsed, and every mask handled, by the export. ``scripts/bench_exports.py`` is its command line.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rtseg.core.masks import encode_mask
from rtseg.offline.exports import export_run
from rtseg.offline.progress import progress

BENCH_FORMATS = ("mots", "youtube-vis", "cvat-video")


def _record(frame: int, objects: int, width: int, height: int) -> dict[str, Any]:
    columns = 5
    rows = -(-objects // columns)
    cell_w, cell_h = width // columns, height // rows
    instances = []
    for k in range(objects):
        cx, cy = (k % columns) * cell_w + cell_w // 2 + frame, (k // columns) * cell_h + cell_h // 2
        if k == 1:  # overlaps object 0
            cx -= cell_w // 2
        mask = np.zeros((height, width), np.uint8)
        cv2.ellipse(mask, (cx, cy), (cell_w // 3, cell_h // 3), 15.0 * k, 0, 360, 1, -1)
        ys, xs = np.nonzero(mask)
        instances.append({"track_id": k + 1, "class_id": 1 + k % 3, "class_name": ("person", "car", "dog")[k % 3],
                          "score": round(0.5 + 0.02 * k, 4),
                          "box": [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)],
                          "area": int(mask.sum()), "mask": encode_mask(mask.astype(bool))})
    return {"frame": frame, "timestamp": frame / 30, "width": width, "height": height, "instances": instances}


def write_bench_run(path: Path, frames: int, objects: int = 20, width: int = 1280, height: int = 720,
                    distinct: int = 30) -> int:
    """Write the made-up run; returns its size in bytes."""
    lines = [_record(k, objects, width, height) for k in range(distinct)]
    with path.open("w", encoding="utf-8") as out:
        for frame in range(frames):
            out.write(json.dumps({**lines[frame % distinct], "frame": frame}, separators=(",", ":")) + "\n")
    return path.stat().st_size


def benchmark(frames: int = 3000, objects: int = 20, width: int = 1280, height: int = 720,
              formats: tuple[str, ...] = BENCH_FORMATS) -> dict[str, Any]:
    """Frames per second of each format's export of the made-up run (wall clock, output to a temporary folder)."""
    with tempfile.TemporaryDirectory() as scratch:
        run = Path(scratch) / "run.jsonl"
        size = write_bench_run(run, frames, objects, width, height)
        results: dict[str, Any] = {"frames": frames, "objects": objects, "size": f"{width}x{height}",
                                   "run_bytes": size, "fps": {}}
        for fmt in progress(formats, "formats"):
            start = time.perf_counter()
            export_run(run, fmt, Path(scratch) / f"out-{fmt}")
            results["fps"][fmt] = frames / (time.perf_counter() - start)
    return results
