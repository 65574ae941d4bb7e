"""Settings: typed sections with their defaults, validated in one pass.

The dataclasses below are the single source of truth for every setting.
``configs/default.yaml`` is generated from them (``render_default_yaml``) and a
test keeps the two identical, so the commented file users read never drifts
from what the code does. Loading order: defaults < ``--config FILE`` < CLI flags.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from rtseg.core.errors import ConfigError


def _setting(default: Any, help: str, *, choices: tuple[Any, ...] | None = None,
             min: float | None = None, max: float | None = None) -> Any:
    """A dataclass field carrying its one-line comment and its allowed values."""
    meta = {"help": help, "choices": choices, "min": min, "max": max}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ModelConfig:
    name: str = _setting("maskrcnn_v1", "architecture: maskrcnn_v1 (ResNet-50 FPN) or maskrcnn_v2 (ResNet-50 FPN v2, more accurate, slower)",
                         choices=("maskrcnn_v1", "maskrcnn_v2"))
    weights: str = _setting("default", "'default' = torchvision's COCO weights (download cache), a path to a local state-dict file, or 'none' = random init")
    device: str = _setting("auto", "auto | cpu | cuda | cuda:N (auto picks CUDA when available)")
    precision: str = _setting("auto", "auto | fp32 | fp16 | bf16: the network's compute precision (auto = fp16 on CUDA, fp32 on CPU; bf16 is faster on CPUs with AVX512-BF16 but changes masks measurably, see docs/benchmarks.md)",
                              choices=("auto", "fp32", "fp16", "bf16"))
    score_threshold: float = _setting(0.5, "detections scoring below this are dropped", min=0.0, max=1.0)
    mask_threshold: float = _setting(0.5, "mask probability above which a pixel belongs to the object", min=0.0, max=1.0)
    classes: list = _setting([], "COCO class names to keep, e.g. [person, car]; empty keeps all")
    size: int = _setting(0, "shorter image side fed to the model; 0 = a fine-tuned checkpoint's training size, else the architecture's (800 for the ResNet-50 models); cost grows with its square: the source's own height avoids resampling, smaller misses small objects", min=0, max=4096)
    max_size: int = _setting(0, "cap on the longer image side fed to the model; 0 = in torchvision's 800:1333 proportion to size (1333 at least for the ResNet-50 models)", min=0, max=8192)
    batch_size: int = _setting(1, "frames per model call for file sources (amortises per-call overhead on a GPU; no consistent gain measured on the CPU, where it adds latency)", min=1, max=64)
    detections_per_image: int = _setting(100, "most detections kept per frame; the mask head runs once per detection (~0.5 GMAC each, the rest of the model ~75 GMAC at 432x768), so 100 cost about as much again as the whole model", min=1, max=1000)
    rpn_post_nms_top_n: int = _setting(0, "region proposals kept for the box head, whose cost is proportional (14 GMAC at 1000, ~18% of the model at 432x768); fewer may miss small or crowded objects; 0 = the architecture's own (1000 for the ResNet-50 models, 250 for maskrcnn_r18)", min=0, max=10000)
    channels_last: bool = _setting(True, "NHWC memory layout for the convolutions (same detections; much faster for bf16 with oneDNN on the CPU and for tensor cores on CUDA, neutral for fp32 on the CPU)")
    fp16_weights: bool = _setting(False, "CUDA fp16 only: model.half() instead of autocast (half the weight memory, no per-call weight casts; every layer then computes in fp16, where autocast keeps touchy ops in fp32)")


@dataclass
class PipelineConfig:
    capture_queue_size: int = _setting(8, "decoded frames waiting for the model (files; live sources use live.queue_size)", min=1, max=1024)
    render_queue_size: int = _setting(8, "inferred frames waiting for the renderer", min=1, max=1024)
    sink_queue_size: int = _setting(8, "rendered frames waiting for the sinks", min=1, max=1024)
    max_frames: int = _setting(0, "stop after this many frames per stream (0 = no limit)", min=0)
    batch_timeout_ms: float = _setting(5.0, "after a batch's first frame, wait at most this long for more streams' frames", min=0.0, max=10000.0)
    max_open_files: int = _setting(4, "archive videos processed at once (each has its own decoder, tracker and encoder)", min=1, max=256)
    stage_timeout: float = _setting(120.0, "seconds a stage may spend on one frame before the run is stopped as hung", min=0.1)


@dataclass
class LiveConfig:
    queue_size: int = _setting(1, "newest frames kept waiting for the model; older ones are dropped (and counted) so latency stays bounded", min=1, max=64)
    open_timeout: float = _setting(10.0, "seconds to wait for a stream to open (connect and probe) before giving up on that attempt", min=0.1, max=600.0)
    read_timeout: float = _setting(5.0, "seconds without a frame before a stream counts as disconnected", min=0.1, max=600.0)
    reconnect_delay: float = _setting(0.5, "seconds before the first reconnect attempt; doubles after each failed attempt", min=0.0, max=600.0)
    reconnect_max_delay: float = _setting(30.0, "cap on the wait between reconnect attempts", min=0.0, max=3600.0)
    reconnect_attempts: int = _setting(0, "reconnect attempts per disconnect before the run fails (0 = unlimited)", min=0)
    retry_at_start: bool = _setting(False, "keep retrying as after a disconnect when the source cannot be opened at start (default: fail at once)")
    rtsp_transport: str = _setting("tcp", "RTSP transport: tcp (reliable, works through NAT) or udp (lower latency, may lose packets)", choices=("tcp", "udp"))
    camera_width: int = _setting(0, "frame width to request from a webcam (0 = the camera's default)", min=0, max=16384)
    camera_height: int = _setting(0, "frame height to request from a webcam (0 = the camera's default)", min=0, max=16384)
    camera_fps: float = _setting(0.0, "frame rate to request from a webcam (0 = the camera's default)", min=0.0, max=1000.0)


@dataclass
class RenderConfig:
    alpha: float = _setting(0.5, "opacity of the mask overlay", min=0.0, max=1.0)
    contours: bool = _setting(True, "draw mask outlines")
    boxes: bool = _setting(True, "draw bounding boxes")
    labels: bool = _setting(True, "draw 'class score' labels")
    color_by: str = _setting("track", "what a colour follows: track (an object keeps its colour across frames), class, or index (detection order in each frame)",
                             choices=("track", "class", "index"))
    line_width: int = _setting(2, "thickness in pixels of boxes and contours", min=1, max=32)


@dataclass
class OutputConfig:
    crf: int = _setting(23, "H.264 quality (0 = lossless, 51 = worst; 18-28 is typical)", min=0, max=51)
    preset: str = _setting("veryfast", "x264 speed/size trade-off (ultrafast ... veryslow)",
                           choices=("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"))
    fragment_seconds: float = _setting(1.0, "fragmented MP4 with a keyframe and fragment this often: the file plays up to the last fragment even after a crash or kill (0 = classic MP4, finalised at the end)", min=0.0, max=60.0)
    copy_audio: bool = _setting(True, "copy the source's audio track into the MP4 without re-encoding")
    overwrite: bool = _setting(False, "replace existing output files")
    frames_every: int = _setting(1, "with --save-frames, keep every Nth annotated frame", min=1)
    show: bool = _setting(True, "show a live window (skipped with a notice when there is no display)")


@dataclass
class TrackingConfig:
    enabled: bool = _setting(True, "give each instance a stable id (and so a stable colour) across frames")
    match: str = _setting("iou", "overlap that pairs detections with tracks: iou (boxes; cheap, the better all-rounder in scripts/eval_tracking.py) or mask_iou (masks: tells apart objects that share a box, but finds objects again after occlusion less well; a few times slower)",
                          choices=("iou", "mask_iou"))
    iou_threshold: float = _setting(0.3, "least overlap (IoU) with a track's predicted box for a high-score detection to continue it", min=0.0, max=1.0)
    low_iou_threshold: float = _setting(0.25, "least overlap for a low-score detection to continue a track (raise it if low scores are mostly clutter)", min=0.0, max=1.0)
    high_score: float = _setting(0.5, "detections scoring at least this are matched first and may start new tracks (same as model.score_threshold by default)", min=0.0, max=1.0)
    low_score: float = _setting(0.1, "lowest score still used, in stage two, to keep a track alive; the model drops detections below model.score_threshold first, so lower that too for stage two to see any", min=0.0, max=1.0)
    low_score_claims: bool = _setting(True, "a track whose best fit is a low-score detection keeps it, rather than go to a higher-scoring neighbour or fragment (false = ByteTrack's strict high-first order)")
    min_hits: int = _setting(2, "consecutive frames a new track must be detected before it gets an id (hides one-frame false positives)", min=1, max=100)
    max_age: int = _setting(30, "frames a track survives without a detection (occlusion) before it is dropped", min=0, max=10000)


@dataclass
class ClusterConfig:
    workers: int = _setting(0, "Ray workers, each loading the model once and running rtseg's engine (--cluster); 0 = as many as the cluster's CPUs and GPUs hold, at most one per file or camera", min=0, max=100000)
    gpus_per_worker: float = _setting(-1.0, "GPUs each worker reserves; fractional (0.5) lets two workers share a GPU so one decodes while the other infers; 0 = CPU only (Ray hides the GPUs); -1 = 1 when the cluster has GPUs, else 0", min=-1.0, max=64.0)
    cpus_per_worker: float = _setting(2.0, "CPUs each worker reserves: decoding, tracking, rendering and encoding run beside the model", min=0.0, max=1024.0)
    max_attempts: int = _setting(3, "archives: tries per file (its worker died or it failed) before it is reported failed; the other files go on", min=1, max=100)
    max_restarts: int = _setting(5, "times Ray restarts a worker that died (camera fleets: its cameras resume there as new segments); -1 = always", min=-1, max=100000)


@dataclass
class StreamConfig:
    """One entry of a configuration file's ``streams:`` list: a source with its own outputs and settings.

    ``live`` and ``tracking`` override those sections for this stream only.
    """

    source: str
    name: str | None = None
    output: str | None = None
    save_json: str | None = None
    live: dict[str, Any] = field(default_factory=dict)
    tracking: dict[str, Any] = field(default_factory=dict)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    live: LiveConfig = field(default_factory=LiveConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    streams: list[StreamConfig] = field(default_factory=list)  # the sources of a multi-stream run, from a file


STREAM_KEYS = {"source": str, "name": str, "output": str, "save_json": str, "live": dict, "tracking": dict}


SECTION_HELP = {
    "model": "Mask R-CNN worker",
    "pipeline": "threads and bounded queues",
    "live": "webcams and stream URLs: latency, timeouts, reconnecting",
    "render": "drawing masks, boxes and labels",
    "output": "MP4 encoder and live window",
    "tracking": "instance identities across frames (ByteTrack-style, rtseg/track/)",
    "cluster": "Ray workers for archives and camera fleets (--cluster; docs/cluster.md)",
}


def _check_value(path: str, f: dataclasses.Field, value: Any) -> str | None:
    """Return a problem description for ``value`` at ``path``, or None if it is valid."""
    default = getattr(f, "default", None)
    expected = f.type if isinstance(f.type, str) else f.type.__name__
    if expected == "bool":
        ok = isinstance(value, bool)
    elif expected == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif expected == "str":
        ok = isinstance(value, str)
    elif expected == "list":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        expected = "list of strings"
    else:  # pragma: no cover - every field above has one of these types
        ok = isinstance(value, type(default))
    if not ok:
        return f"{path}: expected {expected}, got {type(value).__name__} {value!r}"
    meta = f.metadata
    if meta.get("choices") and value not in meta["choices"]:
        return f"{path}: {value!r} is not one of {', '.join(map(str, meta['choices']))}"
    if meta.get("min") is not None and value < meta["min"]:
        return f"{path}: {value!r} is below the minimum {meta['min']}"
    if meta.get("max") is not None and value > meta["max"]:
        return f"{path}: {value!r} is above the maximum {meta['max']}"
    return None


def _shown(key: Any) -> str:
    """A key as it can be shown on one line: plain names as they are, anything else quoted."""
    return key if isinstance(key, str) and key.isidentifier() else repr(key)


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
        known = {f.name: f for f in fields(section)}
        changes: dict[str, Any] = {}
        for key, value in values.items():
            path = f"{section_name}.{_shown(key)}"
            if key not in known:
                problems.append(f"{path}: unknown key (known: {', '.join(known)})")
                continue
            if known[key].type == "float" and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            problem = _check_value(path, known[key], value)
            if problem:
                problems.append(problem)
            else:
                changes[key] = value
        setattr(updated, section_name, dataclasses.replace(section, **changes))
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
                problems.append(f"{where}.{key}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
                bad = True
        if "source" not in entry:
            problems.append(f"{where}: no source")
            bad = True
        for section in ("live", "tracking"):
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
        problems.append(f"streams: the name {name!r} is given to several streams")
    return streams


def stream_config(config: Config, stream: StreamConfig) -> Config:
    """The settings one stream runs with: the run's, with the stream's own live and tracking overrides."""
    return apply_overrides(config, {"live": stream.live, "tracking": stream.tracking}, stream.name or stream.source)


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
    if data is None:
        return config
    return apply_overrides(config, data, str(path))


def config_to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def render_default_yaml() -> str:
    """The commented default configuration, as written to ``configs/default.yaml``."""
    lines = [
        "# rtseg default configuration: every setting, with its default value.",
        "# Use another file with --config FILE; command-line flags override both.",
        "# Generated from rtseg/core/config.py (python -m rtseg.core.config > configs/default.yaml).",
    ]
    for section in fields(Config):
        if section.name not in SECTION_HELP:
            continue
        lines.append("")
        lines.append(f"{section.name}:  # {SECTION_HELP[section.name]}")
        for f in fields(section.default_factory()):
            value = yaml.safe_dump(getattr(section.default_factory(), f.name), default_flow_style=True).strip()
            value = value.removesuffix("\n...").removesuffix("...").strip()
            lines.append(f"  {f.name}: {value}  # {f.metadata['help']}")
    lines += ["", "# streams:  # several sources in one run, each with its own outputs and live/tracking overrides",
              "#   - {name: gate, source: 'rtsp://cam1/stream', output: gate.mp4, live: {read_timeout: 3}}",
              "#   - {source: archive/clip.mp4, save_json: clip.jsonl, tracking: {max_age: 60}}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_default_yaml(), end="")
