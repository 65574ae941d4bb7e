"""Soak test: a long live run against a real RTSP server with a slow stub model.

Checks what short tests cannot: that latency and memory stay flat over many
minutes of dropping frames. Every minute it prints the latency p50/p95/max of
the frames written in that minute, the process's resident memory, and the drop
and reconnect counts; at the end, how many frames reached the model twice
(must be zero) and whether the recording's timestamps are monotonic.

The server is the tests' GStreamer RTSP server (Debian's /usr/bin/python3, see
.ci/run) serving bikes.mp4 repeated end to end without re-encoding, so the
stream runs for the whole soak like a camera.

usage: python scripts/soak_live.py [--minutes 10] [--model-seconds 0.15]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import av

from rtseg.core.config import Config
from rtseg.core.structures import Frame
from rtseg.offline.rtsp import RtspServer, loop_clip
from rtseg.offline.stubs import IndexRecordingDetector, StampedSource
from rtseg.pipeline.orchestrator import Pipeline
from rtseg.sinks.mp4 import Mp4Sink
from rtseg.sources.factory import open_source

BIKES_CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "clips" / "bikes.mp4"


def rss_mib() -> float:
    """Resident memory of this process, from the kernel's own accounting."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class LatencySink:
    """Last sink of the run: each frame's latency from capture to here, bucketed per minute."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bucket: list[float] = []

    def write(self, frame: Frame) -> None:
        with self.lock:
            self.bucket.append(time.monotonic() - frame.captured_at)

    def take(self) -> list[float]:
        with self.lock:
            taken, self.bucket = self.bucket, []
        return taken

    def close(self) -> None:
        pass


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--model-seconds", type=float, default=0.15, help="stub model time per frame")
    args = parser.parse_args()

    config = Config()
    config.live = dataclasses.replace(config.live, reconnect_delay=0.2, reconnect_max_delay=2.0)
    with tempfile.TemporaryDirectory(prefix="rtseg-soak-") as tmp:
        clip = Path(tmp) / "bikes-looped.mp4"
        duration = loop_clip(BIKES_CLIP, clip, math.ceil(args.minutes * 60 / 10) + 2)
        recording = Path(tmp) / "recording.mp4"
        print(f"serving {clip.name} ({duration:.0f} s) over RTSP; model {args.model_seconds * 1000:.0f} ms/frame; "
              f"{args.minutes:g} min", flush=True)
        with RtspServer(clip) as server:
            source = open_source(server.url(), config.live)
            detector = IndexRecordingDetector(args.model_seconds)
            latency = LatencySink()
            pipeline = Pipeline(StampedSource(source), detector, config, [Mp4Sink(recording, config.output), latency])
            rows: list[tuple[int, float, float]] = []

            def report() -> None:
                for minute in range(1, math.ceil(args.minutes) + 1):
                    time.sleep(min(60.0, args.minutes * 60 - (minute - 1) * 60))
                    values, memory = latency.take(), rss_mib()
                    if values:
                        rows.append((minute, p95(values), memory))
                        print(f"minute {minute:2d}: {len(values):4d} frames, latency p50 {statistics.median(values) * 1000:4.0f} ms"
                              f" p95 {p95(values) * 1000:4.0f} ms max {max(values) * 1000:4.0f} ms, RSS {memory:6.1f} MiB,"
                              f" dropped {pipeline.summary.frames_dropped}, reconnects {source.reconnects}", flush=True)
                pipeline.stop()

            threading.Thread(target=report, daemon=True).start()
            summary = pipeline.run()
        twice = len(detector.indices) - len(set(detector.indices))
        with av.open(str(recording)) as container:
            times = [float(f.pts * f.time_base) for f in container.decode(video=0)]
    for line in summary.lines():
        print(line)
    print(f"frames inferred twice: {twice}")
    print(f"recording: {len(times)} frames over {times[-1]:.1f} s, timestamps monotonic: "
          f"{all(b > a for a, b in zip(times, times[1:]))}")
    if len(rows) >= 2:
        (_, first_p95, first_rss), (_, last_p95, last_rss) = rows[0], rows[-1]
        print(f"latency p95 first vs last minute: {first_p95 * 1000:.0f} ms vs {last_p95 * 1000:.0f} ms; "
              f"RSS first vs last minute: {first_rss:.1f} MiB vs {last_rss:.1f} MiB")
    return 0 if summary.error is None and twice == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
