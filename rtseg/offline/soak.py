"""Soaks: long runs through the whole pipeline that check what short tests cannot, that nothing grows.

- ``run_soak``: a synthetic file-like stream, a stub detector standing in for Mask R-CNN (this is about the
  plumbing, not the model) and the real tracker, MP4 and JSON Lines sinks. Reports RSS over the first and the
  last thousand frames, the threads the run left behind, and the largest queue sizes seen against their bounds.
- ``run_live_soak``: a live run against the simulated camera (``rtseg.offline.rtsp``) with a slow stub model.
  Reports each minute's latency and memory, frames that reached the model twice (must be none) and whether the
  recording's timestamps are monotonic.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# The pipeline itself, through the front door: offline tools never import rtseg.pipeline.
from rtseg.api import Engine, OpenedStream, Pipeline, RunSummary, StreamStart
from rtseg.core.config import Config, TrackingConfig
from rtseg.core.structures import Frame
from rtseg.offline.progress import Meter
from rtseg.offline.rtsp import RtspServer, loop_clip
from rtseg.offline.stubs import IndexRecordingDetector, SquareDetector, StampedSource
from rtseg.render.renderer import Renderer
from rtseg.sinks.base import Sink
from rtseg.sinks.data import JsonLinesSink
from rtseg.sinks.mp4 import Mp4Sink
from rtseg.sources.base import SourceInfo
from rtseg.sources.factory import open_source
from rtseg.track.tracker import Tracker

WIDTH, HEIGHT = 64, 48
RSS_GROWTH_LIMIT_MB = 50.0  # a soak whose memory grows more than this between its first and last 1000 frames fails


def rss_mb() -> float:
    """Resident memory of this process in MiB, from the kernel's own accounting."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class SyntheticStream:
    """An endless-looking file-like source: a square bouncing across a grey frame, 25 fps timestamps."""

    decode_errors = 0
    reconnects = 0
    reconnecting = False

    def __init__(self, frames: int) -> None:
        self.count = frames
        self.info = SourceInfo(name="synthetic", width=WIDTH, height=HEIGHT, time_base=Fraction(1, 25),
                               frame_rate=Fraction(25), frame_count=frames, has_audio=False, is_file=True)

    def frames(self) -> Iterator[Frame]:
        for index in range(self.count):
            image = np.full((HEIGHT, WIDTH, 3), 60, np.uint8)
            x = abs((index * 2) % (2 * (WIDTH - 12)) - (WIDTH - 12))
            image[10:22, x: x + 12] = 255
            yield Frame(index=index, image=image, pts=index, time_base=Fraction(1, 25), captured_at=time.monotonic())

    def stop(self) -> None:
        """Nothing waits inside ``frames``."""

    def close(self) -> None:
        """Nothing to release."""


class SlowSink:
    """A sink slower than the model, to show that back-pressure keeps memory bounded."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def write(self, frame: Frame) -> None:
        time.sleep(self.seconds)

    def close(self) -> None:
        """Nothing to finalise."""


@dataclass
class SoakReport:
    frames: int
    frames_written: int
    seconds: float
    rss_first_mb: float
    rss_last_mb: float
    threads_before: int
    threads_after: int
    threads_left: list[str] = field(default_factory=list)  # threads the run started that are still alive
    queue_max: dict[str, int] = field(default_factory=dict)
    queue_bounds: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    @property
    def rss_growth_mb(self) -> float:
        return self.rss_last_mb - self.rss_first_mb

    @property
    def ok(self) -> bool:
        """No error, memory flat, no thread left behind, every queue within its bound."""
        return (self.error is None and self.rss_growth_mb < RSS_GROWTH_LIMIT_MB and not self.threads_left
                and all(self.queue_max[n] <= self.queue_bounds[n] for n in self.queue_max))

    def lines(self) -> list[str]:
        return [
            f"frames {self.frames_written}/{self.frames} in {self.seconds:.1f} s "
            f"({self.frames_written / self.seconds:.0f} frames/s)",
            f"RSS first 1000 frames {self.rss_first_mb:.1f} MB, last 1000 {self.rss_last_mb:.1f} MB, "
            f"growth {self.rss_growth_mb:+.1f} MB",
            f"threads before {self.threads_before}, after {self.threads_after}, "
            f"left behind by the run: {self.threads_left or 'none'}",
            "queue max/bound: " + ", ".join(f"{n} {self.queue_max[n]}/{self.queue_bounds[n]}" for n in self.queue_max),
            "OK" if self.ok else f"FAILED {self.error or ''}",
        ]


def run_soak(frames: int, slow_sink: float = 0.0, directory: Path | None = None, streams: int = 1) -> SoakReport:
    """Run ``frames`` frames (split over ``streams`` streams sharing one model) and report memory, threads, queues."""
    with tempfile.TemporaryDirectory() as scratch:
        out_dir = directory or Path(scratch)
        config = Config()
        per_stream = [frames // streams + (1 if i < frames % streams else 0) for i in range(streams)]

        def start(index: int, count: int) -> StreamStart:
            name = "soak" if streams == 1 else f"soak{index}"

            def open_stream() -> OpenedStream:
                source = SyntheticStream(count)
                sinks: list[Sink] = [Mp4Sink(out_dir / f"{name}.mp4", config.output, frame_rate=source.info.frame_rate),
                         JsonLinesSink(out_dir / f"{name}.jsonl")]
                if slow_sink:
                    sinks.append(SlowSink(slow_sink))
                return OpenedStream(source, sinks, Tracker(TrackingConfig()), Renderer(config.render))

            return StreamStart(name, open_stream, config)

        threads_before = set(threading.enumerate())
        config.pipeline = dataclasses.replace(config.pipeline, max_open_files=streams)
        engine = Engine(SquareDetector(), config, [start(i, n) for i, n in enumerate(per_stream)])
        engine.start()
        queues = engine.queues()
        queue_max = {name: 0 for name in queues}
        rss_first: list[float] = []
        rss_last: list[float] = []
        done = threading.Event()

        def monitor() -> None:
            with Meter("frames", frames) as meter:
                while not done.is_set():
                    written = engine.frames_written()
                    meter.show(written)
                    for name, q in queues.items():
                        queue_max[name] = max(queue_max[name], q.qsize())
                    if 0 < written <= 1000:
                        rss_first.append(rss_mb())
                    elif written >= frames - 1000:
                        rss_last.append(rss_mb())
                    time.sleep(0.01)

        watcher = threading.Thread(target=monitor, daemon=True)
        watcher.start()
        started = time.monotonic()
        try:
            summary = engine.run()
            seconds = time.monotonic() - started
        finally:
            done.set()
            watcher.join()
        return SoakReport(
            frames=frames, frames_written=summary.frames_written, seconds=seconds,
            rss_first_mb=float(np.median(rss_first)) if rss_first else float("nan"),
            rss_last_mb=float(np.median(rss_last)) if rss_last else float("nan"),
            threads_before=len(threads_before), threads_after=threading.active_count(),
            threads_left=[t.name for t in threading.enumerate() if t not in threads_before],
            queue_max=queue_max, queue_bounds={name: q.maxsize for name, q in queues.items()},
            error=str(summary.error) if summary.error else None,
        )


class LatencySink:
    """Last sink of a live soak: each frame's latency from capture to here, collected until ``take``."""

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
        """Nothing to finalise."""


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


