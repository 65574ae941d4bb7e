"""Live sources: webcams (OpenCV) and stream URLs (PyAV), read as frames arrive and reconnected when lost.

A live source never ends by itself: end of stream, a read error, or no frame
within ``live.read_timeout`` is a disconnect (a killed RTSP server looks exactly
like the end of a file; a hung one sends nothing). The source then reconnects
with exponential backoff, one notice per attempt, while the pipeline keeps
running. Frames are stamped with the capture clock (time since the first frame,
in 1/90000 s) rather than the stream's own timestamps, which start again on
every connection: the timeline stays monotonic across reconnects and a
recording plays at real speed, outages included.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from typing import Protocol

import av
import av.error
import cv2
import numpy as np

from rtseg.core.config import LiveConfig
from rtseg.core.errors import SourceError
from rtseg.core.pixels import DEFAULT_MAX_PIXELS, check_frame_size
from rtseg.core.structures import Frame
from rtseg.sources.base import SourceInfo, SourceSpec, ffmpeg_reason

log = logging.getLogger(__name__)

CLOCK_RATE = 90000  # ticks per second of live timestamps (MPEG's clock: fine enough for any frame rate)
TIME_BASE = Fraction(1, CLOCK_RATE)


class Disconnected(Exception):
    """A connection stopped delivering frames; the message says why."""


class Connection(Protocol):
    """One session with a live source; a fresh one is opened after every disconnect."""

    width: int
    height: int
    frame_rate: Fraction | None
    decode_errors: int

    def read(self) -> np.ndarray:
        """The next RGB frame; raises ``Disconnected`` when none will come."""

    def close(self) -> None: ...


class StreamConnection:
    """One PyAV session with a stream URL (or, given ``format``, an FFmpeg device or filter graph).

    Its frame size, from the stream's codec parameters, is judged against ``max_pixels`` when it opens; a frame
    that comes in another size (a camera switching modes) is judged again before it is converted.
    """

    def __init__(self, url: str, name: str, settings: LiveConfig, options: dict[str, str] | None = None,
                 format: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.decode_errors = 0
        self._name = name
        self._max_pixels = max_pixels
        self._read_timeout = settings.read_timeout
        started = time.monotonic()
        try:
            self._container = av.open(url, format=format, options=options or {},
                                      timeout=(settings.open_timeout, settings.read_timeout))
        except av.error.FFmpegError as exc:
            # A timeout surfaces as ExitError, TimeoutError or (from RTSP's handshake) "invalid data".
            timed_out = isinstance(exc, (av.error.ExitError, av.error.TimeoutError))
            if timed_out or time.monotonic() - started >= settings.open_timeout:
                raise SourceError(f"cannot open {name}: no answer within {settings.open_timeout:g} s") from exc
            raise SourceError(f"cannot open {name}: {ffmpeg_reason(exc)}") from exc
        try:
            if not self._container.streams.video:
                raise SourceError(f"{name} has no video stream")
            stream = self._container.streams.video[0]
            stream.thread_type = "SLICE"  # frame threading would hold several frames back: latency
            self.width, self.height = stream.codec_context.width, stream.codec_context.height
            if self.width and self.height:  # an unknown size (0) is judged on the first frame
                check_frame_size(self.width, self.height, max_pixels, f"{name}'s video")
            self.frame_rate: Fraction | None = stream.average_rate or stream.guessed_rate
            self._packets = self._container.demux(stream)
        except BaseException:
            self._container.close()
            raise
        self._decoded: deque[av.VideoFrame] = deque()

    def read(self) -> np.ndarray:
        deadline = time.monotonic() + self._read_timeout
        while not self._decoded:
            if time.monotonic() > deadline:  # data arrives, but nothing decodable
                raise Disconnected(f"no frame for {self._read_timeout:g} s")
            try:
                packet = next(self._packets)
            except StopIteration as exc:
                raise Disconnected("end of stream") from exc
            except (av.error.ExitError, av.error.TimeoutError) as exc:  # PyAV's read timeout fired
                raise Disconnected(f"no data for {self._read_timeout:g} s") from exc
            except av.error.FFmpegError as exc:
                raise Disconnected(ffmpeg_reason(exc)) from exc
            try:
                self._decoded.extend(packet.decode())
            except av.error.FFmpegError as exc:
                self.decode_errors += 1
                log.debug("skipping undecodable data from %s: %s", self._name, ffmpeg_reason(exc))
        frame = self._decoded.popleft()
        if (frame.width, frame.height) != (self.width, self.height):
            check_frame_size(frame.width, frame.height, self._max_pixels, f"{self._name}'s video")
        return frame.to_ndarray(format="rgb24")

    def close(self) -> None:
        self._container.close()


class CameraConnection:
    """One OpenCV session with a webcam (or whatever ``cv2.VideoCapture`` opens); frames leave as RGB.

    The size the camera grants is judged against ``max_pixels`` when it opens.
    """

    def __init__(self, target: int | str, name: str, settings: LiveConfig, api: int = cv2.CAP_ANY,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.decode_errors = 0
        params: list[int] = []
        if api == cv2.CAP_FFMPEG:  # the only backend that honours open/read timeouts
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, round(settings.open_timeout * 1000),
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, round(settings.read_timeout * 1000)]
        with _quiet_opencv():
            capture = cv2.VideoCapture(target, api, params)
        try:
            if not capture.isOpened():
                raise SourceError(f"cannot open {name}: no such camera, or another program is using it")
            _request_format(capture, name, settings)
            self.width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
            self.height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
            if self.width and self.height:  # some backends report 0 until the first frame
                check_frame_size(self.width, self.height, max_pixels, f"{name}'s video")
            fps = capture.get(cv2.CAP_PROP_FPS)
            self.frame_rate = Fraction(fps).limit_denominator(1001) if fps > 0 else None
        except BaseException:
            capture.release()
            raise
        self._capture = capture

    def read(self) -> np.ndarray:
        ok, image = self._capture.read()
        if not ok or image is None:
            raise Disconnected("no frame from the camera (unplugged, or its stream ended)")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self._capture.release()


def _request_format(capture: cv2.VideoCapture, name: str, settings: LiveConfig) -> None:
    """Ask for the configured size and rate; cameras pick their nearest mode, so say what was granted."""
    wanted = {cv2.CAP_PROP_FRAME_WIDTH: settings.camera_width, cv2.CAP_PROP_FRAME_HEIGHT: settings.camera_height,
              cv2.CAP_PROP_FPS: settings.camera_fps}
    asked = {prop: value for prop, value in wanted.items() if value}
    if not asked:
        return
    for prop, value in asked.items():
        capture.set(prop, value)
    granted = {prop: capture.get(prop) for prop in asked}
    if any(abs(granted[prop] - value) > 0.01 for prop, value in asked.items()):
        got = (f"{capture.get(cv2.CAP_PROP_FRAME_WIDTH):.0f}x{capture.get(cv2.CAP_PROP_FRAME_HEIGHT):.0f}"
               f" at {capture.get(cv2.CAP_PROP_FPS):g} fps")
        log.info("%s delivers %s, not exactly what live.camera_* asked for", name, got)


@contextmanager
def _quiet_opencv() -> Iterator[None]:
    """OpenCV prints several warnings when a camera is missing; our SourceError says it in one line."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def backoff_delay(attempt: int, settings: LiveConfig) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (1-based): doubling, capped."""
    return min(settings.reconnect_max_delay, settings.reconnect_delay * 2.0 ** min(attempt - 1, 64))


