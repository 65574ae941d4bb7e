"""The multi-stream benchmark: N streams on one engine against N single-stream processes, stub and real model.

Each measured run is its own child process (``python -m rtseg.offline.bench_streams RUN-AS-JSON``), so its
peak RSS is its own. Figures per run: aggregate and per-stream frames/s, latency p50/p95, batch fill (frames per
model call), the model's busy share and peak RSS. The stub (``BatchCostDetector``) costs a fixed part per call
plus a part per image, as a GPU does, so batching gains show on a CPU.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rtseg.api import Outputs, process
from rtseg.core.config import Config
from rtseg.offline.stubs import BatchCostDetector


@dataclasses.dataclass
class BenchRun:
    """One measured run: ``streams`` sources (the clips, cycled) on one engine."""

    clips: list[str]
    streams: int
    detector: str = "stub"  # 'stub' or 'model'
    batch_size: int = 8
    per_call: float = 0.05  # stub: seconds per model call
    per_image: float = 0.01  # stub: seconds per image in a call
    max_frames: int = 0  # per stream; 0 = whole clips
    realtime: bool = False  # play the clips at their own pace, as cameras
    dead_streams: int = 0  # extra streams whose camera never answers (they reconnect all run long)
    size: int = 256  # model: shorter side fed to Mask R-CNN
    outputs: bool = True  # write an MP4 per stream, as a real run does


def measure(run: BenchRun) -> dict[str, Any]:
    """Run it here and return its figures (``run_in_child`` calls this in a fresh process)."""
    config = Config()
    config.model = dataclasses.replace(config.model, weights="none", size=run.size, batch_size=run.batch_size)
    config.pipeline = dataclasses.replace(config.pipeline, max_frames=run.max_frames, max_open_files=run.streams)
    config.tracking = dataclasses.replace(config.tracking, enabled=False)
    # A dead camera retries about once a second for about as long as the live clips last (100 frames at 12.5 fps),
    # then gives up, so the run ends.
    config.live = dataclasses.replace(config.live, retry_at_start=True, reconnect_delay=0.5, reconnect_max_delay=1.0,
                                      open_timeout=1.0, reconnect_attempts=10)
    sources = [run.clips[i % len(run.clips)] for i in range(run.streams)]
    sources += ["rtsp://127.0.0.1:9/nothing-listens-here"] * run.dead_streams
    detector = BatchCostDetector(run.per_call, run.per_image) if run.detector == "stub" else None
    with tempfile.TemporaryDirectory() as scratch:
        started = time.monotonic()
        output = Path(scratch) / ("out.mp4" if len(sources) == 1 else "out")  # one stream: a file; several: a folder
        result = process(sources, Outputs(output=output if run.outputs else None), config=config,
                         detector=detector, realtime=run.realtime)
        wall = time.monotonic() - started
    summary = result.summary
    live = [s for s in summary.streams if s.frames_read]
    per_call = [s for s in (detector.batch_sizes if detector is not None else []) if s]
    model_seconds = summary.stage_timers["inference"].total / max(1, summary.model_calls) \
        if "inference" in summary.stage_timers else 0.0
    return {
        "streams": run.streams, "detector": run.detector, "realtime": run.realtime, "dead_streams": run.dead_streams,
        "frames": summary.frames_written, "wall_s": round(wall, 2),
        "aggregate_fps": round(summary.frames_written / summary.wall_seconds, 2) if summary.wall_seconds else 0.0,
        "per_stream_fps": [round(s.fps, 2) for s in live],
        "latency_p50_ms": round(summary.latency.percentile(50) * 1000, 1),
        "latency_p95_ms": round(summary.latency.percentile(95) * 1000, 1),
        "batch_fill": round(summary.batch_fill, 2), "model_busy_share": round(summary.model_busy_share, 3),
        "model_s_per_call": round(model_seconds, 4), "mean_batch": round(sum(per_call) / len(per_call), 2) if per_call else 0,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "stub_capacity_fps": round(BatchCostDetector(run.per_call, run.per_image).capacity(run.batch_size), 2),
    }


def run_in_child(run: BenchRun, timeout: float = 1800) -> dict[str, Any]:
    """``measure`` in a fresh Python process (its peak RSS is the run's alone).

    ``process_wall_s`` and ``process_fps`` count the whole process (start-up and model load included), the
    measure that compares with separate processes.
    """
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "rtseg.offline.bench_streams", json.dumps(dataclasses.asdict(run))],
                          capture_output=True, text=True, timeout=timeout)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"benchmark run failed: {done.stderr.strip().splitlines()[-1:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return {**figures, "process_wall_s": round(wall, 2), "process_fps": round(figures["frames"] / wall, 3)}


def separate_processes(run: BenchRun) -> dict[str, Any]:
    """The same N streams as N single-stream processes started together: aggregate frames/s and summed peak RSS."""
    one = dataclasses.replace(run, streams=1)
    children = []
    started = time.monotonic()
    for i in range(run.streams):
        clip_run = dataclasses.replace(one, clips=[run.clips[i % len(run.clips)]])
        children.append(subprocess.Popen([sys.executable, "-m", "rtseg.offline.bench_streams",
                                          json.dumps(dataclasses.asdict(clip_run))], stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True))
    results = []
    for child in children:
        out, err = child.communicate(timeout=1800)
        if child.returncode != 0:
            raise RuntimeError(f"benchmark child failed: {err.strip().splitlines()[-1:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    wall = time.monotonic() - started
    frames = sum(r["frames"] for r in results)
    return {"streams": run.streams, "processes": run.streams, "frames": frames, "process_wall_s": round(wall, 2),
            "process_fps": round(frames / wall, 3), "peak_rss_mb_sum": round(sum(r["peak_rss_mb"] for r in results), 1)}


def grid(clips: Sequence[str], counts: Sequence[int], detector: str, **settings: Any) -> list[dict[str, Any]]:
    """``measure`` for each stream count, each in a child process."""
    return [run_in_child(BenchRun(list(clips), n, detector=detector, **settings)) for n in counts]


if __name__ == "__main__":
    print(json.dumps(measure(BenchRun(**json.loads(sys.argv[1])))))
