"""The Python API: what the CLI is a thin layer over, and what notebooks call.

- ``Segmenter``: load a model once, call it on RGB (or BGR) images → ``Detections``.
- ``draw``: annotate an image with a ``Detections`` record.
- ``process``: run the whole pipeline on any source into the chosen sinks.
- ``stream``: the same, yielding each finished ``Frame`` for use in a loop.
- ``Pipeline``: the single-stream handle over a ``VideoSource`` and sinks of your own.

Both ``process`` and ``stream`` plan with ``rtseg.pipeline.planner.plan_run`` and
run a ``PreparedRun``, as every other front door does.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rtseg.core.config import Config, ModelConfig, RenderConfig, StreamConfig, apply_overrides, load_config
from rtseg.core.errors import NothingToDo, UsageError
from rtseg.core.structures import Detections, Frame
from rtseg.detect.base import Detector
from rtseg.detect.maskrcnn import MaskRCNNDetector
from rtseg.pipeline.engine import Engine, OpenedStream, Pipeline, StreamStart
from rtseg.pipeline.factory import stream_start
from rtseg.pipeline.planner import Outputs, RunPlan, StreamPlan, plan_run
from rtseg.pipeline.summary import RunSummary, StreamSummary
from rtseg.render.renderer import Renderer
from rtseg.render.window import PreviewWindow
from rtseg.sinks.archive import Manifest, nothing_to_do
from rtseg.sinks.base import Sink
from rtseg.sinks.stats import StatsCollector

log = logging.getLogger(__name__)

# Pipeline runs your own source into your own sinks; Engine, StreamStart and OpenedStream run several such streams
# (soaks, tests); plan_run, PreparedRun, RunPlan and StreamPlan are the planner every front door goes through.
__all__ = ["Config", "Detections", "Engine", "Frame", "OpenedStream", "Outputs", "Pipeline", "PreparedRun",
           "RunPlan", "RunResult", "RunSummary", "Segmenter", "StreamConfig", "StreamPlan", "StreamStart",
           "StreamSummary", "draw", "load_config", "plan_run", "process", "stream"]


class Segmenter:
    """A Mask R-CNN loaded once and applied to single images.

    >>> segmenter = Segmenter(weights="none", device="cpu", size=128)   # doctest: +SKIP
    >>> detections = segmenter(image)            # image: (H, W, 3) uint8 RGB   # doctest: +SKIP
    """

    def __init__(self, *, config: Config | None = None, **model_settings: Any) -> None:
        """``model_settings`` are ``model`` section keys (weights, device, precision, score_threshold, classes, size, ...)."""
        self.config = apply_overrides(config or Config(), {"model": model_settings}, "Segmenter") \
            if model_settings else (config or Config())
        self.detector = MaskRCNNDetector(self.config.model)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.detector.class_names

    def __call__(self, image: np.ndarray, *, bgr: bool = False) -> Detections:
        """Detections for one (H, W, 3) uint8 image, RGB unless ``bgr=True`` (as OpenCV reads them)."""
        _check_image(image)
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if bgr else np.ascontiguousarray(image)
        return self.detector.detect([rgb])[0]


def draw(image: np.ndarray, detections: Detections, config: RenderConfig | None = None, *, bgr: bool = False) -> np.ndarray:
    """A copy of ``image`` with masks, outlines, boxes and labels drawn, in the image's own channel order."""
    _check_image(image)
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if bgr else image
    out = Renderer(config or RenderConfig()).draw(rgb, detections)
    return cv2.cvtColor(out, cv2.COLOR_RGB2BGR) if bgr else out


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {getattr(image, 'shape', type(image))} "
                         f"{getattr(image, 'dtype', '')}")


Sources = str | StreamConfig | Sequence[str | StreamConfig]
DetectorBuilder = Callable[[ModelConfig], Detector]  # builds the run's detector from the planned model settings


@dataclass
class RunResult:
    """A finished run: its summary, objects per class over all streams, and each stream's own statistics."""

    summary: RunSummary
    stats: StatsCollector = field(default_factory=StatsCollector)
    stream_stats: dict[str, StatsCollector] = field(default_factory=dict)

    def save_stats(self, path: str | Path) -> None:
        """``--save-stats``: one stream's counts (and its zones' and lines' totals); with several, totals and each
        stream's counts and figures."""
        if len(self.summary.streams) <= 1:
            analytics = self.summary.streams[0].analytics if self.summary.streams else None
            data = {**self.stats.as_dict(), **({"analytics": analytics.as_dict()} if analytics is not None else {})}
            Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
            return
        figures = {s.name: s.as_dict() for s in self.summary.streams}
        data = {**self.stats.as_dict(), "run": self.summary.as_dict(),
                "streams": {name: {**figures.get(name, {}), **stats.as_dict()} for name, stats in self.stream_stats.items()}}
        Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def source_list(source: Sources, config: Config) -> list[str | StreamConfig]:
    """What the user named as a list; an empty one means the config's ``streams:``."""
    if isinstance(source, (str, StreamConfig)):
        return [source]
    sources = list(source)
    return sources or list(config.streams)