class LiveSource:
    """A live source that survives disconnects; frames carry capture-clock timestamps.

    ``connect`` opens one ``Connection`` or raises ``SourceError``; it is called
    once at start (failing there is the user's error, unless
    ``live.retry_at_start``) and again after every disconnect.
    """

    def __init__(self, name: str, connect: Callable[[], Connection], settings: LiveConfig) -> None:
        self.name = name
        self.reconnects = 0
        self._connect = connect
        self._settings = settings
        self._stopping = threading.Event()
        self._closed_decode_errors = 0
        self._connection: Connection | None = None
        try:
            self._connection = connect()
        except SourceError as exc:
            if not settings.retry_at_start:
                raise
            log.warning("%s; retrying (live.retry_at_start is on)", exc)
        first = self._connection
        self.info = SourceInfo(
            name=name, width=first.width if first else 0, height=first.height if first else 0,
            time_base=TIME_BASE, frame_rate=first.frame_rate if first else None, frame_count=None,
            has_audio=False, is_file=False, is_live=True,
        )

    @property
    def reconnecting(self) -> bool:
        """True between a disconnect and the next connection (the live view shows this instead of a frozen image)."""
        return self._connection is None

    @property
    def decode_errors(self) -> int:
        current = self._connection.decode_errors if self._connection is not None else 0
        return self._closed_decode_errors + current

    def frames(self) -> Iterator[Frame]:
        index, first, last_pts = 0, 0.0, -1
        while not self._stopping.is_set():
            if self._connection is None:
                self._connection = self._reconnect()
                if self._connection is None:
                    return
            try:
                image = self._connection.read()
            except Disconnected as exc:
                log.warning("lost %s: %s; reconnecting", self.name, exc)
                self._drop_connection()
                continue
            now = time.monotonic()
            if index == 0:
                first = now
            last_pts = max(round((now - first) * CLOCK_RATE), last_pts + 1)
            yield Frame(index=index, image=image, pts=last_pts, time_base=TIME_BASE, captured_at=now)
            index += 1

    def _reconnect(self) -> Connection | None:
        """A new connection, after backoff; None when stopped; SourceError once the attempts run out."""
        settings, limit = self._settings, self._settings.reconnect_attempts
        started, attempt = time.monotonic(), 0
        while True:
            attempt += 1
            if self._stopping.wait(backoff_delay(attempt, settings)):
                return None
            try:
                connection = self._connect()
            except SourceError as exc:
                if limit and attempt >= limit:
                    raise SourceError(f"gave up after {attempt} reconnect attempt(s): {exc}") from exc
                log.warning("reconnect attempt %d%s failed: %s; next attempt in %.1f s", attempt,
                            f" of {limit}" if limit else "", exc, backoff_delay(attempt + 1, settings))
                continue
            self.reconnects += 1
            log.warning("reconnected to %s (attempt %d, %.1f s after the loss)", self.name, attempt,
                        time.monotonic() - started)
            return connection

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._closed_decode_errors += connection.decode_errors
            connection.close()

    def stop(self) -> None:
        self._stopping.set()

    def close(self) -> None:
        self._drop_connection()


