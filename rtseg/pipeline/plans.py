"""From what the user named (sources, outputs, settings) to one ``StreamPlan`` per stream, checked before any work.

One source runs exactly as it always has: its outputs are the paths given. With
several streams (``--source`` given more than once, a ``streams:`` list, or an
archive: a directory or glob of videos) every output option names a directory
and each stream writes its own files there, named after the stream. Archive
videos are written under a temporary name and renamed when complete, a manifest
records each one as it finishes, and a rerun skips the ones already complete.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from rtseg.core.config import Config, ModelConfig, StreamConfig, stream_config
from rtseg.core.errors import OutputError
from rtseg.pipeline.engine import OpenedStream, StreamPlan
from rtseg.pipeline.summary import StreamSummary
from rtseg.render.renderer import Renderer
from rtseg.sinks.archive import (
    MANIFEST_NAME,
    Manifest,
    check_archive_directory,
    commit_outputs,
    partial_path,
)
from rtseg.sinks.base import Sink, check_output_path
from rtseg.sinks.data import CropsSink, FramesSink, JsonLinesSink
from rtseg.sinks.mp4 import Mp4Sink
from rtseg.sinks.stats import StatsCollector
from rtseg.sources.base import SourceSpec, VideoSource
from rtseg.sources.factory import open_source, parse_source
from rtseg.sources.files import ImageSource, image_paths, video_paths
from rtseg.track.tracker import Tracker

log = logging.getLogger(__name__)

_VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov")


@dataclass
class Outputs:
    """Where a run's results go; every field is optional.

    With one stream: ``output`` is an MP4 for videos, a directory for still images.
    With several: every path is a directory that gets one file (or folder) per stream.
    """

    output: str | Path | None = None
    save_json: str | Path | None = None
    save_frames: str | Path | None = None
    save_crops: str | Path | None = None
    save_stats: str | Path | None = None
    show: bool = False


@dataclass
class StreamTarget:
    """One stream to run: what to open, what it is called, and where its results go."""

    source: str
    name: str
    config: Config
    outputs: Outputs
    archive_input: Path | None = None  # a video of an archive: outputs are temporary until it completes


@dataclass
class RunPlan:
    """Every stream of a run, with the per-stream statistics and the archive's manifest."""

    plans: list[StreamPlan]
    stats: dict[str, StatsCollector] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    manifest: Manifest | None = None


def detector_settings(config: Config, configs: Sequence[Config] = ()) -> ModelConfig:
    """The model keeps detections down to the lowest ``tracking.low_score`` of any tracked stream.

    Each stream's lane drops again what its tracker did not claim (``StreamLane._track``).
    """
    lows = [c.tracking.low_score for c in (configs or [config]) if c.tracking.enabled]
    lowest = min(lows, default=config.model.score_threshold)
    if lowest >= config.model.score_threshold:
        return config.model
    return dataclasses.replace(config.model, score_threshold=lowest)


def stream_name(spec: SourceSpec, taken: set[str]) -> str:
    """A short name safe for file names and logs: a file's stem, 'camera0', or a stream URL's host and path."""
    if spec.kind == "file":
        base = Path(spec.target.rstrip("/")).stem or "stream"
    elif spec.camera_index is not None:
        base = f"camera{spec.camera_index}"
    elif spec.kind == "camera":
        base = Path(spec.target).name
    else:
        parts = urlsplit(spec.target)
        base = "-".join(filter(None, [parts.hostname, str(parts.port or ""), *parts.path.split("/")]))
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.") or "stream"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


def expand_sources(sources: Sequence[str | StreamConfig], config: Config) -> list[StreamTarget]:
    """Every stream of the run: archives (a directory or glob of videos) give one stream per video."""
    targets: list[StreamTarget] = []
    taken: set[str] = set()
    for item in sources:
        entry = item if isinstance(item, StreamConfig) else StreamConfig(source=item)
        settings = stream_config(config, entry)
        spec = parse_source(entry.source)
        videos = video_paths(spec.target) if spec.kind == "file" else None
        if videos is None:
            name = entry.name or stream_name(spec, taken)
            taken.add(name)
            targets.append(StreamTarget(entry.source, name, settings,
                                        Outputs(output=entry.output, save_json=entry.save_json)))
            continue
        for video in videos:
            name = stream_name(parse_source(str(video)), taken)
            targets.append(StreamTarget(str(video), name, settings, Outputs(), archive_input=video))
    return targets


def _per_stream(directory: str | Path | None, name: str, suffix: str) -> Path | None:
    return None if directory is None else Path(directory) / f"{name}{suffix}"


def _check_directory(option: str, path: str | Path | None) -> None:
    if path is None:
        return
    directory = Path(path)
    if directory.suffix.lower() in (*_VIDEO_SUFFIXES, ".json", ".jsonl") or (directory.exists() and not directory.is_dir()):
        raise OutputError(f"with several streams {option} must be a directory (one file per stream is written there): "
                          f"{directory}")
    parent = directory.parent if str(directory.parent) else Path(".")
    if not directory.exists() and not parent.is_dir():
        raise OutputError(f"output directory's parent does not exist: {parent}")


