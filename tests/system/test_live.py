"""Live sources with real components: an RTSP server on loopback, paced lavfi and FIFO sources, reconnects, latency.

The RTSP tests start Debian's GStreamer RTSP server themselves (``rtseg.offline.rtsp.RtspServer``)
and are skipped where it is not installed, unless ``RTSEG_REQUIRE_LIVE=1`` (set by
``.ci/run``) turns that into a failure.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import socket
import statistics
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from helpers import SquareDetector, read_video
from hypothesis import given, settings
from hypothesis import strategies as st
from live_helpers import RecordingSink, stop_when

from rtseg.cli import main
from rtseg.core.config import Config, LiveConfig, OutputConfig
from rtseg.core.errors import SourceError
from rtseg.core.redaction import CredentialFilter, mask_credentials
from rtseg.core.structures import Frame
from rtseg.offline.rtsp import RtspServer, cut_clip, free_port, loop_clip
from rtseg.offline.stubs import IndexRecordingDetector, StampedSource
from rtseg.pipeline.engine import Pipeline
from rtseg.render.window import draw_status
from rtseg.sinks.mp4 import Mp4Sink
from rtseg.sources.base import SourceSpec
from rtseg.sources.factory import open_source, parse_source
from rtseg.sources.files import FileSource, RealtimeFileSource
from rtseg.sources.live import (
    TIME_BASE,
    CameraConnection,
    Disconnected,
    LiveSource,
    StreamConnection,
    backoff_delay,
    stream_options,
)

PACED_TESTSRC = "testsrc2=size=160x120:rate=25,realtime"


# -- fixtures and helpers -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory, sample_clip: Path) -> tuple[Path, int]:
    """The first ~3 s of the shipped sample (cut at a keyframe, not re-encoded) and its frame count."""
    path = tmp_path_factory.mktemp("clips") / "car-3s.mp4"
    return path, cut_clip(sample_clip, path, 3.0)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory, sample_clip: Path) -> Path:
    """The sample four times over (19 s, no re-encoding): a camera that streams longer than any outage test here."""
    path = tmp_path_factory.mktemp("clips") / "car-19s.mp4"
    loop_clip(sample_clip, path, 4)
    return path


def live_config(max_frames: int = 0, **live) -> Config:
    """Short but generous timeouts: two shared cores can stall a thread for a while."""
    config = Config()
    values = {"open_timeout": 10.0, "read_timeout": 3.0, "reconnect_delay": 0.2, "reconnect_max_delay": 1.0, **live}
    config.live = dataclasses.replace(config.live, **values)
    config.pipeline = dataclasses.replace(config.pipeline, render_queue_size=2, sink_queue_size=2, max_frames=max_frames)
    return config


def decode_all(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def when(condition, timeout: float) -> bool:
    """Wait (bounded) until ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def messages(caplog: pytest.LogCaptureFixture, prefix: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith(prefix)]


# -- the factory: which reader for which source string ----------------------------------------------------


@pytest.mark.parametrize("text, kind, target, index, scheme", [
    ("0", "camera", "0", 0, ""),
    (" 2 ", "camera", "2", 2, ""),
    ("/dev/video1", "camera", "/dev/video1", None, ""),
    ("rtsp://cam.local/stream1", "stream", "rtsp://cam.local/stream1", None, "rtsp"),
    ("RTSPS://cam.local:322/s", "stream", "RTSPS://cam.local:322/s", None, "rtsps"),
    ("rtmp://live.example/app/key", "stream", "rtmp://live.example/app/key", None, "rtmp"),
    ("http://cam.local/mjpg/video.mjpg", "stream", "http://cam.local/mjpg/video.mjpg", None, "http"),
    ("https://cdn.example/live/index.m3u8", "stream", "https://cdn.example/live/index.m3u8", None, "https"),
    ("udp://@239.0.0.1:1234", "stream", "udp://@239.0.0.1:1234", None, "udp"),
    ("tcp://127.0.0.1:9000", "stream", "tcp://127.0.0.1:9000", None, "tcp"),
    ("clip.mp4", "file", "clip.mp4", None, ""),
    ("/data/video 2.mp4", "file", "/data/video 2.mp4", None, ""),
    ("C:\\videos\\clip.mp4", "file", "C:\\videos\\clip.mp4", None, ""),
    ("/dev/video", "file", "/dev/video", None, ""),
])
def test_source_strings_name_the_right_kind_of_source(text, kind, target, index, scheme):
    spec = parse_source(text)
    assert (spec.kind, spec.target, spec.camera_index, spec.scheme) == (kind, target, index, scheme)


