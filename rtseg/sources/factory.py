"""``parse_source`` and ``open_source``: from a ``--source`` string to the reader that fits it."""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from rtseg.core.config import LiveConfig
from rtseg.core.errors import SourceError
from rtseg.core.pixels import DEFAULT_MAX_PIXELS
from rtseg.core.redaction import mask_credentials
from rtseg.sources.base import SourceSpec, VideoSource
from rtseg.sources.files import FileSource, ImageSource, RealtimeFileSource, image_paths
from rtseg.sources.live import open_camera, open_stream

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp")
_NEEDS_HOST = ("rtsp", "rtsps", "rtmp", "http", "https")
_MAX_CAMERA_INDEX = 999
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://")
_SCHEME_WITHOUT_SLASHES = re.compile(rf"(?:{'|'.join(STREAM_SCHEMES)}):(?!//)", re.IGNORECASE)
_CAMERA_INDEX = re.compile(r"[0-9]+", re.ASCII)
_CAMERA_DEVICE = re.compile(r"/dev/video[0-9]+", re.ASCII)


def parse_source(text: str) -> SourceSpec:
    """Classify a ``--source`` string; anything unusable is a ``SourceError`` with one clear line.

    A number (``0``) or ``/dev/videoN`` is a webcam, ``scheme://...`` a stream
    URL (see ``STREAM_SCHEMES``), anything else a file path.
    """
    if not isinstance(text, str):
        raise SourceError(f"source must be a string, got {type(text).__name__}")
    stripped = text.strip()
    name = mask_credentials(stripped)
    if not stripped:
        raise SourceError("empty source: give a video file, a camera index such as 0, or a stream URL")
    if "\x00" in text:
        raise SourceError(f"source contains a NUL character: {name!r}")
    try:
        os.fsencode(text)
    except UnicodeError as exc:
        raise SourceError(f"source contains characters that cannot be encoded: {name!r}") from exc
    if _CAMERA_INDEX.fullmatch(stripped):
        index = int(stripped)
        if index > _MAX_CAMERA_INDEX:
            raise SourceError(f"camera index {stripped} is out of range (0 to {_MAX_CAMERA_INDEX})")
        return SourceSpec("camera", stripped, f"camera {index}", camera_index=index)
    if _CAMERA_DEVICE.fullmatch(stripped):
        return SourceSpec("camera", stripped, f"camera {stripped}")
    scheme = _SCHEME.match(stripped)
    if scheme is None:
        if _SCHEME_WITHOUT_SLASHES.match(stripped):
            raise SourceError(f"{name} is not a valid stream URL: expected scheme://host/path, e.g. rtsp://192.168.1.10/stream")
        return SourceSpec("file", text, text)
    return _parse_url(stripped, scheme.group(1).lower(), name)


def _parse_url(url: str, scheme: str, name: str) -> SourceSpec:
    if scheme not in STREAM_SCHEMES:
        raise SourceError(f"unsupported source scheme {scheme}:// in {name} "
                          f"(supported: {', '.join(s + '://' for s in STREAM_SCHEMES)}, a camera index, or a file path)")
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise SourceError(f"malformed stream URL {name}: {mask_credentials(str(exc))}") from exc
    if scheme in _NEEDS_HOST and not host:
        raise SourceError(f"no host in stream URL {name}")
    if scheme in ("udp", "tcp") and port is None:
        raise SourceError(f"no port in stream URL {name} ({scheme}:// needs host:port)")
    return SourceSpec("stream", url, name, scheme=scheme)


def open_source(source: str, live: LiveConfig | None = None, realtime: bool = False,
                decoder_threads: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS) -> VideoSource:
    """The reader for a source string: PyAV for video files and stream URLs, OpenCV for webcams and stills.

    ``realtime`` plays a file at its own pace as if it were live; live sources
    are paced by nature, so it changes nothing for them. ``decoder_threads`` is
    ``pipeline.decoder_threads`` for video files; ``max_pixels`` is ``pipeline.max_pixels``: every reader judges its
    frame size against it before decoding a frame.
    """
    spec = parse_source(source)
    if spec.kind == "file":
        paths = image_paths(spec.target)
        if paths is not None:
            return ImageSource(paths, spec.target, max_pixels)
        if realtime:
            return RealtimeFileSource(spec.target, threads=decoder_threads, max_pixels=max_pixels)
        return FileSource(spec.target, threads=decoder_threads, max_pixels=max_pixels)
    settings = live or LiveConfig()
    if spec.kind == "camera":
        return open_camera(spec, settings, max_pixels)
    return open_stream(spec, settings, max_pixels)
