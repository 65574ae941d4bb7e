"""What a run did: per-stage timers and the ``RunSummary`` the CLI prints and the API returns."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from rtseg.core.errors import StageError


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

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def percentile(self, q: float) -> float:
        if not self.recent:
            return 0.0
        ordered = sorted(self.recent)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


@dataclass
class RunSummary:
    """What a run did, for the CLI's closing lines and for API callers."""

    frames_read: int = 0
    frames_inferred: int = 0
    frames_written: int = 0
    frames_dropped: int = 0  # live sources: frames replaced by newer ones before the model got to them
    decode_errors: int = 0
    reconnects: int = 0
    live: bool = False
    wall_seconds: float = 0.0
    stage_timers: dict[str, StageTimer] = field(default_factory=dict)
    latency: StageTimer = field(default_factory=StageTimer)  # captured -> written to the sinks and offered to the window
    error: StageError | None = None
    stop_reason: str | None = None  # 'interrupted' (Ctrl-C), 'terminated' (SIGTERM), 'window closed', 'stopped', ... or None

    @property
    def fps(self) -> float:
        return self.frames_written / self.wall_seconds if self.wall_seconds else 0.0

    def lines(self) -> list[str]:
        """Human-readable summary: counts, throughput, latency, mean, p50 and p95 time per frame and stage."""
        out = [
            f"frames: {self.frames_read} read, {self.frames_inferred} inferred, {self.frames_written} written"
            + (f", {self.frames_dropped} dropped (the model is slower than the source)" if self.live else "")
            + (f", {self.decode_errors} undecodable packets skipped" if self.decode_errors else ""),
            f"time: {self.wall_seconds:.1f} s, {self.fps:.2f} frames/s"
            + (f", {self.reconnects} reconnect(s)" if self.live else ""),
        ]
        if self.latency.count:
            out.append(f"latency (captured -> written): p50 {self.latency.percentile(50) * 1000:.0f} ms, "
                       f"p95 {self.latency.percentile(95) * 1000:.0f} ms, max {self.latency.maximum * 1000:.0f} ms")
        stages = ", ".join(f"{name} {t.mean * 1000:.1f} ms (p50 {t.percentile(50) * 1000:.1f}, "
                           f"p95 {t.percentile(95) * 1000:.1f})"
                           for name, t in self.stage_timers.items() if t.count)
        if stages:
            out.append(f"per frame: {stages}")
        return out
