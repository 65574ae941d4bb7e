"""The MP4 sink: annotated frames into an H.264 MP4 that keeps the source's timeline and audio.

The MP4 sink reproduces the source timeline exactly: each frame is encoded with
the source's own timestamp and time base, so variable frame rate survives, and
the source's audio packets are copied alongside without re-encoding. Live
sources stamp frames with the capture clock, so their recordings play at real
speed; a live source that comes back with another frame size after a reconnect
is scaled into the recording's size (keeping its aspect ratio, black bars),
because an MP4 video track has one size. H.264 in yuv420p stores colour for
2x2 blocks, so an odd width or height is padded by one pixel, a copy of the last
column or row: 641x481 frames are recorded as 642x482.
"""

from __future__ import annotations

import errno
import logging
from fractions import Fraction
from pathlib import Path

import av
import av.error
import cv2
import numpy as np

from rtseg.core.config import OutputConfig, codec_threads
from rtseg.core.errors import RuntimeFailure
from rtseg.core.structures import Frame

log = logging.getLogger(__name__)


class _AudioCopier:
    """Copies the source's first audio stream packet by packet, keeping pace with the video.

    ``skip_priming`` drops packets before time zero (an AAC encoder's priming), which
    a fragmented MP4 would otherwise play by shifting every other stream later.
    """

    def __init__(self, source: str, output: av.container.OutputContainer, skip_priming: bool) -> None:
        self._skip_priming = skip_priming
        self._input = av.open(source)
        try:
            self._in_stream = self._input.streams.audio[0]
            self._out_stream = output.add_stream_from_template(self._in_stream)
        except BaseException:
            self._input.close()
            raise
        self._output = output
        self._packets = self._input.demux(self._in_stream)
        self._pending: av.Packet[av.AudioStream] | None = None

    def copy_until(self, seconds: float) -> None:
        """Mux every audio packet that starts before ``seconds``."""
        while True:
            packet = self._pending or next(self._packets, None)
            self._pending = None
            if packet is None:
                return
            if packet.dts is None or packet.pts is None or (self._skip_priming and packet.pts < 0):
                continue  # negative = encoder priming, which only an edit list (not in fragmented MP4) can hide
            time_base = self._in_stream.time_base
            if time_base is not None and packet.pts * time_base >= seconds:
                self._pending = packet
                return
            packet.stream = self._out_stream
            self._output.mux(packet)

    def close(self) -> None:
        self._input.close()


class Mp4Sink:
    """H.264 (libx264, yuv420p) MP4 with the source's timestamps and, optionally, its audio."""

    def __init__(self, path: str | Path, config: OutputConfig, audio_source: str | None = None,
                 frame_rate: Fraction | None = None) -> None:
        self.path = Path(path)
        self.config = config
        self.audio_source = audio_source
        self.frame_rate = frame_rate or Fraction(25)
        self.frames_written = 0
        self._container: av.container.OutputContainer | None = None
        self._stream: av.VideoStream | None = None
        self._audio: _AudioCopier | None = None
        self._end_seconds = 0.0
        self._size_warned: tuple[int, int] | None = None
        self._size = (0, 0)  # the first frame's (width, height): the recording's, before padding to even

    def _open(self, frame: Frame) -> None:
        self._size = (frame.width, frame.height)
        width, height = frame.width + frame.width % 2, frame.height + frame.height % 2
        if (width, height) != self._size:
            log.info("%dx%d frames are recorded as %dx%d: H.264 in yuv420p needs even sizes (the last column or row "
                     "is repeated)", frame.width, frame.height, width, height)
        fragment = self.config.fragment_seconds
        # Fragmented MP4: each keyframe starts a self-contained fragment on disk, so the file plays up to
        # the last fragment even if the process is killed before it can write a trailer. A fragmented file
        # has no edit list to hide an encoder delay, so B-frames are off there: timestamps stay exact.
        # flush_packets sends each finished fragment to the disk at once rather than when the I/O buffer fills.
        options = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"} if fragment else {}
        self._container = av.open(str(self.path), mode="w", format="mp4", options=options)
        stream = self._container.add_stream("libx264", rate=self.frame_rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = frame.time_base
        stream.codec_context.time_base = frame.time_base
        if fragment:
            stream.codec_context.gop_size = max(1, round(float(self.frame_rate) * fragment))
        stream.options = {"crf": str(self.config.crf), "preset": self.config.preset, **({"bf": "0"} if fragment else {})}
        stream.codec_context.thread_count = codec_threads(self.config.encoder_threads)
        self._stream = stream
        if self.audio_source and self.config.copy_audio:
            try:
                self._audio = _AudioCopier(self.audio_source, self._container, skip_priming=bool(fragment))
            except (IndexError, av.error.FFmpegError):
                self._audio = None  # the source has no audio track (or none we can copy)

    def write(self, frame: Frame) -> None:
        try:
            self._write(frame)
        except (OSError, av.error.FFmpegError) as exc:
            raise RuntimeFailure(f"cannot write {self.path}: {_io_reason(exc)}") from exc

    def _write(self, frame: Frame) -> None:
        if self._container is None:
            self._open(frame)
        assert self._stream is not None and self._container is not None
        image = self._fit(frame.rendered if frame.rendered is not None else frame.image)
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        video_frame.pts = frame.pts
        video_frame.time_base = frame.time_base
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self.frames_written += 1
        self._end_seconds = frame.timestamp
        if self._audio is not None:
            self._audio.copy_until(frame.timestamp)

    def _fit(self, image: np.ndarray) -> np.ndarray:
        """The image at the recording's size: a live source may change size after a reconnect; odd sizes padded."""
        assert self._stream is not None
        h, w = image.shape[:2]
        if (w, h) != self._size:
            image = self._scaled(image)
        pad_w, pad_h = self._stream.width - self._size[0], self._stream.height - self._size[1]
        return np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge") if pad_w or pad_h else image

    def _scaled(self, image: np.ndarray) -> np.ndarray:
        """A frame of another size scaled into the first frame's, keeping its aspect ratio (black bars)."""
        width, height = self._size
        h, w = image.shape[:2]
        if self._size_warned != (w, h):
            self._size_warned = (w, h)
            log.warning("frame size changed to %dx%d; scaling it into the recording's %dx%d", w, h, width, height)
        scale = min(width / w, height / h)
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        canvas = np.zeros((height, width, 3), np.uint8)
        top, left = (height - new_h) // 2, (width - new_w) // 2
        canvas[top: top + new_h, left: left + new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        return canvas

    def close(self) -> None:
        """Flush the encoder and finalise the file; safe to call after a failure or twice."""
        container, self._container = self._container, None
        if container is None:
            return
        try:
            self._finish(container)
        except (OSError, av.error.FFmpegError) as exc:
            raise RuntimeFailure(f"cannot finish {self.path}: {_io_reason(exc)}") from exc

    def _finish(self, container: av.container.OutputContainer) -> None:
        try:
            assert self._stream is not None
            for packet in self._stream.encode(None):
                container.mux(packet)
            if self._audio is not None:
                frame_seconds = 1 / float(self.frame_rate)
                self._audio.copy_until(self._end_seconds + frame_seconds)
        finally:
            try:
                if self._audio is not None:
                    self._audio.close()
            finally:
                container.close()


def _io_reason(exc: BaseException) -> str:
    code = getattr(exc, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on device"
    if code == errno.EFBIG:
        return "file size limit reached"
    return getattr(exc, "strerror", None) or str(exc)
