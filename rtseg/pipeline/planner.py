"""The one planner: from what the user named (sources, outputs, settings) to typed ``StreamPlan``s, checked first.

Every front door plans here: ``rtseg.api.process``/``stream`` (and so the CLI
and the page's video jobs) and the cluster's archives and fleets. The planner
decides each stream's name, its outputs' final paths, whether an archive video
is finished already (skip if complete), where outputs are written until they
are complete (``sinks.archive.StagedOutput``: one layout everywhere) and the
detector's settings; it opens nothing (``pipeline.factory`` does). Every output is
checked here, before the model loads: no output is an input or another output
(compared as files, hard links too: ``sinks.base.same_file``), and every folder of
outputs can be made and written.

One source runs exactly as it always has: its outputs are the paths given. With
several streams (``--source`` given more than once, a ``streams:`` list) or an
archive (a directory or glob of videos, even of one) every output option names a directory
and each stream writes its own files there, named after the stream. Archive
videos are written under a temporary name and renamed when complete, a manifest
records each one as it finishes, and a rerun skips the ones already complete.
On a cluster every output option names a directory, whatever the stream count.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rtseg.analytics.scene import check_tracking, regions
from rtseg.core.config import Config, ModelConfig, StreamConfig, stream_config
from rtseg.core.errors import OutputError, UsageError
from rtseg.core.media import (
    EVENTS_SUFFIXES,
    FILE_SUFFIXES,
    HEATMAP_SUFFIXES,
    RECORDS_SUFFIXES,
    STATS_SUFFIXES,
    VIDEO_SUFFIXES,
)
from rtseg.sinks.archive import MANIFEST_NAME, StagedOutput, check_archive_directory
from rtseg.sinks.base import check_output_directory, check_output_path, file_keys
from rtseg.sources.base import SourceSpec
from rtseg.sources.factory import parse_source
from rtseg.sources.files import image_paths, video_paths

log = logging.getLogger(__name__)


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
    events: str | Path | None = None  # scene analytics' events, JSON Lines
    heatmap: str | Path | None = None  # where objects were, a PNG
    show: bool = False

    def any_written(self) -> bool:
        """Whether any file is written (statistics aside)."""
        return any(p is not None for p in (self.output, self.save_json, self.save_frames, self.save_crops,
                                           self.events, self.heatmap))

    def named(self) -> list[tuple[str, Path]]:
        """Every path given, with the option that names it (``--save-json``, ...), for messages."""
        return [(option, Path(value)) for name, option in OPTIONS.items() if (value := getattr(self, name)) is not None]

    def files(self) -> dict[str, Path]:
        """The single files a stream writes (its MP4 or folder of stills, JSON Lines, events, heatmap) by field."""
        return {name: Path(value) for name in FILE_FIELDS if (value := getattr(self, name)) is not None}

    def moved(self, files: dict[str, Path]) -> Outputs:
        """These outputs with the single files of ``files`` (by field, as ``files()`` gives them) at other paths."""
        changes: dict[str, Any] = {name: files[name] for name in FILE_FIELDS if name in files}
        return dataclasses.replace(self, **changes)


# Outputs that are one file per stream, with the name each gets in a directory of several streams' files
# (an MP4's '.mp4' is dropped for still images, whose output is a folder).
FILE_FIELDS = {"output": ".mp4", "save_json": ".jsonl", "events": ".events.jsonl", "heatmap": ".heatmap.png"}
# Every output field with the command-line option that sets it.
OPTIONS = {"output": "--output", "save_json": "--save-json", "save_frames": "--save-frames",
           "save_crops": "--save-crops", "save_stats": "--save-stats", "events": "--events", "heatmap": "--heatmap"}


@dataclass
class StreamPlan:
    """One stream, decided before anything opens; plain data, so it crosses to cluster workers as it is.

    ``outputs`` are the final paths. An archive video (``archive_input``) writes
    its MP4 and JSON Lines staged (``staged``) and commits them when complete.
    """

    name: str
    source: str
    config: Config
    outputs: Outputs
    live: bool = False  # frames at the source's pace (cameras, streams, --realtime files): never waited for
    stills: bool = False  # a still image or a folder of them: ``outputs.output`` is a directory
    archive_input: Path | None = None

    @property
    def finals(self) -> list[Path]:
        """The outputs that stand under their final names only once complete (archive videos)."""
        return list(self.outputs.files().values())

    def staged(self, attempt: int = 1) -> list[StagedOutput]:
        return [StagedOutput(final, attempt) for final in self.finals] if self.archive_input is not None else []

    def written(self, attempt: int = 1) -> Outputs:
        """Where the sinks write: the final paths, or for an archive video its staged ones."""
        if self.archive_input is None:
            return self.outputs
        staged = {s.final: s.path for s in self.staged(attempt)}
        return self.outputs.moved({name: staged[path] for name, path in self.outputs.files().items()})

    def complete(self) -> bool:
        """An archive video is finished when all its outputs stand under their final names (only whole ones do)."""
        finals = self.finals
        return bool(finals) and all(path.exists() for path in finals)


@dataclass
class RunPlan:
    """Every stream of a run, the archive's manifest, what an earlier run finished, and the detector's settings."""

    streams: list[StreamPlan]
    detector: ModelConfig
    skipped: list[str] = field(default_factory=list)
    manifest: Path | None = None


def detector_settings(config: Config, configs: Sequence[Config] = (), floor: float | None = None) -> ModelConfig:
    """The model keeps detections down to the lowest ``tracking.low_score`` of any tracked stream, and ``floor``.

    Each stream's lane drops again what its tracker did not claim (``StreamLane``);
    the page (``floor``) keeps every score its slider can choose.
    """
    lows = [c.tracking.low_score for c in (configs or [config]) if c.tracking.enabled]
    if floor is not None:
        lows.append(floor)
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


def _expand(sources: Sequence[str | StreamConfig], config: Config, realtime: bool) -> list[StreamPlan]:
    """Every stream of the run with its name and its own outputs: archives give one stream per video."""
    streams: list[StreamPlan] = []
    taken: set[str] = set()
    for item in sources:
        entry = item if isinstance(item, StreamConfig) else StreamConfig(source=item)
        settings = stream_config(config, entry)
        spec = parse_source(entry.source)
        videos = video_paths(spec.target) if spec.kind == "file" else None
        if videos is None:
            name = entry.name or stream_name(spec, taken)
            taken.add(name)
            stills = spec.kind == "file" and image_paths(spec.target) is not None
            streams.append(StreamPlan(name, entry.source, settings, Outputs(output=entry.output, save_json=entry.save_json),
                                      live=spec.kind != "file" or realtime, stills=stills))
            continue
        for video in videos:
            name = stream_name(parse_source(str(video)), taken)
            streams.append(StreamPlan(name, str(video), settings, Outputs(), live=realtime, archive_input=video))
    return streams


def _per_stream(directory: str | Path | None, name: str, suffix: str) -> Path | None:
    return None if directory is None else Path(directory) / f"{name}{suffix}"


def _check_directory(option: str, path: str | Path | None, why: str = "with several streams") -> None:
    if path is None:
        return
    directory = Path(path)
    if directory.suffix.lower() in FILE_SUFFIXES or (directory.exists() and not directory.is_dir()):
        raise OutputError(f"{why} {option} must be a directory (one file per stream is written there): {directory}")
    parent = directory.parent if str(directory.parent) else Path(".")
    if not directory.exists() and not parent.is_dir():
        raise OutputError(f"output directory's parent does not exist: {parent}")
    check_output_directory(option, directory)


def plan_run(sources: Sequence[str | StreamConfig], outputs: Outputs, config: Config, *, realtime: bool = False,
             cluster: bool = False) -> RunPlan:
    """The streams of a run, every output checked before any of them opens.

    ``cluster``: every output option is a directory, and a run is either an archive (videos, one task each)
    or cameras, never both.
    """
    streams = _expand(sources, config, realtime)
    if not streams:
        raise UsageError("no source given")
    _check_analytics(streams, outputs)
    run = RunPlan(streams=[], detector=config.model)
    if cluster:
        _check_cluster(streams, outputs)
    archive = any(stream.archive_input is not None for stream in streams)  # a folder of one video is an archive too
    if len(streams) == 1 and not cluster and not archive:
        stream = streams[0]
        own = stream.outputs
        stream.outputs = dataclasses.replace(outputs, output=own.output or outputs.output,
                                             save_json=own.save_json or outputs.save_json)
        _check_apart(streams)
        _check_single(stream)
        run.streams.append(stream)
    else:
        why = "with --cluster" if cluster else "for an archive of videos" if archive else "with several streams"
        _plan_several(streams, outputs, config, run, why, fleet=cluster and streams[0].live)
    if cluster:  # workers on other machines, in other working directories, read and write the same paths
        run.streams = [_absolute(stream) for stream in run.streams]
        run.manifest = None if run.manifest is None else run.manifest.resolve()
    run.detector = detector_settings(config, [s.config for s in run.streams])
    return run


def _check_analytics(streams: Sequence[StreamPlan], outputs: Outputs) -> None:
    """Every stream's zones and lines are valid geometry, and what is asked of them can be answered."""
    wants_events = outputs.events is not None
    for stream in streams:
        settings = stream.config
        zones, lines = regions(settings.analytics, f"{stream.name}: analytics")
        check_tracking(lines, settings.tracking.enabled, stream.name)
        publishes = wants_events or bool(settings.events.mqtt or settings.events.webhook)
        if publishes and not (zones or lines):
            raise UsageError(f"{stream.name}: events need zones or lines (--zone, --line or analytics: in --config)")


