"""What scene analytics costs per frame: objects of person size walking over a 1280x720 frame with zones and lines.

The scene is synthetic and seeded: ``objects`` elliptical masks (people, 60-140
pixels wide, 120-320 tall) on random straight paths, each with a track id, and
``zones`` polygons and ``lines`` lines spread over the frame. The figure is the
time ``SceneAnalytics.update`` takes per frame (mask shares, the rules, events
and the frame's scene state), measured after a warm-up over ``frames`` frames.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtseg.analytics import Line, SceneAnalytics, Zone
from rtseg.core.structures import Detections

CLASSES = ("__background__", "person", "car")


@dataclass(frozen=True)
class AnalyticsCost:
    objects: int
    zones: int
    lines: int
    width: int
    height: int
    frames: int
    mean_ms: float
    p50_ms: float
    p95_ms: float
    events: int

    def line(self) -> str:
        return (f"{self.objects} objects, {self.zones} zones, {self.lines} lines at {self.width}x{self.height}: "
                f"mean {self.mean_ms:.3f} ms, p50 {self.p50_ms:.3f} ms, p95 {self.p95_ms:.3f} ms per frame "
                f"over {self.frames} frames ({self.events} events)")


def _scene(objects: int, frames: int, height: int, width: int, seed: int) -> list[Detections]:
    rng = np.random.default_rng(seed)
    sizes = rng.uniform([60, 120], [140, 320], (objects, 2))
    starts = rng.uniform([0, 0], [width, height], (objects, 2))
    speeds = rng.uniform(-12, 12, (objects, 2))
    out = []
    ys, xs = np.ogrid[0:height, 0:width]
    for f in range(frames):
        centres = (starts + speeds * f) % np.array([width, height])
        boxes, masks = [], []
        for (cx, cy), (w, h) in zip(centres, sizes):
            x0, y0 = max(0, int(cx - w / 2)), max(0, int(cy - h / 2))
            x1, y1 = min(width, int(cx + w / 2)), min(height, int(cy + h / 2))
            mask = np.zeros((height, width), bool)
            window = (slice(y0, y1), slice(x0, x1))
            mask[window] = ((xs[:, x0:x1] - cx) / (w / 2)) ** 2 + ((ys[y0:y1] - cy) / (h / 2)) ** 2 <= 1
            boxes.append([x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)])
            masks.append(mask)
        out.append(Detections(np.array(boxes, np.float32), np.full(objects, 0.9, np.float32),
                              np.ones(objects, np.int64), np.stack(masks), CLASSES, np.arange(1, objects + 1)))
    return out


def measure(objects: int = 20, zones: int = 3, lines: int = 2, height: int = 720, width: int = 1280,
            frames: int = 200, warm_up: int = 10, seed: int = 0) -> AnalyticsCost:
    """Time ``SceneAnalytics.update`` per frame on a synthetic scene (the detections are made beforehand)."""
    regions = [Zone(f"zone{i}", [(0.05 + 0.3 * i, 0.1), (0.3 + 0.3 * i, 0.1), (0.3 + 0.3 * i, 0.9),
                                 (0.05 + 0.3 * i, 0.9)]) for i in range(zones)]
    crossings = [Line(f"line{i}", [(0.0, (i + 1) / (lines + 1)), (1.0, (i + 1) / (lines + 1))]) for i in range(lines)]
    scene = SceneAnalytics(regions, crossings, stream="bench")
    detections = _scene(objects, frames + warm_up, height, width, seed)
    times, events = [], 0
    for f, d in enumerate(detections):
        started = time.perf_counter()
        found = scene.update(d, time=f / 25, frame=f, height=height, width=width)
        if f >= warm_up:
            times.append(time.perf_counter() - started)
            events += len(found)
    ms = np.array(times) * 1000
    return AnalyticsCost(objects, zones, lines, width, height, frames, float(ms.mean()), float(np.percentile(ms, 50)),
                         float(np.percentile(ms, 95)), events)


@dataclass(frozen=True)
class LiveLatency:
    analytics: bool
    frames: int
    dropped: int
    p50_ms: float
    p95_ms: float
    entered: int

    def line(self) -> str:
        return (f"RTSP camera {'with' if self.analytics else 'without'} a zone and a line: {self.frames} frames, "
                f"{self.dropped} dropped, latency p50 {self.p50_ms:.0f} ms, p95 {self.p95_ms:.0f} ms, "
                f"{self.entered} zone entries")


def live_latency(clip: Path, analytics: bool, frames: int = 150) -> LiveLatency:
    """Latency (captured -> written) of a real RTSP camera (Debian's GStreamer server on 127.0.0.1 serving ``clip``)
    through the whole pipeline with the stub square detector, with or without a zone and a line."""
    from rtseg.api import Outputs, process
    from rtseg.core.config import Config, apply_overrides
    from rtseg.offline.rtsp import RtspServer
    from rtseg.offline.stubs import SquareDetector

    regions = {"zones": [{"name": "door", "points": [[0.1, 0.1], [0.6, 0.1], [0.6, 0.9], [0.1, 0.9]]}],
               "lines": [{"name": "gate", "points": [[0.5, 0], [0.5, 1]]}]} if analytics else {}
    config = apply_overrides(Config(), {"analytics": regions, "pipeline": {"max_frames": frames},
                                        "output": {"show": False}}, "bench")
    with RtspServer(clip) as server:
        summary = process(server.url(), Outputs(), config=config, detector=SquareDetector()).summary
    tally = summary.streams[0].analytics
    entered = sum(sum(counts.values()) for counts in tally.entered.values()) if tally is not None else 0
    return LiveLatency(analytics, summary.frames_written, summary.frames_dropped,
                       summary.latency.percentile(50) * 1000, summary.latency.percentile(95) * 1000, entered)


@dataclass(frozen=True)
class PublishingRate:
    case: str
    frames: int
    fps: float
    figures: tuple[str, ...]

    def line(self) -> str:
        return f"{self.case}: {self.frames} frames at {self.fps:.1f} frames/s" + (
            f" ({'; '.join(self.figures)})" if self.figures else "")


def publishing_rates(clip: Path, frames: int = 300, model_seconds: float = 0.02) -> list[PublishingRate]:
    """Frames per second of a whole run (stub model taking ``model_seconds`` a frame, a zone and a line, an event
    every few frames) without MQTT, with a live Mosquitto on 127.0.0.1, and with that broker killed at a third of
    the run and restarted at two thirds: publishing must never slow the pipeline."""
    from rtseg.api import Outputs, PreparedRun, plan_run
    from rtseg.core.config import Config, apply_overrides
    from rtseg.offline.broker import Mosquitto, find_mosquitto
    from rtseg.offline.stubs import FrameTrigger, SquareDetector

    binary = find_mosquitto()
    if binary is None:
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
    regions = {"zones": [{"name": "door", "points": [[0.1, 0.1], [0.6, 0.1], [0.6, 0.9], [0.1, 0.9]]}],
               "lines": [{"name": "gate", "points": [[0.5, 0], [0.5, 1]]}], "occupancy_seconds": 0.2}
    rates = []
    with tempfile.TemporaryDirectory() as work:
        broker = Mosquitto(binary, Path(work) / "broker")
        broker.start()
        try:
            cases: list[tuple[str, str, dict[int, Callable[[], None]]]] = [
                ("no MQTT", "", {}), ("MQTT, broker up", broker.url, {}),
                ("MQTT, broker killed at 1/3 and restarted at 2/3", broker.url,
                 {frames // 3: broker.kill, 2 * frames // 3: broker.start})]
            for case, url, actions in cases:
                config = apply_overrides(Config(), {"analytics": regions, "events": {"mqtt": url},
                                                    "pipeline": {"max_frames": frames}, "output": {"show": False}},
                                         "bench")
                plan = plan_run([str(clip)], Outputs(), config)
                result = PreparedRun(plan, config, detector=SquareDetector(delay=model_seconds),
                                     extra_sinks=[FrameTrigger(actions)]).run()
                summary = result.summary
                rates.append(PublishingRate(case, summary.frames_written, summary.fps,
                                            tuple(summary.streams[0].publishing)))
        finally:
            broker.stop()
    return rates
