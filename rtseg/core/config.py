"""Settings: typed sections with their defaults, validated in one pass.

The dataclasses below are the single source of truth for every setting.
``configs/default.yaml`` is generated from them (``render_default_yaml``) and a
test keeps the two identical, so the commented file users read never drifts
from what the code does. Loading order: defaults < ``--config FILE`` < CLI flags.
Help strings are one short line each; what a setting costs and buys, and the
measurements behind its default, are in docs/configuration.md.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import reprlib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from rtseg.core.errors import ConfigError
from rtseg.core.redaction import mask_credentials

SectionT = TypeVar("SectionT")


def setting(default: Any, help: str, *, choices: tuple[Any, ...] | None = None,
             min: float | None = None, max: float | None = None,
             above: float | None = None, below: float | None = None) -> Any:
    """A dataclass field carrying its one-line comment and its allowed values.

    ``min``/``max`` are inclusive bounds, ``above``/``below`` exclusive ones; on a
    list they bound each item.
    """
    meta = {"help": help, "choices": choices, "min": min, "max": max, "above": above, "below": below}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ModelConfig:
    name: str = setting("maskrcnn_v1", "architecture: maskrcnn_v1 (ResNet-50 FPN) or maskrcnn_v2 (FPN v2: more accurate, slower)",
                         choices=("maskrcnn_v1", "maskrcnn_v2"))
    weights: str = setting("default", "'default' (torchvision's COCO weights), a local checkpoint file, or 'none' (random)")
    device: str = setting("auto", "auto | cpu | cuda | cuda:N (auto = CUDA when available)")
    precision: str = setting("auto", "auto (fp16 on CUDA, bf16 on CPUs with native bf16, else fp32), fp32, fp16, or bf16",
                              choices=("auto", "fp32", "fp16", "bf16"))
    score_threshold: float = setting(0.5, "detections scoring below this are dropped", min=0.0, max=1.0)
    mask_threshold: float = setting(0.5, "mask probability above which a pixel belongs to the object", min=0.0, max=1.0)
    classes: list[str] = setting([], "COCO class names to keep, e.g. [person, car]; empty keeps all")
    size: int = setting(0, "shorter image side fed to the model (0 = a checkpoint's training size, else the architecture's)", min=0, max=4096)
    max_size: int = setting(0, "cap on the longer image side (0 = size x 1333 / 800, at least the architecture's own)", min=0, max=8192)
    batch_size: int = setting(1, "frames per model call for file sources", min=1, max=64)
    detections_per_image: int = setting(100, "most detections kept per frame (the mask head runs once for each)", min=1, max=1000)
    rpn_post_nms_top_n: int = setting(0, "region proposals kept for the box head (0 = the architecture's own)", min=0, max=10000)
    channels_last: bool = setting(True, "NHWC memory layout for the convolutions (same detections)")
    threads: int = setting(0, "torch intra-op threads for the model on the CPU (0 = one per core)", min=0, max=1024)
    fp16_weights: bool = setting(False, "CUDA fp16 only: model.half() instead of autocast (every layer computes in fp16)")
    class_agnostic_nms: float = setting(0.7, "IoU above which the less likely of two boxes of any classes is dropped (0 = off)", min=0.0, max=1.0)


@dataclass
class PipelineConfig:
    capture_queue_size: int = setting(8, "decoded frames waiting for the model (files; live sources use live.queue_size)", min=1, max=1024)
    render_queue_size: int = setting(8, "inferred frames waiting for the renderer", min=1, max=1024)
    sink_queue_size: int = setting(8, "rendered frames waiting for the sinks", min=1, max=1024)
    max_frames: int = setting(0, "stop after this many frames per stream (0 = no limit)", min=0)
    batch_timeout_ms: float = setting(5.0, "after a batch's first frame, wait at most this long for more streams' frames", min=0.0, max=10000.0)
    max_open_files: int = setting(4, "archive videos processed at once (each has its own decoder, tracker and encoder)", min=1, max=256)
    decoder_threads: int = setting(0, "FFmpeg threads decoding a video file (0 = 1 on up to 4 cores, else FFmpeg's choice)", min=0, max=256)
    stage_timeout: float = setting(120.0, "seconds a stage may spend on one frame before the run is stopped as hung", min=0.1)
    max_pixels: int = setting(40_000_000, "largest image or video frame decoded, in pixels (larger: refused unread)",
                              min=4096, max=1_000_000_000)


@dataclass
class LiveConfig:
    queue_size: int = setting(1, "newest frames waiting for the model; older ones are dropped (and counted)", min=1, max=64)
    open_timeout: float = setting(10.0, "seconds to wait for a stream to open (connect and probe)", min=0.1, max=600.0)
    read_timeout: float = setting(5.0, "seconds without a frame before a stream counts as disconnected", min=0.1, max=600.0)
    reconnect_delay: float = setting(0.5, "seconds before the first reconnect attempt; doubles after each failed one", min=0.0, max=600.0)
    reconnect_max_delay: float = setting(30.0, "cap on the wait between reconnect attempts", min=0.0, max=3600.0)
    reconnect_attempts: int = setting(0, "reconnect attempts per disconnect before the run fails (0 = unlimited)", min=0)
    retry_at_start: bool = setting(False, "retry as after a disconnect when the source cannot be opened at start (default: fail)")
    rtsp_transport: str = setting("tcp", "RTSP transport: tcp (reliable, through NAT) or udp (lower latency, may drop packets)", choices=("tcp", "udp"))
    camera_width: int = setting(0, "frame width to request from a webcam (0 = the camera's default)", min=0, max=16384)
    camera_height: int = setting(0, "frame height to request from a webcam (0 = the camera's default)", min=0, max=16384)
    camera_fps: float = setting(0.0, "frame rate to request from a webcam (0 = the camera's default)", min=0.0, max=1000.0)


@dataclass
class RenderConfig:
    alpha: float = setting(0.5, "opacity of the mask overlay", min=0.0, max=1.0)
    contours: bool = setting(True, "draw mask outlines")
    boxes: bool = setting(True, "draw bounding boxes")
    labels: bool = setting(True, "draw 'class score' labels")
    color_by: str = setting("track", "what a colour follows: track (same colour across frames), class, or index (detection order)",
                             choices=("track", "class", "index"))
    line_width: int = setting(2, "thickness in pixels of boxes and contours", min=1, max=32)


@dataclass
class OutputConfig:
    crf: int = setting(23, "H.264 quality (0 = lossless, 51 = worst; 18-28 is typical)", min=0, max=51)
    preset: str = setting("veryfast", "x264 speed/size trade-off (ultrafast ... veryslow)",
                           choices=("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"))
    encoder_threads: int = setting(0, "libx264 threads (0 = 1 on up to 4 cores, else x264's choice)", min=0, max=256)
    fragment_seconds: float = setting(1.0, "seconds per fragment of a fragmented MP4, playable after a crash (0 = classic MP4)", min=0.0, max=60.0)
    copy_audio: bool = setting(True, "copy the source's audio track into the MP4 without re-encoding")
    overwrite: bool = setting(False, "replace existing output files")
    frames_every: int = setting(1, "with --save-frames, keep every Nth annotated frame", min=1)
    show: bool = setting(True, "show a live window (skipped with a notice when there is no display)")


@dataclass
class TrackingConfig:
    enabled: bool = setting(True, "give each instance a stable id (and so a stable colour) across frames")
    match: str = setting("iou", "overlap that pairs detections with tracks: iou (boxes, cheap) or mask_iou (masks, slower)",
                          choices=("iou", "mask_iou"))
    iou_threshold: float = setting(0.3, "least IoU with a track's predicted box for a high-score detection to continue it", min=0.0, max=1.0)
    low_iou_threshold: float = setting(0.25, "least IoU for a low-score detection to continue a track", min=0.0, max=1.0)
    high_score: float = setting(0.5, "detections scoring at least this are matched first and may start new tracks", min=0.0, max=1.0)
    low_score: float = setting(0.1, "lowest score still used to keep a track alive (model.score_threshold must let it through)", min=0.0, max=1.0)
    low_score_claims: bool = setting(True, "a track keeps its best-fitting low-score detection (false = ByteTrack's high-first order)")
    min_hits: int = setting(2, "consecutive frames a new track must be detected before it gets an id", min=1, max=100)
    max_age: int = setting(30, "frames a track survives without a detection (occlusion) before it is dropped", min=0, max=10000)
    class_agnostic: bool = setting(True, "match across classes; a track shows the class its recent detections vote for")
    appearance: bool = setting(False, "also pair by the colours inside each mask (BoT-SORT's gated fusion; downloads GPU masks)")
    appearance_min_iou: float = setting(0.3, "least box IoU at which appearance counts for a pair (BoT-SORT: 0.5)", min=0.0, max=1.0)
    appearance_distance: float = setting(0.25, "largest colour distance (0-1) at which appearance raises a pair's overlap", min=0.0, max=1.0)
    vote_half_life: float = setting(10.0, "detections after which one weighs half in its track's class vote and shown score", min=0.1, max=10000.0)


@dataclass
class AnalyticsConfig:
    zones: list[dict[str, Any]] = setting([], "zones: [{name, points: [[x, y], ...] in pixels or 0..1 of the frame, classes: [...]}]")
    lines: list[dict[str, Any]] = setting([], "lines: [{name, points: [[x, y], ...] (2 or more), in: left|right, classes: [...]}]")
    zone_share: float = setting(0.5, "an object is inside a zone while at least this share of its mask is", above=0.0, max=1.0)
    zone_margin: float = setting(0.2, "entering and leaving wait until the share is past zone_share by half this (no flicker)", min=0.0, below=1.0)
    line_margin: float = setting(0.1, "an object has crossed once 0.5 plus this of its mask is on the other side", min=0.0, below=0.5)
    loiter_seconds: float = setting(30.0, "a 'loiter' event when a tracked object stays in a zone this long (0 = never)", min=0.0)
    occupancy_seconds: float = setting(1.0, "seconds of video between 'occupancy' events per zone (0 = none)", min=0.0)
    lost_seconds: float = setting(1.0, "an unseen track leaves its zones after this; until then a new id in its place is it", min=0.0, max=3600.0)
    reacquire_iou: float = setting(0.3, "least box overlap for a new track id to take over a lost one's zones and sides", above=0.0, max=1.0)
    heatmap_classes: list[str] = setting([], "classes the --heatmap accumulates (empty: every class)")


@dataclass
class EventsConfig:
    mqtt: str = setting("", "MQTT broker for events: mqtt://[user:password@]host[:port] (empty: none)")
    mqtt_topic: str = setting("rtseg", "topic prefix: events go to PREFIX/STREAM/KIND; occupancy is retained")
    mqtt_qos: int = setting(0, "MQTT quality of service for events", choices=(0, 1, 2))
    webhook: str = setting("", "URL that receives each event as a JSON POST (empty: none)")
    webhook_retries: int = setting(3, "extra tries of a webhook POST that fails, with a doubling wait", min=0, max=20)
    timeout: float = setting(5.0, "seconds a publish (connect, POST) may take before it counts as failed", min=0.1, max=300.0)
    queue_size: int = setting(1000, "events waiting per publisher; while it is full new ones are dropped and counted", min=1, max=1000000)
    snapshots: str = setting("", "folder for a picture of each enter, cross and loiter event: the frame and the object (empty: none)")


@dataclass
class ClusterConfig:
    workers: int = setting(0, "Ray workers (--cluster), each loading the model once; 0 = as many as the cluster holds", min=0, max=100000)
    gpus_per_worker: float = setting(-1.0, "GPUs per worker; 0.5 = two share one; 0 = CPU only; -1 = 1 if the cluster has GPUs", min=-1.0, max=64.0)
    cpus_per_worker: float = setting(2.0, "CPUs per worker (decoding, tracking, rendering, encoding beside the model)", min=0.0, max=1024.0)
    max_attempts: int = setting(3, "archives: tries per file before it is reported failed and left", min=1, max=100)
    max_restarts: int = setting(5, "times Ray restarts a dead worker (fleets: its cameras resume); -1 = always", min=-1, max=100000)


@dataclass
class StreamConfig:
    """One entry of a configuration file's ``streams:`` list: a source with its own outputs and settings.

    ``live``, ``tracking`` and ``analytics`` (its own zones and lines) override those sections for this stream only.
    """

    source: str
    name: str | None = None
    output: str | None = None
    save_json: str | None = None
    live: dict[str, Any] = field(default_factory=dict)
    tracking: dict[str, Any] = field(default_factory=dict)
    analytics: dict[str, Any] = field(default_factory=dict)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    live: LiveConfig = field(default_factory=LiveConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    analytics: AnalyticsConfig = field(default_factory=AnalyticsConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    streams: list[StreamConfig] = field(default_factory=list)  # the sources of a multi-stream run, from a file


# What a streams: entry may hold, by type: derived from StreamConfig, so a new field is accepted where it is declared.
STREAM_KEYS: dict[str, type] = {f.name: dict if str(f.type).startswith("dict") else str for f in fields(StreamConfig)}


SECTION_HELP = {
    "model": "Mask R-CNN worker",
    "pipeline": "threads and bounded queues",
    "live": "webcams and stream URLs: latency, timeouts, reconnecting",
    "render": "drawing masks, boxes and labels",
    "output": "MP4 encoder and live window",
    "tracking": "instance identities across frames (ByteTrack-style, rtseg/track/)",
    "analytics": "zones and lines decided by each object's mask: counts, occupancy, dwell (docs/analytics.md)",
    "events": "where analytics events are published besides --events FILE (MQTT, webhooks)",
    "cluster": "Ray workers for archives and camera fleets (--cluster; docs/cluster.md)",
}


def setting_choices(section: type, key: str) -> tuple[Any, ...]:
    """The values setting ``key`` of ``section`` allows, for flags that offer the same."""
    return next(f.metadata["choices"] for f in fields(section) if f.name == key)


FEW_CORES = 4  # up to this many cores the model needs them all: codecs get one thread each


def codec_threads(requested: int) -> int:
    """FFmpeg's thread_count for a codec: ``requested``, or for 0 one thread on few cores and FFmpeg's choice (0) above."""
    if requested:
        return requested
    return 1 if (os.cpu_count() or 1) <= FEW_CORES else 0


EXCERPT_CHARS = 80  # the most characters of a bad value an error message shows
# Bounded at every level, so that the excerpt of a huge value (a YAML alias bomb expands to millions of items)
# costs as little as that of a small one: reprlib stops after these counts instead of formatting it all.
_EXCERPT = reprlib.Repr()
_EXCERPT.maxlevel, _EXCERPT.maxlist, _EXCERPT.maxdict, _EXCERPT.maxtuple, _EXCERPT.maxset = 3, 4, 4, 4, 4
_EXCERPT.maxstring, _EXCERPT.maxother, _EXCERPT.maxlong = EXCERPT_CHARS, EXCERPT_CHARS, EXCERPT_CHARS
# A configuration file holds at most this many values with its YAML aliases expanded: a real one (zones with their
# points, a streams: list of a thousand cameras) has a few thousand; 380 bytes of nested aliases expand to 387 million.
MAX_CONFIG_VALUES = 100_000


def excerpt(value: Any) -> str:
    """A bad value as an error message shows it: its repr, cut to at most ``EXCERPT_CHARS`` characters without
    formatting the rest, so a message about a huge value is as short and as quick as any other."""
    text = _EXCERPT.repr(value)
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS - 3] + "..."


def _type_name(f: dataclasses.Field[Any]) -> tuple[str, bool]:
    """A field's type as written (``int``, ``list[str]``, ...) and whether it may be None."""
    name = f.type if isinstance(f.type, str) else f.type.__name__
    return name.removesuffix(" | None"), name.endswith(" | None")


