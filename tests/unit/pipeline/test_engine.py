"""The engine with one stream: order, completeness, batching, and how failures and hangs stop every stage."""

from __future__ import annotations

import _thread
import dataclasses
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import SquareDetector, read_video, square_x

from rtseg.core.config import Config
from rtseg.core.structures import Frame
from rtseg.pipeline.engine import Pipeline
from rtseg.sinks.mp4 import Mp4Sink
from rtseg.sources.files import FileSource


class RecordingSink:
    """Keeps what it receives; can be told to fail or stall at a given frame."""

    def __init__(self, fail_at: int | None = None, delay: float = 0.0) -> None:
        self.frames: list[Frame] = []
        self.closed = False
        self.fail_at = fail_at
        self.delay = delay

    def write(self, frame: Frame) -> None:
        if self.fail_at is not None and len(self.frames) >= self.fail_at:
            raise OSError("disk on fire")
        time.sleep(self.delay)
        self.frames.append(frame)

    def close(self) -> None:
        self.closed = True


def _config(**pipeline) -> Config:
    config = Config()
    config.pipeline = dataclasses.replace(config.pipeline, capture_queue_size=2, render_queue_size=2,
                                          sink_queue_size=2, **pipeline)
    return config


def _run(clip: Path, detector, sinks, config: Config | None = None):
    pipeline = Pipeline(FileSource(clip), detector, config or _config(), sinks)
    started = time.monotonic()
    summary = pipeline.run()
    return summary, time.monotonic() - started


def test_every_frame_arrives_in_order_with_detections(clip_factory):
    clip = clip_factory(frames=30)
    sink = RecordingSink()
    summary, _ = _run(clip, SquareDetector(), [sink])
    assert summary.error is None
    assert [f.index for f in sink.frames] == list(range(30))
    assert summary.frames_read == summary.frames_inferred == summary.frames_written == 30
    for frame in sink.frames:
        assert len(frame.detections) == 1
        x1 = frame.detections.boxes[0][0]
        assert abs(x1 - square_x(frame.index, 96)) <= 1
        assert frame.rendered is not None and not np.array_equal(frame.rendered, frame.image)
    assert sink.closed


def test_batching_keeps_order_and_uses_fewer_model_calls(clip_factory):
    clip = clip_factory(frames=24)
    sink, detector = RecordingSink(), SquareDetector(delay=0.02)
    config = _config()
    config.model = dataclasses.replace(config.model, batch_size=4)
    config.pipeline = dataclasses.replace(config.pipeline, capture_queue_size=8)
    summary, _ = _run(clip, detector, [sink], config)
    assert summary.error is None
    assert [f.index for f in sink.frames] == list(range(24))
    assert detector.seen == 24 and detector.calls < 24


def test_slow_model_still_delivers_every_frame(clip_factory):
    clip = clip_factory(frames=8)
    sink = RecordingSink()
    summary, _ = _run(clip, SquareDetector(delay=0.05), [sink])
    assert summary.error is None and len(sink.frames) == 8


def test_max_frames_limits_the_run(clip_factory):
    clip = clip_factory(frames=20)
    sink = RecordingSink()
    summary, _ = _run(clip, SquareDetector(), [sink], _config(max_frames=5))
    assert [f.index for f in sink.frames] == [0, 1, 2, 3, 4]


def test_detector_failure_stops_everything_promptly_and_names_the_stage(clip_factory, tmp_path):
    clip = clip_factory(frames=40)
    out = tmp_path / "out.mp4"
    detector = SquareDetector(fail_at=10, delay=0.01)
    summary, seconds = _run(clip, detector, [Mp4Sink(out, Config().output)])
    assert summary.error is not None and summary.error.stage == "inference"
    assert "stub detector exploded" in str(summary.error)
    assert seconds < 5
    frames, _, _ = read_video(out)  # what was processed before the fault plays
    assert len(frames) == summary.frames_written == 10
    assert not [t for t in threading.enumerate() if t.name.startswith("rtseg-") and t.is_alive()]


def test_hung_detector_is_detected_by_the_watchdog(clip_factory):
    clip = clip_factory(frames=10)
    detector = SquareDetector(hang_at=3)
    sink = RecordingSink()
    try:
        summary, seconds = _run(clip, detector, [sink], _config(stage_timeout=0.5))
    finally:
        detector.release.set()
    assert summary.error is not None and summary.error.stage == "inference"
    assert "hung" in str(summary.error)
    assert seconds < 4
    assert sink.closed and len(sink.frames) == 3