@pytest.mark.parametrize("text, message", [
    ("", "empty source"),
    ("   ", "empty source"),
    ("ftp://host/clip.mp4", "unsupported source scheme ftp://"),
    ("file:///tmp/clip.mp4", "unsupported source scheme file://"),
    ("rtsp:cam.local/stream", "not a valid stream URL"),
    ("rtsp:///stream", "no host in stream URL"),
    ("http://[::1/x", "malformed stream URL"),
    ("rtsp://cam.local:99999/x", "malformed stream URL"),
    ("udp://239.0.0.1", "no port in stream URL"),
    ("12345", "camera index 12345 is out of range"),
    ("clip\x00.mp4", "NUL character"),
    ("clip\ud800.mp4", "cannot be encoded"),
    ("ftp://alice:wonderland@host/x", "ftp://alice:***@host/x"),
])
def test_unusable_source_strings_are_one_clear_source_error(text, message):
    with pytest.raises(SourceError) as caught:
        parse_source(text)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert "wonderland" not in str(caught.value)


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_the_source_parser_never_raises_anything_but_source_errors(text):
    try:
        spec = parse_source(text)
    except SourceError:
        return
    assert isinstance(spec, SourceSpec) and spec.kind in ("file", "camera", "stream")


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp"]) | st.from_regex(r"[a-z][a-z0-9+.\-]{0,8}", fullmatch=True),
       st.text(min_size=1), st.text())
def test_the_source_parser_never_raises_anything_but_source_errors_on_urls(scheme, authority, rest):
    try:
        parse_source(f"{scheme}://{authority}/{rest}")
    except SourceError:
        pass


def test_the_factory_picks_a_reader_per_source(clip_factory, capfd):
    clip = clip_factory(frames=3)
    source = open_source(str(clip))
    source.close()
    assert type(source) is FileSource and not source.info.is_live
    source = open_source(str(clip), realtime=True)
    source.close()
    assert type(source) is RealtimeFileSource and source.info.is_live
    for camera in ("0", "/dev/video0"):  # no V4L2 here: the OpenCV camera path must fail cleanly
        with pytest.raises(SourceError, match=f"cannot open camera {camera}: no such camera"):
            open_source(camera)
    port = free_port()
    with pytest.raises(SourceError, match=f"cannot open rtsp://127.0.0.1:{port}/x: Connection refused"):
        open_source(f"rtsp://127.0.0.1:{port}/x")
    assert "WARN" not in capfd.readouterr().err  # OpenCV's own warnings are silenced: our error says it


def test_stream_options_per_protocol():
    config = LiveConfig(open_timeout=4, read_timeout=2)
    assert stream_options("rtsp", config) == {"rtsp_transport": "tcp", "timeout": "4000000"}
    assert stream_options("rtsps", dataclasses.replace(config, rtsp_transport="udp"))["rtsp_transport"] == "udp"
    assert stream_options("http", config) == {"timeout": "4000000"}
    assert stream_options("rtmp", config) == {}  # for RTMP, 'timeout' would make FFmpeg listen instead of connect


# -- reconnect logic, with scripted connections ------------------------------------------------------------


class ScriptedConnection:
    """Delivers ``frames`` small images, then reports a disconnect."""

    def __init__(self, frames: int, width: int = 8) -> None:
        self.width, self.height, self.frame_rate, self.decode_errors = width, 6, None, 0
        self.left = frames
        self.closed = False

    def read(self) -> np.ndarray:
        if not self.left:
            raise Disconnected("end of stream")
        self.left -= 1
        time.sleep(0.01)
        return np.zeros((self.height, self.width, 3), np.uint8)

    def close(self) -> None:
        self.closed = True


