"""Capture stage: opens a source and yields decoded ``Frame`` records.

Decoding happens in the capture thread (the pipeline iterates ``frames()``
there). Files are read with PyAV so that every frame keeps its own presentation
timestamp; a packet the decoder rejects is skipped and counted rather than
ending the run, because one damaged second of surveillance footage should not
cost the rest of the file. Webcams and stream URLs are live sources
(``rtseg.live``); ``open_source`` picks the reader from the source string.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np

from rtseg.core.config import codec_threads
from rtseg.core.errors import SourceError
from rtseg.core.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from rtseg.core.pixels import DEFAULT_MAX_PIXELS, check_frame_size, decode_image, image_size
from rtseg.core.structures import Frame
from rtseg.sources.base import SourceInfo, check_readable_file, ffmpeg_reason

log = logging.getLogger(__name__)


def mp4_without_index(path: Path) -> bool:
    """An ISO-BMFF file (MP4, MOV) holding media data but no ``moov`` box: one cut short before its recorder wrote
    the index at the end. Only the top-level box headers are read (a seek each), so a large file costs nothing."""
    import struct

    boxes: set[bytes] = set()
    try:
        with path.open("rb") as file:
            size, offset = path.stat().st_size, 0
            while offset + 8 <= size and len(boxes) < 64:
                file.seek(offset)
                length, kind = struct.unpack(">I4s", file.read(8))
                if length == 1 and offset + 16 <= size:  # a 64-bit size follows the type
                    (length,) = struct.unpack(">Q", file.read(8))
                boxes.add(kind)
                if length < 8:  # 0: the box runs to the end of the file
                    break
                offset += length
    except OSError:
        return False
    return b"ftyp" in boxes and b"mdat" in boxes and b"moov" not in boxes and b"moof" not in boxes


class FileSource:
    """A video file decoded with PyAV, frames in presentation order with source timestamps.

    The frame size is judged from the stream's codec parameters when the file opens, before any frame is decoded
    (and so before the model loads): over ``pipeline.max_pixels``, under 16 pixels a side or stretched past 64:1
    is one line (``check_frame_size``). A frame that later comes in another size is judged again before it is
    converted.
    """

    reconnects = 0
    reconnecting = False

    def __init__(self, path: str | Path, threads: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        """``threads``: decoder threads, as ``pipeline.decoder_threads`` (0 = automatic, see ``codec_threads``);
        ``max_pixels``: the largest frame decoded, as ``pipeline.max_pixels``."""
        self.path = Path(path)
        self._max_pixels = max_pixels
        self.decode_errors = 0
        check_readable_file(self.path)
        try:
            self._container = av.open(str(self.path), mode="r")
        except av.error.FFmpegError as exc:
            if mp4_without_index(self.path):
                raise SourceError(f"cannot read {self.path} as video: an MP4 cut short before its index (the moov box, "
                                  "written last by most recorders) was written; without it its frames can be neither "
                                  "found nor decoded (the codec setup is in that box)") from exc
            raise SourceError(f"cannot read {self.path} as video: {ffmpeg_reason(exc)}") from exc
        try:
            if not self._container.streams.video:
                raise SourceError(f"{self.path} has no video stream")
            self._stream = self._container.streams.video[0]
            self._stream.thread_type = "AUTO"
            self._stream.codec_context.thread_count = codec_threads(threads)
            ctx = self._stream.codec_context
            if not ctx.width or not ctx.height:
                raise SourceError(f"{self.path}: video stream has no frame size (damaged or unsupported file)")
            check_frame_size(ctx.width, ctx.height, max_pixels, f"{self.path}'s video")
            self.info = SourceInfo(
                name=str(self.path),
                width=ctx.width,
                height=ctx.height,
                time_base=self._stream.time_base or Fraction(1, 90000),
                frame_rate=self._stream.average_rate or self._stream.guessed_rate,
                frame_count=self._stream.frames or None,
                has_audio=bool(self._container.streams.audio),
                is_file=True,
            )
        except BaseException:
            self._container.close()
            raise

    def frames(self) -> Iterator[Frame]:
        index = 0
        last_pts: int | None = None
        default_step = _frame_step(self.info)
        for packet in self._container.demux(self._stream):
            try:
                decoded = packet.decode()
            except av.error.FFmpegError as exc:
                self.decode_errors += 1
                log.warning("skipping undecodable data in %s at packet %s: %s", self.path, packet.pts, ffmpeg_reason(exc))
                continue
            for video_frame in decoded:
                if (video_frame.width, video_frame.height) != (self.info.width, self.info.height):
                    check_frame_size(video_frame.width, video_frame.height, self._max_pixels,
                                     f"frame {index} of {self.path}")
                pts = _next_pts(video_frame.pts, last_pts, default_step)
                last_pts = pts
                yield Frame(
                    index=index,
                    image=video_frame.to_ndarray(format="rgb24"),
                    pts=pts,
                    time_base=self.info.time_base,
                    captured_at=time.monotonic(),
                )
                index += 1

    def stop(self) -> None:
        """Nothing to interrupt: decoding a file never waits for long between frames."""

    def close(self) -> None:
        self._container.close()


class RealtimeFileSource:
    """A file released at its own pace, as a live camera would send it (``--realtime``).

    Frames keep the file's timestamps (so its audio can still be copied), but
    they are handed on when their time comes and ``captured_at`` is that moment,
    so the pipeline's live policy (drop rather than wait) and latency figures
    can be shown and tested with any clip.
    """

    reconnects = 0
    reconnecting = False

    def __init__(self, path: str | Path, threads: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self._file = FileSource(path, threads=threads, max_pixels=max_pixels)
        self.info = dataclasses.replace(self._file.info, is_live=True)
        self._stopping = threading.Event()

    @property
    def decode_errors(self) -> int:
        return self._file.decode_errors

    def frames(self) -> Iterator[Frame]:
        origin: float | None = None  # monotonic time at which the file's timestamp 0 is due
        for frame in self._file.frames():
            if origin is None:
                origin = time.monotonic() - frame.timestamp
            if self._stopping.wait(max(0.0, origin + frame.timestamp - time.monotonic())):
                return
            frame.captured_at = time.monotonic()
            yield frame

    def stop(self) -> None:
        self._stopping.set()

    def close(self) -> None:
        self._file.close()


def _frame_step(info: SourceInfo) -> int:
    """One frame's duration in time-base units, used when a frame carries no timestamp."""
    if info.frame_rate:
        return max(1, round(1 / (info.frame_rate * info.time_base)))
    return 1