def test_sink_failure_is_reported_as_the_sinks_stage(clip_factory):
    clip = clip_factory(frames=20)
    sink = RecordingSink(fail_at=4)
    summary, seconds = _run(clip, SquareDetector(), [sink])
    assert summary.error is not None and summary.error.stage == "sinks"
    assert "disk on fire" in str(summary.error)
    assert sink.closed and seconds < 5


def test_render_failure_is_reported_as_the_render_stage(clip_factory, monkeypatch):
    clip = clip_factory(frames=10)

    def broken_draw(self, image, detections):
        raise ValueError("bad palette")

    monkeypatch.setattr("rtseg.render.renderer.Renderer.draw", broken_draw)
    summary, _ = _run(clip, SquareDetector(), [RecordingSink()])
    assert summary.error is not None and summary.error.stage == "render"
    assert "bad palette" in str(summary.error)


def test_ctrl_c_stops_cleanly_and_keeps_a_playable_file(clip_factory, tmp_path):
    clip = clip_factory(frames=200)
    out = tmp_path / "out.mp4"
    detector = SquareDetector(delay=0.02)
    timer = threading.Timer(0.6, _thread.interrupt_main)
    timer.start()
    try:
        summary, seconds = _run(clip, detector, [Mp4Sink(out, Config().output)])
    finally:
        timer.cancel()
    assert summary.stop_reason == "interrupted" and summary.error is None
    assert 0 < summary.frames_written < 200
    frames, times, _ = read_video(out)
    assert len(frames) == summary.frames_written
    assert times == sorted(times)


def test_each_object_keeps_its_one_colour_in_the_output_pixels(tmp_path):
    from helpers import SHAPE_LEVELS, TwoSquaresDetector, make_two_squares_clip

    from rtseg.core.config import TrackingConfig
    from rtseg.render.colors import color_for_id
    from rtseg.track.tracker import Tracker

    clip = make_two_squares_clip(tmp_path / "two.mp4", frames=20)
    out = tmp_path / "out.mp4"
    config = _config()
    config.render = dataclasses.replace(config.render, contours=False, boxes=False, labels=False, alpha=1.0)
    source = FileSource(clip)
    summary = Pipeline(source, TwoSquaresDetector(), config, [Mp4Sink(out, config.output, frame_rate=source.info.frame_rate)],
                       tracker=Tracker(TrackingConfig(min_hits=3))).run()
    assert summary.error is None
    frames, _, _ = read_video(out)
    originals, _, _ = read_video(clip)
    assert len(frames) == 20
    seen: dict[int, tuple[int, int, int]] = {}
    for index, (frame, original) in enumerate(zip(frames, originals)):
        grey = original.mean(axis=2)
        for level in SHAPE_LEVELS:
            inside = np.abs(grey - level) < 30
            core = inside & np.roll(inside, 3, 0) & np.roll(inside, -3, 0) & np.roll(inside, 3, 1) & np.roll(inside, -3, 1)
            colour = frame[core].mean(axis=0)
            if index < 2:  # not yet confirmed (min_hits 3): the neutral grey
                np.testing.assert_allclose(colour, color_for_id(-1), atol=8)
                continue
            seen.setdefault(level, tuple(colour))
            np.testing.assert_allclose(colour, seen[level], atol=8)  # the same colour in every frame
    first, second = (np.array(seen[level]) for level in SHAPE_LEVELS)
    assert np.abs(first - second).max() > 40  # two objects, two colours
    expected = sorted([color_for_id(1), color_for_id(2)])
    np.testing.assert_allclose(sorted([tuple(first), tuple(second)]), expected, atol=8)
class TimedSquareDetector(SquareDetector):
    """The stub detector reporting a fixed step split per call, like MaskRCNNDetector's ``last_timings``."""

    last_timings = {"preprocess": 0.004, "model": 0.04, "postprocess": 0.008}


def test_step_timings_are_recorded_per_frame_even_when_batched(clip_factory):
    clip = clip_factory(frames=12)
    config = _config()
    config.model = dataclasses.replace(config.model, batch_size=4)
    config.pipeline = dataclasses.replace(config.pipeline, capture_queue_size=8)
    detector = TimedSquareDetector(delay=0.01)
    summary, _ = _run(clip, detector, [RecordingSink()], config)
    timers = summary.stage_timers
    for step in ("inference", "preprocess", "model", "postprocess", "tracking", "render", "write"):
        assert timers[step].count == 12, step
    calls = detector.calls
    assert timers["model"].total == pytest.approx(0.04 * calls)  # each call's time, shared by its frames
    assert timers["model"].percentile(50) in {0.04 / n for n in range(1, 5)}
    assert "model" in " ".join(summary.lines()) and "p50" in " ".join(summary.lines())