def stream_options(scheme: str, settings: LiveConfig) -> dict[str, str]:
    """FFmpeg options for one protocol: RTSP's transport, and a socket timeout as a backstop.

    PyAV's own open/read timeouts decide; the socket timeout is never shorter.
    RTMP gets none: there ``timeout`` means "listen for a publisher".
    """
    socket_timeout = str(round(max(settings.open_timeout, settings.read_timeout) * 1_000_000))
    if scheme in ("rtsp", "rtsps"):
        return {"rtsp_transport": settings.rtsp_transport, "timeout": socket_timeout}
    if scheme == "rtmp":
        return {}
    return {"timeout": socket_timeout}


def open_stream(spec: SourceSpec, settings: LiveConfig, max_pixels: int = DEFAULT_MAX_PIXELS) -> LiveSource:
    """A stream URL read with PyAV (RTSP over TCP unless configured otherwise)."""
    options = stream_options(spec.scheme, settings)
    return LiveSource(spec.name, lambda: StreamConnection(spec.target, spec.name, settings, options,
                                                          max_pixels=max_pixels), settings)


def open_camera(spec: SourceSpec, settings: LiveConfig, max_pixels: int = DEFAULT_MAX_PIXELS) -> LiveSource:
    """A webcam read with OpenCV: an index picks the platform's default backend, a /dev/videoN path V4L2."""
    if spec.camera_index is not None:
        target: int | str = spec.camera_index
        api = cv2.CAP_ANY
    else:
        target, api = spec.target, cv2.CAP_V4L2
    return LiveSource(spec.name, lambda: CameraConnection(target, spec.name, settings, api, max_pixels), settings)