def plan_run(sources: Sequence[str | StreamConfig], outputs: Outputs, config: Config,
             extra_sinks: Sequence[Sink] = (), realtime: bool = False) -> RunPlan:
    """The streams of a run, every output checked before any of them opens."""
    targets = expand_sources(sources, config)
    overwrite = config.output.overwrite
    run = RunPlan(plans=[])
    if len(targets) == 1:
        target = targets[0]
        own = target.outputs
        target.outputs = dataclasses.replace(outputs, output=own.output or outputs.output,
                                             save_json=own.save_json or outputs.save_json)
        _check_single(target)
    else:
        for option, path in (("--output", outputs.output), ("--save-json", outputs.save_json),
                             ("--save-frames", outputs.save_frames), ("--save-crops", outputs.save_crops)):
            _check_directory(option, path)
        archive = [t for t in targets if t.archive_input is not None]
        if archive:
            if outputs.output is not None:
                check_archive_directory(Path(outputs.output), [t.archive_input for t in archive])  # type: ignore[misc]
            home = outputs.output or outputs.save_json
            if home is None:
                raise OutputError("an archive needs --output DIR (or --save-json DIR) for its results")
            run.manifest = Manifest(Path(home) / MANIFEST_NAME)
        if outputs.save_stats is not None:
            check_output_path(outputs.save_stats, None, overwrite, suffixes=(".json",))
        for directory in {Path(p) for p in (outputs.output, outputs.save_json) if p is not None}:
            directory.mkdir(exist_ok=True)
        for target in targets:
            own = target.outputs
            still = target.archive_input is None and _is_stills(target.source)
            target.outputs = Outputs(
                output=own.output or _per_stream(outputs.output, target.name, "" if still else ".mp4"),
                save_json=own.save_json or _per_stream(outputs.save_json, target.name, ".jsonl"),
                save_frames=_per_stream(outputs.save_frames, target.name, ""),
                save_crops=_per_stream(outputs.save_crops, target.name, ""))
            if target.archive_input is not None and not overwrite and _complete(target):
                run.skipped.append(target.name)
                continue
            if target.archive_input is None:
                _check_single(target)
        if run.skipped:
            log.info("skipping %d archive video(s) finished by an earlier run (--overwrite redoes them)",
                     len(run.skipped))
    for target in targets:
        if target.name in run.skipped:
            continue
        stats = run.stats.setdefault(target.name, StatsCollector())
        run.plans.append(_plan(target, stats, extra_sinks, realtime, run.manifest))
    return run


def _is_stills(source: str) -> bool:
    spec = parse_source(source)
    return spec.kind == "file" and image_paths(spec.target) is not None


def _finals(target: StreamTarget) -> list[Path]:
    return [Path(p) for p in (target.outputs.output, target.outputs.save_json) if p is not None]


def _complete(target: StreamTarget) -> bool:
    """An archive video is finished when all its outputs stand under their final names (only complete ones do)."""
    finals = _finals(target)
    return bool(finals) and all(path.exists() for path in finals)


def _check_single(target: StreamTarget) -> None:
    """The checks a single stream's outputs pass before its source opens (a camera can take seconds)."""
    spec = parse_source(target.source)
    outputs, overwrite = target.outputs, target.config.output.overwrite
    if outputs.output is not None and not _is_stills(target.source):
        check_output_path(outputs.output, spec.target if spec.kind == "file" else None, overwrite)
    for path in (outputs.save_json, outputs.save_stats):
        if path is not None:
            check_output_path(path, spec.target if spec.kind == "file" else None, overwrite,
                              suffixes=(".json", ".jsonl"))


def _plan(target: StreamTarget, stats: StatsCollector, extra_sinks: Sequence[Sink], realtime: bool,
          manifest: Manifest | None) -> StreamPlan:
    config = target.config
    spec = parse_source(target.source)
    written = target.outputs
    if target.archive_input is not None:  # complete files only ever stand under their final names
        written = dataclasses.replace(written, **{
            key: partial_path(Path(value)) for key, value in (("output", written.output), ("save_json", written.save_json))
            if value is not None})

    def open_stream() -> OpenedStream:
        source = open_source(target.source, config.live, realtime=realtime,
                             decoder_threads=config.pipeline.decoder_threads)
        try:
            sinks = _open_sinks(source, target.source, written, config)
        except BaseException:
            source.close()
            raise
        # Still images are unrelated to each other: each is segmented on its own, untracked.
        tracked = config.tracking.enabled and not isinstance(source, ImageSource)
        tracker = Tracker(config.tracking) if tracked else None
        return OpenedStream(source, [*sinks, stats, *extra_sinks], tracker, Renderer(config.render, tracked=tracked))

    def finish(summary: StreamSummary) -> None:
        summary.output = None if target.outputs.output is None else str(target.outputs.output)
        if target.archive_input is None:
            return
        if summary.status == "done":
            commit_outputs(_finals(target))
        elif written.output is not None and Path(written.output).exists():
            log.warning("%s: what was processed is kept in %s until a rerun redoes it", target.name, written.output)
        if manifest is not None:
            manifest.append({"file": str(target.archive_input), "output": summary.output, "status": summary.status,
                             "frames": summary.frames_written, "fps": round(summary.fps, 3),
                             "error": None if summary.error is None else str(summary.error)})

    return StreamPlan(target.name, open_stream, config, is_file=spec.kind == "file" and not realtime, finish=finish)


def _open_sinks(source: VideoSource, source_name: str, outputs: Outputs, config: Config) -> list[Sink]:
    """The stream's sinks, after the checks that need the opened source (still images' directory)."""
    overwrite = config.output.overwrite
    images = isinstance(source, ImageSource)
    if outputs.output is not None and images:
        _check_image_directory(Path(outputs.output), source.paths, overwrite)
    for directory in (outputs.save_frames, outputs.save_crops):
        if directory is not None and Path(directory).exists() and not Path(directory).is_dir():
            raise OutputError(f"not a directory: {directory}")
    sinks: list[Sink] = []
    try:
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
    if any(p.parent.resolve() == directory.resolve() for p in inputs):
        raise OutputError(f"output directory {directory} holds the input images; choose another")
    clashes = [p.name for p in inputs if (directory / p.name).exists()]
    if clashes and not overwrite:
        raise OutputError(f"{directory / clashes[0]} exists; pass --overwrite to replace it")
