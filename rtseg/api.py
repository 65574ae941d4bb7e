"""The Python API: what the CLI is a thin layer over, and what notebooks call.

- ``Segmenter``: load a model once, call it on RGB (or BGR) images → ``Detections``.
- ``draw``: annotate an image with a ``Detections`` record.
- ``process``: run the whole pipeline on any source into the chosen sinks.
- ``stream``: the same, yielding each finished ``Frame`` for use in a loop.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rtseg.core.config import Config, RenderConfig, StreamConfig, apply_overrides, load_config
from rtseg.core.errors import OutputError, UsageError
from rtseg.core.structures import Detections, Frame
from rtseg.detect.worker import Detector, MaskRCNNDetector
from rtseg.pipeline.engine import Engine, OpenedStream, Pipeline, StreamPlan
from rtseg.pipeline.plans import Outputs, RunPlan, detector_settings, plan_run
from rtseg.pipeline.summary import RunSummary, StreamSummary
from rtseg.render.renderer import Renderer
from rtseg.sinks.base import Sink
from rtseg.sinks.stats import StatsCollector
from rtseg.sinks.window import PreviewWindow

log = logging.getLogger(__name__)

# Engine, Pipeline, StreamPlan and OpenedStream run custom sources and sinks (soaks, tests); the rest is the everyday API.
__all__ = ["Config", "Detections", "Engine", "Frame", "OpenedStream", "Outputs", "Pipeline", "RunResult", "RunSummary",
           "Segmenter", "StreamConfig", "StreamPlan", "StreamSummary", "draw", "load_config", "process", "stream"]


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


@dataclass
class RunResult:
    """A finished run: its summary, objects per class over all streams, and each stream's own statistics."""

    summary: RunSummary
    stats: StatsCollector = field(default_factory=StatsCollector)
    stream_stats: dict[str, StatsCollector] = field(default_factory=dict)

    def save_stats(self, path: str | Path) -> None:
        """``--save-stats``: one stream's counts as before; with several, totals and each stream's counts and figures."""
        if len(self.summary.streams) <= 1:
            self.stats.save(path)
            return
        figures = {s.name: s.as_dict() for s in self.summary.streams}
        data = {**self.stats.as_dict(), "run": self.summary.as_dict(),
                "streams": {name: {**figures.get(name, {}), **stats.as_dict()} for name, stats in self.stream_stats.items()}}
        Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _source_list(source: Sources, config: Config) -> list[str | StreamConfig]:
    if isinstance(source, (str, StreamConfig)):
        return [source]
    sources = list(source)
    return sources or list(config.streams)


def _build(source: Sources, outputs: Outputs, config: Config, detector: Detector | None,
           extra_sinks: Sequence[Sink] = (), progress: bool = False,
           realtime: bool = False) -> tuple[Engine, RunPlan]:
    run = plan_run(_source_list(source, config), outputs, config, extra_sinks, realtime)
    if not run.plans:
        raise OutputError("nothing to do: every archive video is finished already (pass --overwrite to redo them)") \
            if run.skipped else UsageError("no source given")
    settings = detector_settings(config, [plan.config for plan in run.plans])
    engine = Engine(detector or (lambda: MaskRCNNDetector(settings)), config, run.plans, progress=progress)
    engine.summary.skipped = list(run.skipped)
    engine.start()  # opens the sources (a bad one is reported before the model loads), then loads the model
    title = run.plans[0].name if len(run.plans) == 1 else f"{len(run.plans)} streams"
    engine.display = PreviewWindow(f"rtseg - {title}") if outputs.show else None
    if not any((outputs.output, outputs.save_json, outputs.save_frames, outputs.save_crops, extra_sinks)) \
            and not any(s.output or s.save_json for s in config.streams) \
            and (engine.display is None or not engine.display.available):
        log.warning("no output: nothing is written or shown (pass --output, --save-json, ...)")
    return engine, run


def _result(summary: RunSummary, run: RunPlan) -> RunResult:
    return RunResult(summary, StatsCollector.merged(run.stats.values()), run.stats)


def process(source: Sources, outputs: Outputs | None = None, *, config: Config | None = None,
            detector: Detector | None = None, realtime: bool = False, progress: bool = False) -> RunResult:
    """Run the whole pipeline on ``source`` into ``outputs``; ``source`` may also be a list (one model, many streams).

    A source is a file, camera, stream URL, still images, an archive (a directory or
    glob of videos, one stream each) or a ``StreamConfig`` with its own outputs and
    settings; an empty list runs ``config.streams``. Blocks until every stream ends
    (live ones: until ``stop`` or Ctrl-C). ``realtime`` plays files at their own pace, as live sources.

    Errors in the inputs raise before any work; a failure while running is in ``result.summary.error``
    (the whole run) or in ``result.summary.streams`` (one stream among others).
    """
    outputs = outputs or Outputs()
    config = config or Config()
    engine, run = _build(source, outputs, config, detector, progress=progress, realtime=realtime)
    try:
        summary = engine.run()
    finally:
        if run.manifest is not None:
            run.manifest.close()
    result = _result(summary, run)
    if outputs.save_stats is not None:
        result.save_stats(outputs.save_stats)
    return result


class _HandOver:
    """A sink that hands finished frames to the caller's loop through a bounded queue."""

    def __init__(self, size: int) -> None:
        self.frames: queue.Queue = queue.Queue(maxsize=size)
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
           detector: Detector | None = None) -> Iterator[Frame]:
    """Run the pipeline in the background and yield every finished ``Frame`` (with detections and rendering).

    With several streams, frames of all of them arrive as they finish; ``frame.stream_id``
    says whose (``Frame.stream_id`` indexes the run's streams in the order given, archives expanded).
    Breaking out of the loop stops the run; a failure while running is raised here.
    """
    outputs = dataclasses.replace(outputs or Outputs(), show=False)
    config = config or Config()
    hand_over = _HandOver(config.pipeline.sink_queue_size)
    pipeline, run = _build(source, outputs, config, detector, extra_sinks=[hand_over])
    results: list[RunSummary] = []
    runner = threading.Thread(target=lambda: results.append(pipeline.run()), name="rtseg-stream", daemon=True)
    runner.start()
    try:
        while runner.is_alive() or not hand_over.frames.empty():
            try:
                yield hand_over.frames.get(timeout=0.1)
            except queue.Empty:
                continue
    finally:
        hand_over.abandoned.set()
        pipeline.stop()
        runner.join()
    if results and outputs.save_stats is not None:
        _result(results[0], run).save_stats(outputs.save_stats)
    if results and results[0].error is not None:
        raise results[0].error
