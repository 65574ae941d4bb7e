"""Soak test: a long synthetic stream through the whole pipeline, watching memory, threads and queues.

A stub detector stands in for Mask R-CNN (this is about the plumbing, not the
model), the real renderer, tracker, MP4 and JSON Lines sinks do their work.
Reports RSS over the first and the last thousand frames, the thread count before
and after, and the largest queue sizes seen against their bounds.

    python scripts/soak.py                       # 20,000 frames
    python scripts/soak.py --frames 2000 --slow-sink 0.004   # an encoder slower than the model
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rtseg.core.config import Config, TrackingConfig
from rtseg.core.structures import Detections, Frame
from rtseg.pipeline.engine import Pipeline
from rtseg.sinks.data import JsonLinesSink
from rtseg.sinks.mp4 import Mp4Sink
from rtseg.sources.base import SourceInfo
from rtseg.track.tracker import Tracker

WIDTH, HEIGHT = 64, 48


class SyntheticStream:
    """An endless-looking file-like source: a square bouncing across a grey frame, 25 fps timestamps."""

    decode_errors = 0
    reconnects = 0

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


class BrightSquareDetector:
    """Finds the bright square by thresholding, as a perfect model would."""

    class_names = ("__background__", "square")

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        out = []
        for image in images:
            mask = image[..., 0] > 180
            ys, xs = np.nonzero(mask)
            out.append(Detections(boxes=np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32),
                                  scores=np.array([0.9], np.float32), class_ids=np.array([1]), masks=mask[None],
                                  class_names=self.class_names))
        return out


class SlowSink:
    """A sink slower than the model, to show that back-pressure keeps memory bounded."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def write(self, frame: Frame) -> None:
        time.sleep(self.seconds)

    def close(self) -> None:
        """Nothing to finalise."""


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


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


def run_soak(frames: int, slow_sink: float = 0.0, directory: Path | None = None) -> SoakReport:
    """Run ``frames`` frames through the pipeline and report memory, threads and queue sizes."""
    with tempfile.TemporaryDirectory() as scratch:
        out_dir = directory or Path(scratch)
        config = Config()
        source = SyntheticStream(frames)
        sinks = [Mp4Sink(out_dir / "soak.mp4", config.output, frame_rate=source.info.frame_rate),
                 JsonLinesSink(out_dir / "soak.jsonl")]
        if slow_sink:
            sinks.append(SlowSink(slow_sink))
        threads_before = set(threading.enumerate())
        pipeline = Pipeline(source, BrightSquareDetector(), config, sinks, tracker=Tracker(TrackingConfig()))
        queues = {"capture": pipeline._captured, "render": pipeline._inferred, "sinks": pipeline._rendered}
        queue_max = {name: 0 for name in queues}
        rss_first: list[float] = []
        rss_last: list[float] = []
        done = threading.Event()

        def monitor() -> None:
            while not done.is_set():
                written = pipeline.summary.frames_written
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
        summary = pipeline.run()
        seconds = time.monotonic() - started
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--slow-sink", type=float, default=0.0, metavar="SECONDS",
                        help="add a sink that takes this long per frame (slower than the model)")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args()
    report = run_soak(args.frames, args.slow_sink)
    print(f"frames {report.frames_written}/{report.frames} in {report.seconds:.1f} s "
          f"({report.frames_written / report.seconds:.0f} frames/s)")
    print(f"RSS first 1000 frames {report.rss_first_mb:.1f} MB, last 1000 {report.rss_last_mb:.1f} MB, "
          f"growth {report.rss_growth_mb:+.1f} MB")
    print(f"threads before {report.threads_before}, after {report.threads_after}, "
          f"left behind by the run: {report.threads_left or 'none'}")
    print("queue max/bound: " + ", ".join(f"{n} {report.queue_max[n]}/{report.queue_bounds[n]}" for n in report.queue_max))
    if args.json:
        args.json.write_text(json.dumps({**asdict(report), "rss_growth_mb": report.rss_growth_mb}, indent=2) + "\n")
    ok = (report.error is None and report.rss_growth_mb < 50 and not report.threads_left
          and all(report.queue_max[n] <= report.queue_bounds[n] for n in report.queue_max))
    print("OK" if ok else f"FAILED {report.error or ''}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
