"""The Python API: what the CLI is a thin layer over, and what notebooks call.

- ``Segmenter``: load a model once, call it on RGB (or BGR) images → ``Detections``.
- ``draw``: annotate an image with a ``Detections`` record.
- ``process``: run the whole pipeline on any source into the chosen sinks.
- ``stream``: the same, yielding each finished ``Frame`` for use in a loop.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rtseg.core.config import Config, ModelConfig, RenderConfig, apply_overrides
from rtseg.core.errors import OutputError
from rtseg.core.structures import Detections, Frame
from rtseg.detect.worker import Detector, MaskRCNNDetector
from rtseg.pipeline.orchestrator import Pipeline
from rtseg.pipeline.summary import RunSummary
from rtseg.render.renderer import Renderer
from rtseg.sinks.base import Sink, check_output_path
from rtseg.sinks.data import CropsSink, FramesSink, JsonLinesSink
from rtseg.sinks.mp4 import Mp4Sink
from rtseg.sinks.stats import StatsCollector
from rtseg.sinks.window import WindowDisplay
from rtseg.sources.base import VideoSource
from rtseg.sources.factory import open_source, parse_source
from rtseg.sources.files import ImageSource, image_paths
from rtseg.track.tracker import Tracker

log = logging.getLogger(__name__)


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


@dataclass
class Outputs:
    """Where a run's results go; every field is optional."""

    output: str | Path | None = None  # an MP4 for videos, a directory for still images
    save_json: str | Path | None = None
    save_frames: str | Path | None = None
    save_crops: str | Path | None = None
    save_stats: str | Path | None = None
    show: bool = False


@dataclass
class RunResult:
    summary: RunSummary
    stats: StatsCollector = field(default_factory=StatsCollector)


def _prepare_sinks(source: VideoSource, source_name: str, outputs: Outputs, config: Config) -> list[Sink]:
    """Check every output path before any work, then open the sinks."""
    overwrite = config.output.overwrite
    images = isinstance(source, ImageSource)
    if outputs.output is not None and images:
        _check_image_directory(Path(outputs.output), source.paths, overwrite)
    for path in (outputs.save_json, outputs.save_stats):
        if path is not None:
            check_output_path(path, source_name, overwrite, suffixes=(".json", ".jsonl"))
    for directory in (outputs.save_frames, outputs.save_crops):
        if directory is not None and Path(directory).exists() and not Path(directory).is_dir():
            raise OutputError(f"not a directory: {directory}")
    sinks: list[Sink] = []
    if outputs.output is not None:
        sinks.append(FramesSink(outputs.output) if images else
                     Mp4Sink(outputs.output, config.output, audio_source=source_name if source.info.is_file else None,
                             frame_rate=source.info.frame_rate))
    if outputs.save_json is not None:
        sinks.append(JsonLinesSink(outputs.save_json))
    if outputs.save_frames is not None:
        sinks.append(FramesSink(outputs.save_frames, every=config.output.frames_every))
    if outputs.save_crops is not None:
        sinks.append(CropsSink(outputs.save_crops))
    return sinks


def _check_image_directory(directory: Path, inputs: Sequence[Path], overwrite: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"for still images --output must be a directory: {directory}")
    if not directory.parent.is_dir():
        raise OutputError(f"output directory's parent does not exist: {directory.parent}")
    if any(p.parent.resolve() == directory.resolve() for p in inputs):
        raise OutputError(f"output directory {directory} holds the input images; choose another")
    clashes = [p.name for p in inputs if (directory / p.name).exists()]
    if clashes and not overwrite:
        raise OutputError(f"{directory / clashes[0]} exists; pass --overwrite to replace it")


def _detector_settings(config: Config) -> ModelConfig:
    """The model keeps detections down to ``tracking.low_score`` when tracking is on (see ``Pipeline._track``)."""
    if not config.tracking.enabled or config.tracking.low_score >= config.model.score_threshold:
        return config.model
    return dataclasses.replace(config.model, score_threshold=config.tracking.low_score)


def _build(source: str, outputs: Outputs, config: Config, detector: Detector | None,
           extra_sinks: Sequence[Sink] = (), progress: bool = False,
           realtime: bool = False) -> tuple[Pipeline, StatsCollector]:
    spec = parse_source(source)
    stills = spec.kind == "file" and image_paths(spec.target) is not None
    if outputs.output is not None and not stills:  # checked before a camera or stream takes seconds to open
        check_output_path(outputs.output, spec.target if spec.kind == "file" else None, config.output.overwrite)
    opened = open_source(source, config.live, realtime=realtime)
    try:
        stats = StatsCollector()
        sinks = _prepare_sinks(opened, source, outputs, config)
        try:
            detector = detector or MaskRCNNDetector(_detector_settings(config))
            title = Path(spec.target).name if spec.kind == "file" else spec.name
            display = WindowDisplay(f"rtseg - {title}") if outputs.show else None
            if not sinks and not extra_sinks and (display is None or not display.available):
                log.warning("no output: nothing is written or shown (pass --output, --save-json, ...)")
        except BaseException:
            for sink in sinks:
                sink.close()
            raise
        # Still images are unrelated to each other: each is segmented on its own, untracked.
        tracker = Tracker(config.tracking) if config.tracking.enabled and not isinstance(opened, ImageSource) else None
        pipeline = Pipeline(opened, detector, config, [*sinks, stats, *extra_sinks], display, progress=progress,
                            tracker=tracker)
    except BaseException:
        opened.close()
        raise
    return pipeline, stats


def process(source: str, outputs: Outputs | None = None, *, config: Config | None = None,
            detector: Detector | None = None, realtime: bool = False, progress: bool = False) -> RunResult:
    """Run the whole pipeline on ``source`` (file, camera, stream URL or still images) into ``outputs``.

    Blocks until the source ends (or, for live sources, until ``stop`` or Ctrl-C).
    ``realtime`` plays a file at its own pace, as a live source.

    Errors in the inputs raise before any work; a failure while running is in ``result.summary.error``.
    """
    outputs = outputs or Outputs()
    config = config or Config()
    pipeline, stats = _build(source, outputs, config, detector, progress=progress, realtime=realtime)
    summary = pipeline.run()
    if outputs.save_stats is not None:
        stats.save(outputs.save_stats)
    return RunResult(summary, stats)


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


def stream(source: str, outputs: Outputs | None = None, *, config: Config | None = None,
           detector: Detector | None = None) -> Iterator[Frame]:
    """Run the pipeline in the background and yield every finished ``Frame`` (with detections and rendering).

    Breaking out of the loop stops the run; a failure while running is raised here.
    """
    outputs = dataclasses.replace(outputs or Outputs(), show=False)
    config = config or Config()
    hand_over = _HandOver(config.pipeline.sink_queue_size)
    pipeline, stats = _build(source, outputs, config, detector, extra_sinks=[hand_over])
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
    if outputs.save_stats is not None:
        stats.save(outputs.save_stats)
    if results and results[0].error is not None:
        raise results[0].error