def test_backoff_doubles_from_the_initial_delay_up_to_the_cap():
    config = LiveConfig(reconnect_delay=0.5, reconnect_max_delay=3.0)
    assert [backoff_delay(n, config) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert backoff_delay(10_000, config) == 3.0  # unlimited attempts never overflow


def test_reconnects_continue_the_timeline_and_give_up_after_the_configured_attempts(caplog):
    caplog.set_level(logging.INFO, logger="rtseg")
    script = [ScriptedConnection(3), SourceError("cannot open fake: Connection refused"), ScriptedConnection(3, width=10)]
    script += [SourceError("cannot open fake: Connection refused")] * 3
    opened: list[ScriptedConnection] = []

    def connect() -> ScriptedConnection:
        step = script.pop(0)
        if isinstance(step, Exception):
            raise step
        opened.append(step)
        return step

    config = LiveConfig(reconnect_delay=0.05, reconnect_max_delay=0.1, reconnect_attempts=3)
    source = LiveSource("fake", connect, config)
    frames: list[Frame] = []
    with pytest.raises(SourceError, match=r"gave up after 3 reconnect attempt\(s\): cannot open fake: Connection refused"):
        frames.extend(source.frames())
    source.close()
    assert [f.index for f in frames] == list(range(6))
    assert [f.width for f in frames] == [8, 8, 8, 10, 10, 10]  # a new size after a reconnect comes through
    pts = [f.pts for f in frames]
    assert pts == sorted(set(pts)) and all(f.time_base == TIME_BASE for f in frames)
    assert (pts[3] - pts[2]) * TIME_BASE >= 0.05 + 0.1  # the outage is kept in the timeline
    assert source.reconnects == 1 and all(c.closed for c in opened)
    assert len(messages(caplog, "lost fake: end of stream")) == 2
    assert len(messages(caplog, "reconnect attempt")) == 1 + 2  # one notice per failed attempt; the last one raises
    assert len(messages(caplog, "reconnected to fake")) == 1


def test_stop_interrupts_a_long_backoff_wait():
    source = LiveSource("fake", lambda: ScriptedConnection(2), LiveConfig(reconnect_delay=60))
    frames: list[Frame] = []
    reader = threading.Thread(target=lambda: frames.extend(source.frames()))
    reader.start()
    assert when(lambda: len(frames) == 2, 5)
    time.sleep(0.1)  # now waiting 60 s before reconnecting
    started = time.monotonic()
    source.stop()
    reader.join(5)
    assert not reader.is_alive() and time.monotonic() - started < 1


# -- RTSP against a real server ----------------------------------------------------------------------------


def test_rtsp_delivers_every_frame_of_a_clip_bit_exact(rtsp, short_clip):
    clip, count = short_clip
    expected = decode_all(clip)
    config = live_config(max_frames=count, queue_size=64)  # a deep queue: the test is about completeness, not drops
    with RtspServer(clip) as server:
        source = open_source(server.url(), config.live)
        assert isinstance(source, LiveSource) and source.info.is_live and not source.info.is_file
        assert (source.info.width, source.info.height) == (768, 432)
        sink = RecordingSink(keep_images=True)
        summary = Pipeline(source, SquareDetector(), config, [sink]).run()
    assert summary.error is None
    assert summary.frames_read == summary.frames_inferred == summary.frames_written == count
    assert summary.frames_dropped == 0 and summary.reconnects == 0
    assert all(np.array_equal(frame.image, image) for frame, image in zip(sink.frames, expected))
    pts = [f.pts for f in sink.frames]
    assert pts == sorted(set(pts))
    span = (pts[-1] - pts[0]) * TIME_BASE
    assert 1.5 <= span <= 6  # ~3 s of video, paced by the server, stamped with the capture clock
    assert summary.latency.count == count


def test_rtsp_server_killed_mid_stream_and_restarted(rtsp, long_clip, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="rtseg")
    out = tmp_path / "recording.mp4"
    config = live_config()
    marks: dict[str, float] = {}
    with RtspServer(long_clip) as server:
        source = open_source(server.url("viewer:pa55word"), config.live)
        sink = RecordingSink()
        pipeline = Pipeline(source, SquareDetector(delay=0.02), config, [Mp4Sink(out, config.output), sink])

        def outage() -> None:
            if when(lambda: len(sink.frames) >= 25, 30):
                marks["frames"] = len(sink.frames)
                server.kill()
                time.sleep(1.0)
                server.start()

        killer = threading.Thread(target=outage)
        killer.start()
        stop_when(pipeline, lambda: source.reconnects >= 1 and len(sink.frames) >= marks["frames"] + 25, 60)
        summary = pipeline.run()
        killer.join(30)
    assert summary.error is None and summary.stop_reason == "stopped"
    assert summary.reconnects == 1
    assert len(messages(caplog, "lost rtsp://viewer:***@127.0.0.1")) == 1
    assert len(messages(caplog, "reconnected to rtsp://viewer:***@127.0.0.1")) == 1
    assert "pa55word" not in caplog.text
    frames, times, info = read_video(out)
    assert len(frames) == summary.frames_written and info["audio"] == []
    gaps = np.diff(times)
    assert (gaps > 0).all()  # one monotonic timeline across the reconnect
    assert (gaps >= 1.0).sum() == 1  # the outage: 1 s down plus reconnecting
    captured = np.diff([f.captured_at for f in sink.frames])
    assert gaps == pytest.approx(captured, abs=2e-3)  # timestamps are the capture clock: it plays at real speed


class TimedLog(logging.Handler):
    """Records each message of the rtseg loggers with the monotonic clock (frames carry that clock too)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((time.monotonic(), record.getMessage()))

    def first(self, prefix: str) -> float | None:
        return next((t for t, message in self.records if message.startswith(prefix)), None)

    def __enter__(self) -> TimedLog:
        logging.getLogger("rtseg").addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("rtseg").removeHandler(self)


def test_frozen_server_is_detected_within_the_read_timeout_and_reconnected_after_resume(rtsp, long_clip, caplog):
    caplog.set_level(logging.INFO, logger="rtseg")
    config = live_config(read_timeout=1.5, open_timeout=2.0)
    marks: dict[str, float] = {}
    with RtspServer(long_clip) as server, TimedLog() as log:
        source = open_source(server.url(), config.live)
        sink = RecordingSink()
        pipeline = Pipeline(source, SquareDetector(), config, [sink])

        def hang() -> None:
            if when(lambda: len(sink.frames) >= 25, 30):
                server.freeze()
                # Stay frozen until one reconnect attempt has had its full open timeout (0.2 s backoff + 2 s).
                when(lambda: log.first("lost ") is not None, 15)
                time.sleep(0.2 + 2.0 + 1.0)
                marks["frames"] = len(sink.frames)
                marks["resumed"] = time.monotonic()
                server.resume()

        hanger = threading.Thread(target=hang)
        hanger.start()
        stop_when(pipeline, lambda: "frames" in marks and len(sink.frames) >= marks["frames"] + 25, 60)
        summary = pipeline.run()
        hanger.join(30)
    assert summary.error is None and summary.reconnects == 1
    [lost] = messages(caplog, "lost ")
    assert "no data for 1.5 s" in lost.getMessage()
    lost_at = log.first("lost ")
    last_frame = max(f.captured_at for f in sink.frames if f.captured_at < lost_at)
    assert 1.5 - 0.2 <= lost_at - last_frame <= 1.5 + 1.0  # detected one read timeout after the last frame
    failed = messages(caplog, "reconnect attempt")
    assert failed and all("no answer within 2 s" in r.getMessage() for r in failed)
    assert log.first("reconnected to ") >= marks["resumed"]
    assert min(f.captured_at for f in sink.frames if f.captured_at > lost_at) >= marks["resumed"]


def test_source_down_at_start_is_retried_when_configured(rtsp, short_clip, caplog):
    caplog.set_level(logging.INFO, logger="rtseg")
    clip, _ = short_clip
    server = RtspServer(clip)
    config = live_config(max_frames=10, retry_at_start=True)
    starter = threading.Timer(1.0, server.start)
    try:
        source = open_source(server.url(), config.live)  # nothing listens yet: no error with retry_at_start
        assert messages(caplog, f"cannot open {server.url()}: Connection refused; retrying")
        starter.start()
        summary = Pipeline(source, SquareDetector(), config, [RecordingSink()]).run()
    finally:
        starter.join(40)
        server.stop()
    assert summary.error is None and summary.frames_read == 10 and summary.reconnects == 1
    assert summary.frames_written == 10 - summary.frames_dropped > 0


def test_server_down_at_start_is_one_masked_line_and_exit_2(capsys):
    port = free_port()
    assert main(["--source", f"rtsp://admin:hunter2@127.0.0.1:{port}/cam", "--no-show", "--weights", "none"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"rtseg: error: cannot open rtsp://admin:***@127.0.0.1:{port}/cam: Connection refused"]


def test_unresponsive_server_fails_after_the_open_timeout(tmp_path, capsys):
    (tmp_path / "live.yaml").write_text("live:\n  open_timeout: 1.5\n")
    with socket.socket() as silent:  # accepts connections (in the kernel) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"rtsp://127.0.0.1:{silent.getsockname()[1]}/cam"
        started = time.monotonic()
        code = main(["--source", url, "--config", str(tmp_path / "live.yaml"), "--no-show", "--weights", "none"])
        elapsed = time.monotonic() - started
    assert code == 2 and 1.4 <= elapsed < 10
    assert capsys.readouterr().err.strip().splitlines() == [f"rtseg: error: cannot open {url}: no answer within 1.5 s"]


# -- the live policy: bounded latency with a slow model ----------------------------------------------------


def test_latency_stays_bounded_with_a_slow_model_and_no_frame_is_inferred_twice():
    model_seconds = 0.12  # three frame periods of the 25 fps source: most frames must be dropped
    config = live_config(max_frames=150)
    source = LiveSource("testsrc2", lambda: StreamConnection(PACED_TESTSRC, "testsrc2", config.live, format="lavfi"),
                        config.live)
    detector = IndexRecordingDetector(model_seconds)
    sink = RecordingSink()
    pipeline = Pipeline(StampedSource(source), detector, config, [sink])
    summary = pipeline.run()
    assert summary.error is None and summary.frames_read == 150
    assert summary.frames_dropped > 50
    assert summary.frames_inferred + summary.frames_dropped == summary.frames_read
    assert detector.indices == sorted(set(detector.indices))  # unique and in order: no frame inferred twice
    assert [f.index for f in sink.frames] == detector.indices
    latencies = list(summary.latency.recent)
    assert summary.latency.percentile(95) <= model_seconds + 0.1
    third = len(latencies) // 3
    assert statistics.median(latencies[-third:]) <= statistics.median(latencies[:third]) + 0.03  # no growth
    status = pipeline.status_text()
    assert "latency" in status and f"dropped {summary.frames_dropped}" in status
    assert any("dropped" in line for line in summary.lines()) and any("p95" in line for line in summary.lines())


class ClosingDisplay:
    """Stands in for the window (no display here): records what it is shown, 'closed' after ``frames`` images."""

    available = True

    def __init__(self, frames: int) -> None:
        self.frames = frames
        self.statuses: list[str] = []
        self.polls = 0
        self.closed = False

    def show(self, image: np.ndarray, status: str = "") -> bool:
        self.statuses.append(status)
        return len(self.statuses) < self.frames

    def poll(self) -> bool:
        self.polls += 1
        return True

    def close(self) -> None:
        self.closed = True


def test_closing_the_window_stops_a_live_run_and_it_shows_the_counters():
    config = live_config()
    source = LiveSource("testsrc2", lambda: StreamConnection(PACED_TESTSRC, "testsrc2", config.live, format="lavfi"),
                        config.live)
    display = ClosingDisplay(frames=10)
    started = time.monotonic()
    summary = Pipeline(source, SquareDetector(delay=0.05), config, [], display).run()
    assert summary.stop_reason == "window closed" and summary.error is None
    assert time.monotonic() - started < 15 and display.closed
    assert "fps" in display.statuses[-1] and "dropped" in display.statuses[-1] and "reconnects 0" in display.statuses[-1]


def test_realtime_file_plays_at_its_own_pace_and_drops_what_the_model_cannot_keep_up_with(clip_factory):
    clip = clip_factory(frames=30, fps=10)  # 3 s
    config = live_config()
    sink = RecordingSink()
    started = time.monotonic()
    summary = Pipeline(open_source(str(clip), config.live, realtime=True), SquareDetector(delay=0.25), config,
                       [sink]).run()
    assert time.monotonic() - started >= 2.8
    assert summary.error is None and summary.frames_read == 30 and summary.frames_dropped > 10
    assert summary.frames_written == 30 - summary.frames_dropped
    times = [f.timestamp for f in sink.frames]
    assert times == sorted(times) and all(abs(t * 10 - round(t * 10)) < 1e-6 for t in times)  # the file's own timestamps
    assert summary.latency.percentile(95) <= 0.25 + 0.1 + 0.1  # model + one frame period + slack


def test_cli_realtime_reports_drops_and_latency(clip, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    assert main(["--source", str(clip), "--realtime", "--output", str(out), "--weights", "none", "--size", "64",
                 "--no-show"]) == 0
    stdout = capsys.readouterr().out
    assert "12 read" in stdout and "dropped" in stdout and "latency (captured -> written): p50" in stdout
    assert len(read_video(out)[0]) == int(stdout.split(" written")[0].rsplit(" ", 1)[-1])


# -- the webcam path: OpenCV on a FIFO fed in real time (no V4L2 device can exist here) ------------------


def _feed_fifo(clip: Path, fifo: Path, done: threading.Event) -> None:
    """Write ``clip``'s video as MPEG-TS into ``fifo`` at its own pace, like a camera; stops on a broken pipe."""
    try:
        with av.open(str(clip)) as source, av.open(str(fifo), "w", format="mpegts") as sink:
            stream = source.streams.video[0]
            out = sink.add_stream_from_template(stream)
            started = time.monotonic()
            for packet in source.demux(stream):
                if done.is_set():
                    return
                if packet.dts is None:
                    continue
                time.sleep(max(0.0, started + float(packet.dts * stream.time_base) - time.monotonic()))
                packet.stream = out
                sink.mux(packet)
    except (OSError, av.error.FFmpegError):
        pass  # the reader went away


def test_camera_reader_on_a_paced_fifo_delivers_rgb_frames(sample_clip, tmp_path):
    fifo = tmp_path / "camera.fifo"
    os.mkfifo(fifo)
    done = threading.Event()
    feeder = threading.Thread(target=_feed_fifo, args=(sample_clip, fifo, done), daemon=True)
    feeder.start()
    config = live_config(max_frames=50, queue_size=64)
    try:
        source = LiveSource("camera fifo", lambda: CameraConnection(str(fifo), "camera fifo", config.live, cv2.CAP_FFMPEG),
                            config.live)
        sink = RecordingSink(keep_images=True)
        summary = Pipeline(source, SquareDetector(), config, [sink]).run()
    finally:
        done.set()
        feeder.join(10)
    assert summary.error is None and summary.frames_written == 50
    expected = decode_all(sample_clip)[:50]
    for frame in sink.frames:
        assert frame.image.shape == (432, 768, 3)
        difference = np.abs(frame.image.astype(int) - expected[frame.index]).mean()
        swapped = np.abs(frame.image[..., ::-1].astype(int) - expected[frame.index]).mean()
        # RGB, like every other source (OpenCV delivers BGR): the same decoder's pixels, not their channels swapped
        assert difference < 0.5 < swapped
    span = sink.frames[-1].captured_at - sink.frames[0].captured_at
    assert span >= 2.0  # 50 frames at 12.5 fps arrive over ~4 s: a paced, live reader


# -- sinks and window pieces used by live runs -------------------------------------------------------------


def test_recording_scales_a_changed_frame_size_into_the_first_size(tmp_path):
    path = tmp_path / "out.mp4"
    sink = Mp4Sink(path, OutputConfig())
    try:
        for i in range(4):
            size = (48, 64) if i < 2 else (48, 128)  # a reconnect brought a wider stream
            image = np.full((*size, 3), 200, np.uint8)
            sink.write(Frame(index=i, image=image, pts=i * 3600, time_base=Fraction(1, 90000), captured_at=0.0))
    finally:
        sink.close()
    frames, times, info = read_video(path)
    assert (info["width"], info["height"]) == (64, 48) and len(frames) == 4
    assert times == pytest.approx([0, 0.04, 0.08, 0.12], abs=1e-4)
    letterboxed = frames[3]
    assert letterboxed[:8].mean() < 20 and letterboxed[-8:].mean() < 20  # black bars above and below
    assert abs(letterboxed[16:32].mean() - 200) < 10  # the picture, scaled to 64x24, in the middle


def test_status_line_is_drawn_on_a_copy():
    image = np.full((120, 160, 3), 128, np.uint8)
    shown = draw_status(image, "25.0 fps | latency 80 ms")
    assert (image == 128).all()
    assert not np.array_equal(shown[:20], image[:20]) and np.array_equal(shown[60:], image[60:])


# -- credentials are masked ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text, masked", [
    ("rtsp://admin:12345@10.0.0.7:554/h264", "rtsp://admin:***@10.0.0.7:554/h264"),
    ("opening RTSPS://u:p%40ss@cam/s now", "opening RTSPS://u:***@cam/s now"),
    ("rtsp://admin:p@ss@cam/x", "rtsp://admin:***@cam/x"),  # an unencoded '@' in the password
    ("rtsp://admin:pa/ss@cam/x", "rtsp://admin:***@cam/x"),  # an unencoded '/' in the password
    ("a http://x:y@h/1 and rtmp://k:z@h/2", "a http://x:***@h/1 and rtmp://k:***@h/2"),
    ("'rtsp://u:secret@h/x': Connection refused", "'rtsp://u:***@h/x': Connection refused"),
    ("rtsp://u:p@cam/a@b", "rtsp://u:***@b"),  # an '@' in the path is masked over: safe, if less informative
    ("rtsp://cam.local:554/stream", "rtsp://cam.local:554/stream"),
    ("rtsp://user@cam/stream", "rtsp://***@cam/stream"),  # a user alone cannot be told from a token: masked
    ("no urls here: a:b@c", "no urls here: a:b@c"),
])
def test_mask_credentials(text, masked):
    assert mask_credentials(text) == masked