def _absolute(stream: StreamPlan) -> StreamPlan:
    archive_input = _resolved(stream.archive_input)
    return dataclasses.replace(
        stream, source=stream.source if archive_input is None else str(archive_input), archive_input=archive_input,
        outputs=stream.outputs.moved({name: path.resolve() for name, path in stream.outputs.files().items()}))


def _resolved(path: str | Path | None) -> Path | None:
    return None if path is None else Path(path).resolve()


def _check_cluster(streams: list[StreamPlan], outputs: Outputs) -> None:
    """A cluster run is an archive (every stream a video file) or a fleet (every stream live), with directories."""
    files = {not s.live for s in streams}
    if len(files) > 1:
        raise UsageError("with --cluster, give either archives of videos or cameras, not both in one run")
    for stream in streams if files == {True} else []:  # an archive: a video file named on its own is one too
        if stream.archive_input is None:
            path = Path(stream.source)
            if not (path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES):
                raise UsageError("with --cluster, give archives (directories or globs of videos) or a streams: list "
                                 "of cameras")
            stream.archive_input = path
    unsupported = [flag for flag, value in (("--save-frames", outputs.save_frames), ("--save-crops", outputs.save_crops),
                                            ("--save-stats", outputs.save_stats)) if value is not None]
    if unsupported:
        raise UsageError(f"{', '.join(unsupported)} not available with --cluster (it writes --output and --save-json)")