@dataclass
class MinuteRow:
    minute: int
    frames: int
    p50: float
    p95: float
    max: float
    rss_mb: float
    dropped: int
    reconnects: int

    def line(self) -> str:
        return (f"minute {self.minute:2d}: {self.frames:4d} frames, latency p50 {self.p50 * 1000:4.0f} ms"
                f" p95 {self.p95 * 1000:4.0f} ms max {self.max * 1000:4.0f} ms, RSS {self.rss_mb:6.1f} MiB,"
                f" dropped {self.dropped}, reconnects {self.reconnects}")


@dataclass
class LiveSoakReport:
    summary: RunSummary
    inferred_twice: int  # frames that reached the model more than once: must be none
    recording_times: list[float]  # timestamps of the recorded MP4, in seconds
    minutes: list[MinuteRow]

    @property
    def ok(self) -> bool:
        return self.summary.error is None and self.inferred_twice == 0

    def lines(self) -> list[str]:
        times = self.recording_times
        out = [*self.summary.lines(), f"frames inferred twice: {self.inferred_twice}",
               f"recording: {len(times)} frames over {times[-1] if times else 0.0:.1f} s, timestamps monotonic: "
               f"{all(b > a for a, b in zip(times, times[1:]))}"]
        if len(self.minutes) >= 2:
            first, last = self.minutes[0], self.minutes[-1]
            out.append(f"latency p95 first vs last minute: {first.p95 * 1000:.0f} ms vs {last.p95 * 1000:.0f} ms; "
                       f"RSS first vs last minute: {first.rss_mb:.1f} MiB vs {last.rss_mb:.1f} MiB")
        return out


def _seconds(frame: av.VideoFrame) -> float:
    """A decoded frame's timestamp in seconds (every frame of the recording has one)."""
    assert frame.pts is not None and frame.time_base is not None
    return float(frame.pts * frame.time_base)


def run_live_soak(clip: Path, minutes: float, model_seconds: float,
                  say: Callable[[str], None] = print) -> LiveSoakReport:
    """Serve ``clip`` looped over RTSP for ``minutes`` into a model of ``model_seconds`` per frame.

    ``say`` gets the opening line and one line per minute as the run goes.
    """
    config = Config()
    config.live = dataclasses.replace(config.live, reconnect_delay=0.2, reconnect_max_delay=2.0)
    with tempfile.TemporaryDirectory(prefix="rtseg-soak-") as tmp:
        looped = Path(tmp) / f"{clip.stem}-looped.mp4"
        duration = loop_clip(clip, looped, math.ceil(minutes * 60 / 10) + 2)
        recording = Path(tmp) / "recording.mp4"
        say(f"serving {looped.name} ({duration:.0f} s) over RTSP; model {model_seconds * 1000:.0f} ms/frame; "
            f"{minutes:g} min")
        with RtspServer(looped) as server:
            source = open_source(server.url(), config.live)
            detector = IndexRecordingDetector(model_seconds)
            latency = LatencySink()
            pipeline = Pipeline(StampedSource(source), detector, config, [Mp4Sink(recording, config.output), latency])
            rows: list[MinuteRow] = []
            finished = threading.Event()

            def report() -> None:
                for minute in range(1, math.ceil(minutes) + 1):
                    if finished.wait(min(60.0, minutes * 60 - (minute - 1) * 60)):
                        return
                    values = latency.take()
                    if values:
                        rows.append(MinuteRow(minute, len(values), statistics.median(values), p95(values),
                                              max(values), rss_mb(), pipeline.summary.frames_dropped,
                                              source.reconnects))
                        say(rows[-1].line())
                pipeline.stop()

            reporter = threading.Thread(target=report, daemon=True)
            reporter.start()
            try:
                summary = pipeline.run()
            finally:
                finished.set()
                reporter.join()
        with av.open(str(recording)) as container:
            times = [_seconds(f) for f in container.decode(video=0)]
    return LiveSoakReport(summary, len(detector.indices) - len(set(detector.indices)), times, rows)
