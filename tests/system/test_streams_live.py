"""Four cameras on one model against the real GStreamer RTSP server on 127.0.0.1: one killed, one frozen, one down."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from helpers import SquareDetector, read_video

from rtseg.api import Outputs, stream
from rtseg.cli import EXIT_PARTIAL, main
from rtseg.core.config import Config
from rtseg.offline.rtsp import RtspServer, free_port, loop_clip

READ_TIMEOUT = 3.0


@pytest.fixture(scope="module")
def camera_clip(tmp_path_factory: pytest.TempPathFactory, sample_clip: Path) -> Path:
    """About 24 s of the shipped sample (4.8 s looped, no re-encoding): each server plays it once, longer than any
    test here."""
    path = tmp_path_factory.mktemp("cameras") / "camera.mp4"
    loop_clip(sample_clip, path, 5)
    return path


def _config(**pipeline) -> Config:
    config = Config()
    config.live = dataclasses.replace(config.live, open_timeout=10.0, read_timeout=READ_TIMEOUT, reconnect_delay=0.2,
                                      reconnect_max_delay=1.0)
    config.model = dataclasses.replace(config.model, weights="none", batch_size=4)
    config.pipeline = dataclasses.replace(config.pipeline, **pipeline)
    return config


def _lost(caplog: pytest.LogCaptureFixture, server: RtspServer) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("lost rtsp://") and f":{server.port}/" in r.getMessage()]


def _rate(arrivals: list[float], start: float, end: float) -> float:
    return sum(start <= t < end for t in arrivals) / (end - start)


def test_four_cameras_one_killed_one_frozen_the_others_keep_their_rate(rtsp, camera_clip, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="rtseg")
    servers = [RtspServer(camera_clip) for _ in range(4)]
    arrivals: dict[int, list[float]] = defaultdict(list)
    marks: dict[str, float] = {}
    try:
        for server in servers:
            server.start()
        urls = [server.url("viewer:s3cret") for server in servers]
        frames = stream(urls, Outputs(output=tmp_path / "rec"), config=_config(), detector=SquareDetector(delay=0.002))
        for frame in frames:
            now = time.time()  # wall clock, as log records carry it
            arrivals[frame.stream_id].append(now)
            if "killed" not in marks and all(len(arrivals[i]) >= 25 for i in range(4)):
                marks["killed"] = now
                servers[0].kill()
                servers[1].freeze()
            if "killed" in marks and "restarted" not in marks and now > marks["killed"] + 1.0:
                marks["restarted"] = now
                servers[0].start()
            if "killed" in marks and "resumed" not in marks and (_lost(caplog, servers[1]) or now > marks["killed"] + 15):
                marks["resumed"] = now
                servers[1].resume()
            after = [sum(t > marks.get("resumed", now + 1) + 0.5 for t in arrivals[i]) for i in (0, 1)]
            if min(after) >= 10 or now > marks.get("killed", now) + 45:
                break
    finally:
        for server in servers:
            server.stop()
    assert "resumed" in marks, "the outage never happened"
    killed = marks["killed"]
    for i in (2, 3):  # the healthy cameras kept their frame rate through the outage of the other two
        before = _rate(arrivals[i], killed - 1.0, killed)
        during = _rate(arrivals[i], killed, killed + READ_TIMEOUT + 1.0)
        assert during >= 0.75 * before > 0, (i, before, during)
    assert _lost(caplog, servers[0])  # the killed one reconnects...
    frozen = _lost(caplog, servers[1])
    assert frozen and "no data" in frozen[0].getMessage()  # ...and the frozen one is found out by its read timeout
    last_frame = max(t for t in arrivals[1] if t < frozen[0].created)
    assert frozen[0].created - last_frame <= READ_TIMEOUT + 1.5
    assert "s3cret" not in caplog.text
    assert all(len(arrivals[i]) > 0 for i in range(4))
    for i in (0, 1):  # each recording keeps one monotonic timeline across its reconnect
        recording = tmp_path / "rec" / f"127.0.0.1-{servers[i].port}-clip.mp4"
        _, times, _ = read_video(recording)
        assert len(times) > 20 and (np.diff(times) > 0).all()


def test_a_camera_down_at_start_is_named_and_the_others_run(rtsp, camera_clip, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("rtseg.api.MaskRCNNDetector", lambda settings: SquareDetector())
    dead_port = free_port()
    with RtspServer(camera_clip) as first, RtspServer(camera_clip) as second:
        code = main(["--source", first.url(), "--source", f"rtsp://127.0.0.1:{dead_port}/clip", "--source",
                     second.url(), "--output", str(tmp_path / "rec"), "--max-frames", "15", "--no-show",
                     "--weights", "none"])
    captured = capsys.readouterr()
    assert code == EXIT_PARTIAL, captured.err
    assert f"127.0.0.1-{dead_port}-clip" in captured.err and "Traceback" not in captured.err
    assert f"stream 127.0.0.1-{dead_port}-clip: failed" in captured.out
    for server in (first, second):
        name = f"127.0.0.1-{server.port}-clip"
        [line] = [line for line in captured.out.splitlines() if line.startswith(f"stream {name}: done, 15 read, ")]
        written = int(line.split(" written")[0].rsplit(" ", 1)[1])
        assert 0 < written == len(read_video(tmp_path / "rec" / f"{name}.mp4")[0])