def _plan_several(streams: list[StreamPlan], outputs: Outputs, config: Config, run: RunPlan, why: str,
                  fleet: bool) -> None:
    """Several streams (or any cluster run): every output option is a directory holding a file per stream.

    ``fleet``: cameras on a cluster record numbered segments from these paths (never over an earlier one),
    so an existing file is no obstacle.
    """
    for option, path in (("--output", outputs.output), ("--save-json", outputs.save_json),
                         ("--save-frames", outputs.save_frames), ("--save-crops", outputs.save_crops),
                         ("--events", outputs.events), ("--heatmap", outputs.heatmap)):
        _check_directory(option, path, why)
    overwrite = config.output.overwrite
    archive = [s.archive_input for s in streams if s.archive_input is not None]
    if archive:
        home = outputs.output or outputs.save_json
        if home is None:
            raise OutputError("an archive needs --output DIR (or --save-json DIR) for its results")
        for directory in (outputs.output, outputs.save_json):
            if directory is not None:
                check_archive_directory(Path(directory), archive)
        run.manifest = Path(home) / MANIFEST_NAME
    if outputs.save_stats is not None:
        check_output_path(outputs.save_stats, overwrite, suffixes=STATS_SUFFIXES)
    for stream in streams:
        own = stream.outputs
        stream.outputs = dataclasses.replace(
            outputs,
            output=own.output or _per_stream(outputs.output, stream.name, "" if stream.stills else FILE_FIELDS["output"]),
            save_json=own.save_json or _per_stream(outputs.save_json, stream.name, FILE_FIELDS["save_json"]),
            events=_per_stream(outputs.events, stream.name, FILE_FIELDS["events"]),
            heatmap=_per_stream(outputs.heatmap, stream.name, FILE_FIELDS["heatmap"]),
            save_frames=_per_stream(outputs.save_frames, stream.name, ""),
            save_crops=_per_stream(outputs.save_crops, stream.name, ""),
            save_stats=None)
    _check_apart(streams, [("--save-stats", Path(outputs.save_stats))] if outputs.save_stats is not None else [])
    for directory in {Path(p) for p in (outputs.output, outputs.save_json, outputs.events, outputs.heatmap)
                      if p is not None}:
        directory.mkdir(exist_ok=True)
    for stream in streams:
        if stream.archive_input is not None:
            if not overwrite and stream.complete():
                run.skipped.append(stream.name)
                continue
        elif fleet:
            _check_segments(stream)
            _check_folders(stream)
        else:
            _check_single(stream)
        run.streams.append(stream)
    if run.skipped and run.streams:  # with nothing left, the front door says so in one line
        log.info("skipping %d archive video(s) finished by an earlier run (--overwrite redoes them)", len(run.skipped))


