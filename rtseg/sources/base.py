"""What every source is: its ``SourceInfo`` and the ``VideoSource`` protocol the capture stage reads."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import av.error

from rtseg.core.errors import SourceError
from rtseg.core.structures import Frame


@dataclass
class SourceInfo:
    """What is known about a source before its first frame is decoded."""

    name: str
    width: int
    height: int
    time_base: Fraction
    frame_rate: Fraction | None
    frame_count: int | None
    has_audio: bool
    is_file: bool
    is_live: bool = False  # frames arrive at the source's pace: drop rather than wait (``Pipeline``)


class VideoSource(Protocol):
    info: SourceInfo
    reconnects: int

    @property
    def decode_errors(self) -> int:
        """Undecodable packets (or unreadable images) skipped so far; read-only to readers of the source."""

    @property
    def reconnecting(self) -> bool:
        """True between a lost connection and the next one (the live view shows so); files never reconnect."""

    def frames(self) -> Iterator[Frame]: ...

    def stop(self) -> None:
        """Ask a ``frames()`` that may be waiting (pacing, reconnecting) to return soon; any thread."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class SourceSpec:
    """What a source string names, decided without touching the file system or the network.

    ``kind`` is 'file', 'camera' or 'stream'; ``target`` is what the reader opens
    (path, URL, or camera device path); ``name`` is safe to show (credentials masked).
    """

    kind: str
    target: str
    name: str
    camera_index: int | None = None
    scheme: str = ""


def check_readable_file(path: Path) -> None:
    try:
        if not path.exists():
            raise SourceError(f"source not found: {path}")
        if path.is_dir():
            raise SourceError(f"source is a directory, not a video file: {path}")
        with path.open("rb") as handle:
            if not handle.read(1):
                raise SourceError(f"source is empty: {path}")
    except PermissionError as exc:
        raise SourceError(f"source is not readable (permission denied): {path}") from exc
    except OSError as exc:  # a name too long, a device that cannot be read, ...
        raise SourceError(f"cannot read source {path}: {exc.strerror or exc}") from exc


def ffmpeg_reason(exc: av.error.FFmpegError) -> str:
    return getattr(exc, "strerror", None) or str(exc)