class PreparedRun:
    """A planned run: ``start()`` opens its streams and loads its model, ``run()`` runs it (starting it first if
    need be), ``stop()`` ends it from any thread, as Ctrl-C does.

    Every front door runs this way: ``process`` and ``stream`` (so the CLI and the
    page), and the cluster's workers, each over the planner's ``RunPlan``.
    """

    def __init__(self, plan: RunPlan, config: Config, *, detector: Detector | None = None,
                 build_detector: DetectorBuilder | None = None, show: bool = False, extra_sinks: Sequence[Sink] = (),
                 progress: bool = False, attempt: int = 1,
                 on_finish: Callable[[StreamSummary], None] | None = None) -> None:
        """``detector``, or ``build_detector`` called with the planned model settings (default: Mask R-CNN);
        ``attempt`` numbers the staging folders of archive videos (a cluster's retries);
        ``on_finish`` is called with each stream's summary as it ends."""
        if not plan.streams:
            raise NothingToDo(nothing_to_do(len(plan.skipped))) if plan.skipped else UsageError("no source given")
        self.plan = plan
        self.manifest = Manifest(plan.manifest) if plan.manifest is not None else None
        self.stats = {stream.name: StatsCollector() for stream in plan.streams}
        starts = [stream_start(stream, [self.stats[stream.name], *extra_sinks], manifest=self.manifest,
                               attempt=attempt, on_finish=on_finish) for stream in plan.streams]
        make = build_detector or MaskRCNNDetector
        self.engine = Engine(detector, config, starts, progress=progress,
                             load_detector=None if detector is not None else lambda: make(plan.detector))
        self.engine.summary.skipped = list(plan.skipped)
        self._show = show
        self._extra_sinks = bool(extra_sinks)
        self._started = False

    def start(self) -> None:
        """Open the sources (a bad one is reported before the model takes its seconds to load), then load the model."""
        self._started = True
        try:
            self.engine.start()
        except BaseException:
            self._close()
            raise
        plan = self.plan
        title = plan.streams[0].name if len(plan.streams) == 1 else f"{len(plan.streams)} streams"
        self.engine.display = PreviewWindow(f"rtseg - {title}") if self._show else None
        if not self._extra_sinks and not any(s.outputs.any_written() for s in plan.streams) \
                and (self.engine.display is None or not self.engine.display.available):
            log.warning("no output: nothing is written or shown (pass --output, --save-json, ...)")

    def run(self) -> RunResult:
        """Blocks until every stream has ended."""
        if not self._started:
            self.start()
        try:
            summary = self.engine.run()
        finally:
            self._close()
        return RunResult(summary, StatsCollector.merged(self.stats.values()), self.stats)

    def stop(self) -> None:
        self.engine.stop()

    def _close(self) -> None:
        if self.manifest is not None:
            self.manifest.close()


def process(source: Sources, outputs: Outputs | None = None, *, config: Config | None = None,
            detector: Detector | None = None, build_detector: DetectorBuilder | None = None,
            realtime: bool = False, progress: bool = False) -> RunResult:
    """Run the whole pipeline on ``source`` into ``outputs``; ``source`` may also be a list (one model, many streams).

    A source is a file, camera, stream URL, still images, an archive (a directory or
    glob of videos, one stream each) or a ``StreamConfig`` with its own outputs and
    settings; an empty list runs ``config.streams``. Blocks until every stream ends
    (live ones: until ``stop`` or Ctrl-C). ``realtime`` plays files at their own pace, as live sources.
    ``build_detector`` builds the detector from the planned model settings (default: Mask R-CNN).

    Errors in the inputs raise before any work; a failure while running is in ``result.summary.error``
    (the whole run) or in ``result.summary.streams`` (one stream among others).
    """
    outputs = outputs or Outputs()
    config = config or Config()
    plan = plan_run(source_list(source, config), outputs, config, realtime=realtime)
    result = PreparedRun(plan, config, detector=detector, build_detector=build_detector, show=outputs.show,
                         progress=progress).run()
    if outputs.save_stats is not None:
        result.save_stats(outputs.save_stats)
    return result


class _HandOver:
    """A sink that hands finished frames to the caller's loop through a bounded queue."""

    def __init__(self, size: int) -> None:
        self.frames: queue.Queue[Frame] = queue.Queue(maxsize=size)
        self.abandoned = threading.Event()

    def write(self, frame: Frame) -> None:
        while not self.abandoned.is_set():
            try:
                self.frames.put(frame, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """The caller learns of the end from the pipeline thread finishing."""


def stream(source: Sources, outputs: Outputs | None = None, *, config: Config | None = None,
           detector: Detector | None = None, build_detector: DetectorBuilder | None = None
           ) -> Generator[Frame, None, None]:
    """Run the pipeline in the background and yield every finished ``Frame`` (with detections and rendering).

    With several streams, frames of all of them arrive as they finish; ``frame.stream_id``
    says whose (``Frame.stream_id`` indexes the run's streams in the order given, archives expanded).
    Breaking out of the loop stops the run; a failure while running is raised here.
    """
    outputs = dataclasses.replace(outputs or Outputs(), show=False)
    config = config or Config()
    hand_over = _HandOver(config.pipeline.sink_queue_size)
    plan = plan_run(source_list(source, config), outputs, config)
    prepared = PreparedRun(plan, config, detector=detector, build_detector=build_detector, extra_sinks=[hand_over])
    prepared.start()  # a source that cannot be opened raises here, before the first frame is asked for
    results: list[RunResult] = []
    runner = threading.Thread(target=lambda: results.append(prepared.run()), name="rtseg-stream", daemon=True)
    runner.start()
    try:
        while runner.is_alive() or not hand_over.frames.empty():
            try:
                yield hand_over.frames.get(timeout=0.1)
            except queue.Empty:
                continue
    finally:
        hand_over.abandoned.set()
        prepared.stop()
        runner.join()
    if results and outputs.save_stats is not None:
        results[0].save_stats(outputs.save_stats)
    if results and results[0].summary.error is not None:
        raise results[0].summary.error