_VISIBLE = ("Cs", "Z", "Cc")  # no surrogates, no separators or control characters: what fits in one URL token
_SAFE = st.text(alphabet=st.characters(blacklist_categories=_VISIBLE, blacklist_characters="@/:?#"), min_size=1)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["rtsp", "http", "rtmp"]), _SAFE,
       st.text(alphabet=st.characters(blacklist_categories=_VISIBLE), min_size=6), _SAFE, st.text())
def test_masked_urls_never_show_the_password(scheme, user, password, host, around):
    url = f"{scheme}://{user}:{password}@{host}/stream"
    masked = mask_credentials(f"{around} {url} {around}")
    assert f"{scheme}://{user}:***@{host}/stream" in masked
    assert mask_credentials(around) in masked


def test_log_filter_masks_messages_arguments_and_tracebacks():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(CredentialFilter())
    logger = logging.getLogger("rtseg.test_masking")
    logger.addHandler(handler)
    try:
        logger.warning("opening %s", "rtsp://admin:opensesame@cam/1")
        try:
            raise OSError("cannot reach http://bob:opensesame@cam/mjpg")
        except OSError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "opensesame" not in text
    assert "rtsp://admin:***@cam/1" in text and "http://bob:***@cam/mjpg" in text and "Traceback" in text


def test_source_errors_and_debug_tracebacks_are_masked(capsys):
    port = free_port()
    with pytest.raises(SourceError) as caught:
        open_source(f"rtsp://admin:hunter2@127.0.0.1:{port}/x")
    assert "hunter2" not in str(caught.value) and "admin:***@" in str(caught.value)
    assert main(["--source", "ftp://admin:hunter2@host/x", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "hunter2" not in err and "ftp://admin:***@host/x" in err