def _coerce(f: dataclasses.Field[Any], value: Any) -> Any:
    """An int where a float is expected becomes that float (YAML and callers write 1 for 1.0)."""
    def as_float(v: Any) -> Any:
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v

    expected, _ = _type_name(f)
    if expected == "float":
        return as_float(value)
    if expected == "list[float]" and isinstance(value, list):
        return [as_float(v) for v in value]
    return value


_TYPE_CHECKS: dict[str, tuple[str, Any]] = {
    "bool": ("bool", lambda v: isinstance(v, bool)),
    "int": ("int", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "float": ("float", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
    "str": ("str", lambda v: isinstance(v, str)),
    "list[str]": ("list of strings", lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v)),
    "list[dict[str, Any]]": ("list of mappings", lambda v: isinstance(v, list) and all(isinstance(i, dict) for i in v)),
    "list[float]": ("list of numbers", lambda v: isinstance(v, list) and all(
        isinstance(i, (int, float)) and not isinstance(i, bool) for i in v)),
}


def _check_value(path: str, f: dataclasses.Field[Any], value: Any) -> str | None:
    """Return a problem description for ``value`` at ``path``, or None if it is valid."""
    expected, optional = _type_name(f)
    if value is None and optional:
        return None
    shown, type_ok = _TYPE_CHECKS[expected]
    if not type_ok(value):
        return f"{path}: expected {shown}{' or null' if optional else ''}, got {type(value).__name__} {excerpt(value)}"
    meta = f.metadata
    if meta.get("choices") and value not in meta["choices"]:
        return f"{path}: {excerpt(value)} is not one of {', '.join(map(str, meta['choices']))}"
    for item in value if isinstance(value, list) else [value]:
        # NaN passes every comparison below (each is False), and infinity is no setting's meaning: both are refused
        # whether or not the setting has bounds.
        if isinstance(item, float) and not math.isfinite(item):
            return f"{path}: {item} is not a finite number"
        if meta.get("min") is not None and item < meta["min"]:
            return f"{path}: {item!r} is below the minimum {meta['min']}"
        if meta.get("max") is not None and item > meta["max"]:
            return f"{path}: {item!r} is above the maximum {meta['max']}"
        if meta.get("above") is not None and not item > meta["above"]:
            return f"{path}: {item!r} is not above {meta['above']}"
        if meta.get("below") is not None and not item < meta["below"]:
            return f"{path}: {item!r} is not below {meta['below']}"
    return None


def _shown(key: Any) -> str:
    """A key as it can be shown on one line: plain names as they are, anything else quoted."""
    return key if isinstance(key, str) and key.isidentifier() and len(key) <= EXCERPT_CHARS else excerpt(key)


def _dotted(section_name: str, key: Any) -> str:
    return f"{section_name}.{_shown(key)}"


def _section_changes(section: Any, values: dict[Any, Any], path_of: Callable[[Any], str],
                     problems: list[str]) -> Any:
    """``section`` with the valid ``values`` applied; a line in ``problems`` for each invalid one."""
    known = {f.name: f for f in fields(section)}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        path = path_of(key)
        if key not in known:
            problems.append(f"{path}: unknown key (known: {', '.join(known)})")
            continue
        value = _coerce(known[key], value)
        problem = _check_value(path, known[key], value)
        if problem:
            problems.append(problem)
        else:
            changes[key] = value
    return dataclasses.replace(section, **changes)


def apply_overrides(config: Config, overrides: dict[str, Any], origin: str) -> Config:
    """Return a copy of ``config`` with a nested ``{section: {key: value}}`` mapping applied.

    Every problem (unknown key, wrong type, out-of-range value) is collected
    and reported in one ConfigError so that users fix a file in one go.
    """
    problems: list[str] = []
    updated = dataclasses.replace(config)
    if not isinstance(overrides, dict):
        raise ConfigError(f"{origin}: expected a mapping of sections, got {type(overrides).__name__}")
    for section_name, values in overrides.items():
        if section_name == "streams":
            updated.streams = _parse_streams(updated, values, origin, problems)
            continue
        section = getattr(config, str(section_name), None) if str(section_name) in SECTION_HELP else None
        if section is None:
            problems.append(f"{_shown(section_name)}: unknown section (known: {', '.join(SECTION_HELP)}, streams)")
            continue
        if values is None:
            continue
        if not isinstance(values, dict):
            problems.append(f"{section_name}: expected a mapping, got {type(values).__name__}")
            continue
        changed = _section_changes(section, values, functools.partial(_dotted, section_name), problems)
        setattr(updated, section_name, changed)
    if problems:
        raise ConfigError(f"{origin}: " + "; ".join(problems))
    return updated


def apply_section_overrides(section: SectionT, values: dict[str, Any], origin: str,
                            path_of: Callable[[str], str]) -> SectionT:
    """``apply_overrides`` for one section on its own, each key shown as ``path_of(key)`` (a flag, say)."""
    problems: list[str] = []
    updated: SectionT = _section_changes(section, values, path_of, problems)
    if problems:
        raise ConfigError(f"{origin}: " + "; ".join(problems))
    return updated


def _parse_streams(config: Config, values: Any, origin: str, problems: list[str]) -> list[StreamConfig]:
    """The ``streams:`` list: each entry a mapping with a source; its live/tracking overrides checked like the sections."""
    if not isinstance(values, list) or not values:
        problems.append(f"streams: expected a non-empty list of streams, got {type(values).__name__}")
        return []
    streams = []
    for i, entry in enumerate(values):
        where = f"streams[{i}]"
        if isinstance(entry, str):
            entry = {"source": entry}
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected a mapping with a source, got {type(entry).__name__}")
            continue
        bad = False
        for key, value in entry.items():
            kind = STREAM_KEYS.get(key)
            if kind is None:
                problems.append(f"{where}.{_shown(key)}: unknown key (known: {', '.join(STREAM_KEYS)})")
                bad = True
            elif not isinstance(value, kind):
                problems.append(f"{where}.{_shown(key)}: expected {kind.__name__}, got {type(value).__name__} "
                                f"{excerpt(value)}")
                bad = True
        if "source" not in entry:
            problems.append(f"{where}: no source")
            bad = True
        for section in ("live", "tracking", "analytics"):
            if isinstance(entry.get(section), dict):
                try:
                    apply_overrides(config, {section: entry[section]}, where)
                except ConfigError as exc:
                    problems.append(str(exc))
                    bad = True
        if not bad:
            streams.append(StreamConfig(**entry))
    names = [s.name for s in streams if s.name]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"streams: the name {excerpt(name)} is given to several streams")
    return streams


