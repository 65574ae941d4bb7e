"""The stream factory: opens what a ``StreamPlan`` names (source, sinks, tracker, renderer) when the engine asks.

The planner decided everything that can be decided without opening anything;
this module does the opening, and the finishing: an archive video's staged
outputs are committed to their final names when its stream is done, and its
line is appended to the manifest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from rtseg.analytics.scene import SceneAnalytics, regions
from rtseg.core.errors import OutputError
from rtseg.core.redaction import mask_credentials
from rtseg.pipeline.engine import OpenedStream, StreamStart
from rtseg.pipeline.planner import Outputs, StreamPlan
from rtseg.pipeline.summary import StreamSummary
from rtseg.render.renderer import Renderer
from rtseg.sinks.archive import Manifest, StagedOutput
from rtseg.sinks.base import Sink
from rtseg.sinks.data import CropsSink, FramesSink, JsonLinesSink
from rtseg.sinks.events import EventsSink, SnapshotsSink
from rtseg.sinks.heatmap import HeatmapSink
from rtseg.sinks.mp4 import Mp4Sink
from rtseg.sinks.publish import Publisher
from rtseg.sinks.publishing import open_publishers
from rtseg.sources.base import VideoSource
from rtseg.sources.factory import open_source
from rtseg.sources.files import ImageSource
from rtseg.track.tracker import Tracker

log = logging.getLogger(__name__)


def stream_start(plan: StreamPlan, sinks: Sequence[Sink] = (), *, manifest: Manifest | None = None,
                 attempt: int = 1, on_finish: Callable[[StreamSummary], None] | None = None) -> StreamStart:
    """How the engine starts ``plan``'s stream: ``sinks`` are added to those its outputs name (statistics, a
    caller's hand-over); ``attempt`` numbers the staging folder of an archive video (cluster retries)."""
    config = plan.config
    written = plan.written(attempt)
    staged = plan.staged(attempt)

    def open_stream() -> OpenedStream:
        for output in staged:
            output.prepare()
        source = open_source(plan.source, config.live, realtime=plan.live,
                             decoder_threads=config.pipeline.decoder_threads, max_pixels=config.pipeline.max_pixels)
        try:
            opened = _open_sinks(source, written, plan)
        except BaseException:
            source.close()
            raise
        published = [sink for sink in opened if isinstance(sink, Publisher)]
        publishers.extend(published)
        # Still images are unrelated to each other: each is segmented on its own, untracked.
        tracked = config.tracking.enabled and not isinstance(source, ImageSource)
        tracker = Tracker(config.tracking) if tracked else None
        try:
            analytics = _analytics(plan, source, tracked)
        except BaseException:
            source.close()
            for sink in opened:
                sink.close()
            raise
        scenes.append(analytics)
        return OpenedStream(source, [*opened, *sinks], tracker, Renderer(config.render, tracked=tracked), analytics)

    scenes: list[SceneAnalytics | None] = []  # what open_stream built, for the summary
    publishers: list[Publisher] = []

    def finish(summary: StreamSummary) -> None:
        summary.output = None if plan.outputs.output is None else str(plan.outputs.output)
        if scenes and scenes[-1] is not None:
            summary.analytics = scenes[-1].tally
        summary.publishing = [publisher.figures().line() for publisher in publishers]
        try:
            if plan.archive_input is not None:
                _settle(plan, staged, written, summary)
        finally:  # the manifest records every archive video, a failure to commit included
            if manifest is not None and plan.archive_input is not None:
                cut = summary.status == "done" and summary.cut  # kept staged: a rerun redoes it
                manifest.append({"file": str(plan.archive_input), "output": None if cut else summary.output,
                                 "status": "cut" if cut else summary.status,
                                 "frames": summary.frames_written, "fps": round(summary.fps, 3),
                                 "error": None if summary.error is None else mask_credentials(str(summary.error))})
            if on_finish is not None:
                on_finish(summary)

    return StreamStart(plan.name, open_stream, config, live=plan.live, finish=finish)


def _settle(plan: StreamPlan, staged: Sequence[StagedOutput], written: Outputs, summary: StreamSummary) -> None:
    """An ended archive video: complete outputs take their final names; what a fault cut short stays staged."""
    if summary.status == "done" and summary.cut:
        log.warning("%s: cut by --max-frames after %d frames; kept in %s, not under its final name, so a rerun "
                    "without --max-frames redoes it", plan.name, summary.frames_written,
                    written.output if written.output is not None else staged[0].directory if staged else "nothing")
        return
    if summary.status == "done":
        try:
            for output in staged:
                output.commit()
        except OSError as exc:
            summary.status, summary.error = "failed", OutputError(f"cannot finish the outputs of {plan.name}: {exc}")
            log.warning("stream %s: %s", plan.name, summary.error)
        return
    for output in staged:
        output.discard_if_empty()
    if written.output is not None and Path(written.output).exists():
        log.warning("%s: what was processed is kept in %s until a rerun redoes it", plan.name, written.output)


def _analytics(plan: StreamPlan, source: VideoSource, tracked: bool) -> SceneAnalytics | None:
    """The stream's scene analytics, its regions checked against the frame size when the source announces it."""
    zones, lines = regions(plan.config.analytics, f"{plan.name}: analytics")
    if not zones and not lines:
        return None
    analytics = SceneAnalytics(zones, lines, plan.config.analytics, stream=plan.name, tracked=tracked)
    if source.info.height and source.info.width:
        analytics.prepare(source.info.height, source.info.width)
    return analytics


def _open_sinks(source: VideoSource, outputs: Outputs, plan: StreamPlan) -> list[Sink]:
    """The stream's sinks, after the check that needs the opened source (still images' copies that exist); the
    planner checked the rest (folders writable, no output an input)."""
    config = plan.config
    images = isinstance(source, ImageSource)
    if outputs.output is not None and isinstance(source, ImageSource):
        _check_image_directory(Path(outputs.output), source.paths, config.output.overwrite)
    sinks: list[Sink] = []
    try:
        if outputs.output is not None:
            sinks.append(FramesSink(outputs.output) if images else
                         Mp4Sink(outputs.output, config.output, audio_source=plan.source if source.info.is_file else None,
                                 frame_rate=source.info.frame_rate))
        if outputs.save_json is not None:
            sinks.append(JsonLinesSink(outputs.save_json))
        if outputs.save_frames is not None:
            sinks.append(FramesSink(outputs.save_frames, every=config.output.frames_every))
        if outputs.save_crops is not None:
            sinks.append(CropsSink(outputs.save_crops))
        if outputs.events is not None:
            sinks.append(EventsSink(outputs.events))
        if outputs.heatmap is not None:
            sinks.append(HeatmapSink(outputs.heatmap, config.analytics.heatmap_classes))
        if config.events.snapshots:
            sinks.append(SnapshotsSink(Path(config.events.snapshots) / plan.name))
        if config.analytics.zones or config.analytics.lines:
            sinks.extend(open_publishers(config.events, plan.name))
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks


def _check_image_directory(directory: Path, inputs: Sequence[Path], overwrite: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"for still images --output must be a directory: {directory}")
    if not directory.parent.is_dir():
        raise OutputError(f"output directory's parent does not exist: {directory.parent}")
    clashes = [p.name for p in inputs if (directory / p.name).exists()]
    if clashes and not overwrite:
        raise OutputError(f"{directory / clashes[0]} exists; pass --overwrite to replace it")
