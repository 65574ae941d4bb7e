"""What a run did: per-stage timers, one ``StreamSummary`` per stream and the ``RunSummary`` over all of them."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rtseg.analytics.scene import Tally
from rtseg.core.errors import RtsegError
from rtseg.core.redaction import mask_credentials


class StageTimer:
    """Time spent per frame in one stage: running mean plus a bounded window for percentiles."""

    def __init__(self, window: int = 4096) -> None:
        self.total = 0.0
        self.count = 0
        self.maximum = 0.0
        self.recent: deque[float] = deque(maxlen=window)

    def add(self, seconds: float, frames: int = 1) -> None:
        """Record ``seconds`` spent on ``frames`` frames at once (a batch) as that many equal shares."""
        share = seconds / frames
        self.total += seconds
        self.count += frames
        self.maximum = max(self.maximum, share)
        self.recent.extend([share] * frames)

    def merge(self, other: StageTimer) -> None:
        """Fold another timer's figures into this one (per-stream timers into the run's)."""
        self.total += other.total
        self.count += other.count
        self.maximum = max(self.maximum, other.maximum)
        self.recent.extend(other.recent)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def percentile(self, q: float) -> float:
        if not self.recent:
            return 0.0
        ordered = sorted(self.recent)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


@dataclass
class StreamSummary:
    """What one stream did; ``status`` is 'done', 'failed', 'stopped' or, while running, 'running'/'reconnecting'."""

    stream_id: int
    name: str
    live: bool = False
    frames_read: int = 0
    frames_inferred: int = 0
    frames_written: int = 0
    frames_dropped: int = 0  # live sources: frames replaced by newer ones before the model got to them
    decode_errors: int = 0
    reconnects: int = 0
    status: str = "running"
    cut: bool = False  # pipeline.max_frames ended a file before its end: done as asked, but not the whole video
    error: RtsegError | None = None
    output: str | None = None  # the main output file, for manifests
    wall_seconds: float = 0.0
    latency: StageTimer = field(default_factory=StageTimer)  # captured -> written to the sinks and offered to the window
    timers: dict[str, StageTimer] = field(default_factory=dict)
    analytics: Tally | None = None  # the stream's zone and line totals, when it has zones or lines
    publishing: list[str] = field(default_factory=list)  # each event publisher's figures, one line each

    @property
    def fps(self) -> float:
        return self.frames_written / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def shown_status(self) -> str:
        """The status as people read it: a file that --max-frames ended early is 'cut', as its manifest line says."""
        return "cut by --max-frames" if self.status == "done" and self.cut and not self.live else self.status

    def line(self) -> str:
        """One line for the closing summary of a multi-stream run."""
        text = (f"{self.name}: {self.shown_status}, {self.frames_read} read, {self.frames_inferred} inferred, "
                f"{self.frames_written} written")
        if self.live:
            text += f", {self.frames_dropped} dropped, {self.reconnects} reconnect(s)"
        if self.decode_errors:
            text += f", {self.decode_errors} undecodable packets skipped"
        text += f", {self.fps:.2f} frames/s"
        if self.latency.count:
            text += f", latency p50 {_ms(self.latency.percentile(50))} p95 {_ms(self.latency.percentile(95))}"
        if self.error is not None:
            text += f" ({self.error})"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "stream": self.name, "status": self.status, "live": self.live, "frames_read": self.frames_read,
            "frames_inferred": self.frames_inferred, "frames_written": self.frames_written,
            "frames_dropped": self.frames_dropped, "decode_errors": self.decode_errors, "reconnects": self.reconnects,
            "fps": round(self.fps, 3), "latency_p50_ms": round(self.latency.percentile(50) * 1000, 1),
            "latency_p95_ms": round(self.latency.percentile(95) * 1000, 1),
            "error": None if self.error is None else mask_credentials(str(self.error)),
            **({"analytics": self.analytics.as_dict()} if self.analytics is not None else {}),
        }


@dataclass
class RunSummary:
    """What a run did, over all its streams, for the CLI's closing lines and for API callers.

    The frame counts, latency and timers are totals over the streams; ``streams``
    holds each stream's own. ``error`` is the failure that ended the whole run (the
    shared model, or every stream failing); a failure of one stream among others is
    in its ``StreamSummary`` only.
    """

    frames_read: int = 0
    frames_inferred: int = 0
    frames_written: int = 0
    frames_dropped: int = 0
    decode_errors: int = 0
    reconnects: int = 0
    live: bool = False
    wall_seconds: float = 0.0
    stage_timers: dict[str, StageTimer] = field(default_factory=dict)
    latency: StageTimer = field(default_factory=StageTimer)
    error: RtsegError | None = None
    stop_reason: str | None = None  # 'interrupted' (Ctrl-C), 'terminated' (SIGTERM), 'window closed', 'stopped', ... or None
    streams: list[StreamSummary] = field(default_factory=list)
    model_calls: int = 0
    model_busy_seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)  # archive inputs already finished by an earlier run
    precision_note: str | None = None  # which precision the model ran in, and why (detectors that say so)

    @property
    def fps(self) -> float:
        return self.frames_written / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def batch_fill(self) -> float:
        """Mean frames per model call."""
        return self.frames_inferred / self.model_calls if self.model_calls else 0.0

    @property
    def model_busy_share(self) -> float:
        return self.model_busy_seconds / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def failed_streams(self) -> list[StreamSummary]:
        return [s for s in self.streams if s.status == "failed"]

    def gather(self, streams: list[StreamSummary]) -> None:
        """Totals from the per-stream figures."""
        self.streams = streams
        self.frames_read = sum(s.frames_read for s in streams)
        self.frames_inferred = sum(s.frames_inferred for s in streams)
        self.frames_written = sum(s.frames_written for s in streams)
        self.frames_dropped = sum(s.frames_dropped for s in streams)
        self.decode_errors = sum(s.decode_errors for s in streams)
        self.reconnects = sum(s.reconnects for s in streams)
        self.live = any(s.live for s in streams)
        self.latency = StageTimer()
        for stream in streams:
            self.latency.merge(stream.latency)
            for name, timer in stream.timers.items():
                self.stage_timers.setdefault(name, StageTimer()).merge(timer)

    def lines(self) -> list[str]:
        """Human-readable summary: counts, throughput, latency, mean, p50 and p95 time per frame and stage."""
        out = [f"stream {s.line()}" for s in self.streams] if len(self.streams) > 1 else []
        if self.skipped:
            out.append(f"skipped {len(self.skipped)} input(s) finished by an earlier run")
        out += [
            f"frames: {self.frames_read} read, {self.frames_inferred} inferred, {self.frames_written} written"
            + (" (cut by --max-frames before the end of the file)" if len(self.streams) == 1
               and self.streams[0].shown_status != self.streams[0].status else "")
            + (f", {self.frames_dropped} dropped (the model is slower than the source)" if self.live else "")
            + (f", {self.decode_errors} undecodable packets skipped" if self.decode_errors else ""),
            f"time: {self.wall_seconds:.1f} s, {self.fps:.2f} frames/s"
            + (f", {self.reconnects} reconnect(s)" if self.live else ""),
        ]
        if self.latency.count:
            out.append(f"latency (captured -> written): p50 {_ms(self.latency.percentile(50))}, "
                       f"p95 {_ms(self.latency.percentile(95))}, max {_ms(self.latency.maximum)}")
        if self.model_calls:
            out.append(f"model: {self.model_calls} calls, {self.batch_fill:.2f} frames per call, "
                       f"busy {self.model_busy_share:.0%} of the run"
                       + (f"; {self.precision_note}" if self.precision_note else ""))
        stages = ", ".join(f"{name} {t.mean * 1000:.1f} ms (p50 {t.percentile(50) * 1000:.1f}, "
                           f"p95 {t.percentile(95) * 1000:.1f})"
                           for name, t in self.stage_timers.items() if t.count)
        if stages:
            out.append(f"per frame: {stages}")
        several = len(self.streams) > 1
        for stream in self.streams:
            prefix = f"{stream.name}: " if several else ""
            if stream.analytics is not None:
                out += [prefix + line for line in stream.analytics.lines()]
            out += [prefix + "events " + line for line in stream.publishing]
        failed = self.failed_streams
        if failed and len(self.streams) > 1:
            out.append(f"{len(failed)} of {len(self.streams)} streams failed: " + ", ".join(s.name for s in failed))
        return out

    def as_dict(self) -> dict[str, Any]:
        """The run's figures as JSON-ready data (``--save-stats``)."""
        return {
            "frames_read": self.frames_read, "frames_inferred": self.frames_inferred,
            "frames_written": self.frames_written, "frames_dropped": self.frames_dropped,
            "wall_seconds": round(self.wall_seconds, 3), "fps": round(self.fps, 3),
            "model_calls": self.model_calls, "batch_fill": round(self.batch_fill, 3),
            "model_busy_share": round(self.model_busy_share, 3),
            "streams": [s.as_dict() for s in self.streams],
        }