def stream_config(config: Config, stream: StreamConfig) -> Config:
    """The settings one stream runs with: the run's, with the stream's own live, tracking and analytics overrides."""
    return apply_overrides(config, {"live": stream.live, "tracking": stream.tracking, "analytics": stream.analytics},
                           stream.name or mask_credentials(stream.source))


def load_config(path: str | Path | None = None) -> Config:
    """Defaults, overlaid with the YAML file at ``path`` when one is given."""
    config = Config()
    if path is None:
        return config
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{line}: {getattr(exc, 'problem', exc)}") from exc
    except RecursionError:  # PyYAML's composer recurses once per level of nesting
        raise ConfigError(f"config file {path} is nested too deeply to read") from None
    if data is None:
        return config
    _check_expanded_size(data, path)
    return apply_overrides(config, data, str(path))


def _check_expanded_size(data: Any, path: Path) -> None:
    """Refuse a file whose YAML aliases expand beyond ``MAX_CONFIG_VALUES`` values, or refer to themselves.

    PyYAML builds an alias as a shared reference, so loading such a file is cheap; whatever later walks the values
    (validating them, copying the settings, writing them into a manifest) pays for every expanded copy. Each
    mapping and list is counted once (its size is remembered), in a loop rather than a recursion, so neither a
    bomb nor deep nesting costs more than the file's own size.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        node, children_done = stack.pop()
        if not isinstance(node, (dict, list)) or (key := id(node)) in sizes:
            continue
        children = list(node.values()) if isinstance(node, dict) else node
        if children_done:
            sizes[key] = 1 + sum(sizes.get(id(child), 1) for child in children)
            if sizes[key] > MAX_CONFIG_VALUES:
                raise ConfigError(f"config file {path} holds more than {MAX_CONFIG_VALUES} values once its YAML "
                                  "aliases are expanded (aliases of aliases?)")
            continue
        if key in open_nodes:
            raise ConfigError(f"config file {path} has a YAML alias that refers to itself")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children)


def config_to_dict(config: Config) -> dict[str, Any]:
    """The settings as a YAML-ready mapping, as a config file would hold them (``streams`` only when there are any)."""
    data = dataclasses.asdict(config)
    if not data["streams"]:
        del data["streams"]
    return data


def render_default_yaml() -> str:
    """The commented default configuration, as written to ``configs/default.yaml``."""
    lines = [
        "# rtseg default configuration: every setting, with its default value.",
        "# Use another file with --config FILE; command-line flags override both.",
        "# Generated from rtseg/core/config.py (python -m rtseg.core.config > configs/default.yaml).",
        "# What each setting costs and buys, with measurements: docs/configuration.md.",
    ]
    defaults = Config()
    for section in fields(Config):
        if section.name not in SECTION_HELP:
            continue
        lines.append("")
        lines.append(f"{section.name}:  # {SECTION_HELP[section.name]}")
        values = getattr(defaults, section.name)
        for f in fields(values):
            value = yaml.safe_dump(getattr(values, f.name), default_flow_style=True).strip()
            value = value.removesuffix("\n...").removesuffix("...").strip()
            lines.append(f"  {f.name}: {value}  # {f.metadata['help']}")
    lines += ["", "# streams:  # several sources in one run, each with its own outputs and live/tracking overrides",
              "#   - {name: gate, source: 'rtsp://cam1/stream', output: gate.mp4, live: {read_timeout: 3}}",
              "#   - {source: archive/clip.mp4, save_json: clip.jsonl, tracking: {max_age: 60}}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_default_yaml(), end="")