def _next_pts(pts: int | None, last_pts: int | None, step: int) -> int:
    """The frame's own timestamp, repaired only where it is missing or not increasing (muxers need both)."""
    if last_pts is None:
        return pts if pts is not None else 0
    if pts is None:
        return last_pts + step
    return max(pts, last_pts + 1)


class ImageSource:
    """Still images (one file, a directory, or a glob), one ``Frame`` each, their sizes judged before any is decoded.

    Every image's size is read from its header when the source opens (a header read each, no decoding), so an
    image over ``pipeline.max_pixels``, under 16 pixels a side or stretched past 64:1 is refused in one line before
    the model loads, whichever place it has in the folder. A damaged image in a folder is skipped and counted like
    an undecodable packet; every frame keeps its file name so the annotated copy can carry the same one.
    """

    reconnects = 0
    reconnecting = False

    def __init__(self, paths: list[Path], name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.paths = paths
        self.decode_errors = 0
        self._max_pixels = max_pixels
        names = [p.name for p in paths]
        if len(set(names)) != len(names):
            duplicate = next(n for n in names if names.count(n) > 1)
            raise SourceError(f"{name} matches several images named {duplicate}; outputs would overwrite each other")
        sizes = [image_size(path) for path in paths]
        for path, size in zip(paths, sizes):
            if size is not None:
                check_frame_size(*size, max_pixels, str(path))
        if len(paths) == 1 and sizes[0] is None:
            raise SourceError(f"cannot read {paths[0]} as an image")
        width, height = sizes[0] if len(paths) == 1 and sizes[0] is not None else (0, 0)
        self.info = SourceInfo(name=name, width=width, height=height, time_base=Fraction(1), frame_rate=Fraction(1),
                               frame_count=len(paths), has_audio=False, is_file=False)

    def _read(self, path: Path) -> np.ndarray | None:
        return decode_image(path, self._max_pixels, str(path))

    def frames(self) -> Iterator[Frame]:
        index = 0
        for path in self.paths:
            image = self._read(path)
            if image is None:
                self.decode_errors += 1
                log.warning("skipping unreadable image %s", path)
                continue
            yield Frame(index=index, image=image, pts=index, time_base=Fraction(1), captured_at=time.monotonic(),
                        name=path.name)
            index += 1

    def stop(self) -> None:
        """Reading a still never waits; the pipeline's halt is enough."""

    def close(self) -> None:
        """Each image is read and released in ``frames``; nothing stays open."""


def _collection(source: str) -> list[Path] | None:
    """The files a glob or directory names, sorted; None when the source is neither."""
    if any(ch in source for ch in "*?["):
        return sorted(p for p in map(Path, glob.glob(source, recursive=True)) if p.is_file())
    path = Path(source)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file())
    return None


def _split_collection(source: str, files: list[Path]) -> tuple[list[Path], list[Path]]:
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    videos = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
    if images and videos:
        raise SourceError(f"{source} holds both images and videos; name one kind with a glob (e.g. '{source}/*.mp4')")
    if not images and not videos:
        kinds = f"images: {', '.join(IMAGE_SUFFIXES)}; videos: {', '.join(VIDEO_SUFFIXES)}"
        if any(ch in source for ch in "*?["):
            raise SourceError(f"no images or videos match {source} ({kinds})")
        raise SourceError(f"source is a directory with no images or videos ({kinds}): {source}")
    return images, videos


def image_paths(source: str) -> list[Path] | None:
    """The still images a source string names (file, directory or glob), or None if it names video."""
    files = _collection(source)
    if files is not None:
        images, _ = _split_collection(source, files)
        return images or None
    path = Path(source)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        check_readable_file(path)
        return [path]
    return None


def video_paths(source: str) -> list[Path] | None:
    """The videos of an archive (a directory or glob of video files), or None if the source names no archive."""
    files = _collection(source)
    if files is None:
        return None
    _, videos = _split_collection(source, files)
    return videos or None