def _check_single(stream: StreamPlan) -> None:
    """The checks a stream's outputs pass before its source opens (a camera can take seconds); ``_check_apart``
    has compared them with the inputs and with each other."""
    outputs, overwrite = stream.outputs, stream.config.output.overwrite
    if outputs.output is not None and not stream.stills:
        check_output_path(outputs.output, overwrite)
    for path in (outputs.save_json, outputs.save_stats):
        if path is not None:
            check_output_path(path, overwrite, suffixes=RECORDS_SUFFIXES)
    if outputs.events is not None:
        check_output_path(outputs.events, overwrite, suffixes=EVENTS_SUFFIXES)
    if outputs.heatmap is not None:
        check_output_path(outputs.heatmap, overwrite, suffixes=HEATMAP_SUFFIXES)
    _check_folders(stream)


def _folders(stream: StreamPlan) -> list[tuple[str, Path]]:
    """The folders a stream's sinks make and write into, with the option or setting that names each."""
    outputs = stream.outputs
    given = (("--save-frames", outputs.save_frames), ("--save-crops", outputs.save_crops),
             ("--output", outputs.output if stream.stills else None))
    return [(option, Path(path)) for option, path in given if path is not None] + _snapshots(stream)


def _snapshots(stream: StreamPlan) -> list[tuple[str, Path]]:
    snapshots = stream.config.events.snapshots
    return [("events.snapshots", Path(snapshots) / stream.name)] if snapshots else []


def _check_folders(stream: StreamPlan) -> None:
    """Every folder the stream's sinks make can be made and written: one line now, not a failure mid-run."""
    for option, folder in _folders(stream):
        check_output_directory(option, folder)


def _inputs(stream: StreamPlan) -> list[Path]:
    """The files a stream reads: its video, its still images, or its archive video (cameras and URLs: none)."""
    if stream.archive_input is not None:
        return [stream.archive_input]
    spec = parse_source(stream.source)
    if spec.kind != "file":
        return []
    return (image_paths(spec.target) if stream.stills else None) or [Path(spec.target)]


def _written(stream: StreamPlan, several: bool) -> list[tuple[str, Path]]:
    """Every file and folder the stream writes, labelled for messages; a folder of still images' copies (its
    --output, its --save-frames) also by each copy, which takes its image's name."""
    label = f"{stream.name}'s {{}}" if several else "{}"
    written = [(label.format(option), path) for option, path in (*stream.outputs.named(), *_snapshots(stream))]
    if stream.stills:
        images = _inputs(stream)
        for option, folder in written[:]:
            if option.endswith(("--output", "--save-frames")):
                written += [(option, folder / image.name) for image in images]
    return written


def _check_apart(streams: Sequence[StreamPlan], extra: Sequence[tuple[str, Path]] = ()) -> None:
    """No output of the run is one of its inputs, and no two outputs are one file or folder.

    Paths are compared as files (``file_keys``: the resolved name and, for what exists, the device and inode), so
    a hard link to the input is the input. Refused even with --overwrite: either would destroy data without a word
    (the input, or what another option wrote). ``extra``: the run's own outputs (``--save-stats`` of several).
    """
    inputs = {key: path for stream in streams for path in _inputs(stream) for key in file_keys(path)}
    claimed: dict[Path | tuple[int, int], tuple[str, Path]] = {}
    several = len(streams) > 1
    for option, path in [*extra, *(named for stream in streams for named in _written(stream, several))]:
        keys = file_keys(path)
        for key in keys:
            if key in inputs:
                raise OutputError(f"{option} {path} is the input file {inputs[key]}; choose another name")
            if key in claimed:
                other, other_path = claimed[key]
                raise OutputError(f"{other} {other_path} and {option} {path} are the same file; give each its own")
        claimed.update(dict.fromkeys(keys, (option, path)))


def _check_segments(stream: StreamPlan) -> None:
    """A camera's recording paths: the checks of ``_check_single``, but an earlier segment there is no obstacle."""
    outputs = stream.outputs
    if outputs.output is not None:
        check_output_path(outputs.output, overwrite=True)
    for path, suffixes in ((outputs.save_json, RECORDS_SUFFIXES), (outputs.events, EVENTS_SUFFIXES),
                           (outputs.heatmap, HEATMAP_SUFFIXES)):
        if path is not None:
            check_output_path(path, overwrite=True, suffixes=suffixes)
