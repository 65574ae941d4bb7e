"""Many streams, one model: isolation between streams, batching across them, fairness, per-stream failure, archives."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from helpers import SquareDetector, make_clip, read_video

from rtseg.api import Engine, OpenedStream, Outputs, StreamStart, process
from rtseg.cli import EXIT_PARTIAL, main
from rtseg.core.config import Config, StreamConfig
from rtseg.core.structures import Detections
from rtseg.detect.base import DetectorBase
from rtseg.render.colors import color_for_id
from rtseg.render.renderer import Renderer
from rtseg.sinks.archive import MANIFEST_NAME, read_manifest
from rtseg.sinks.mp4 import Mp4Sink
from rtseg.sources.factory import open_source
from rtseg.sources.files import FileSource

LEVELS = (40, 90, 140)  # each stream's background grey: the stub below turns it into that stream's own class
CLASSES = ("__background__", "first", "second", "third")


class LevelDetector(DetectorBase):
    """One detection per image, a fixed rectangle, whose class is the stream's (read from the background level).

    Records the image sizes of every call, so a test can see how batches were formed.
    """

    class_names = CLASSES

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, int]]] = []
        self.lock = threading.Lock()

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        with self.lock:
            self.batches.append([image.shape[:2] for image in images])
        results = []
        for image in images:
            level = int(image[2, 2].mean())
            class_id = 1 + int(np.argmin([abs(level - v) for v in LEVELS]))
            mask = np.zeros(image.shape[:2], bool)
            mask[8:24, 8:24] = True
            results.append(Detections(boxes=np.array([[8, 8, 24, 24]], np.float32), scores=np.array([0.9], np.float32),
                                      class_ids=np.array([class_id]), masks=mask[None], class_names=CLASSES))
        return results


def level_clip(path: Path, level: int, frames: int, width: int, height: int, fps: int) -> Path:
    """A clip whose every frame is one grey level (lossless), at its own size and rate."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.time_base = Fraction(1, fps)
        video.options = {"crf": "0", "preset": "ultrafast", "bf": "0"}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), level, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
    return path


def _config(**pipeline) -> Config:
    config = Config()
    config.model = dataclasses.replace(config.model, weights="none", batch_size=4)
    config.pipeline = dataclasses.replace(config.pipeline, **pipeline)
    config.render = dataclasses.replace(config.render, color_by="class", boxes=False, labels=False, contours=False)
    config.output = dataclasses.replace(config.output, show=False)
    return config


def test_a_streams_frames_only_ever_reach_its_own_outputs_even_in_mixed_batches(tmp_path):
    shapes = [(96, 64, 10, 24), (128, 96, 25, 30), (96, 64, 5, 12)]  # width, height, fps, frames: sizes and rates mixed
    clips = [level_clip(tmp_path / f"s{i}.mp4", LEVELS[i], frames, w, h, fps)
             for i, (w, h, fps, frames) in enumerate(shapes)]
    detector = LevelDetector()
    result = process([str(c) for c in clips], Outputs(output=tmp_path / "out"), config=_config(), detector=detector)
    summary = result.summary
    assert summary.error is None and [s.status for s in summary.streams] == ["done"] * 3
    for i, (w, h, fps, frames) in enumerate(shapes):
        images, times, info = read_video(tmp_path / "out" / f"s{i}.mp4")
        assert (info["width"], info["height"]) == (w, h)
        assert times == pytest.approx([n / fps for n in range(frames)], abs=1e-6)
        expected = np.array(color_for_id(i + 1), float) * 0.5 + LEVELS[i] * 0.5  # the mask blended at alpha 0.5
        for image in images:  # every frame of this output carries this stream's detection, never another's
            assert np.abs(image[12:20, 12:20].mean(axis=(0, 1)) - expected).max() < 6
    batches = detector.batches
    assert all(len(set(sizes)) == 1 for sizes in batches)  # one frame size per batch: no padding
    assert any(len(sizes) > 1 for sizes in batches)  # and batches across streams did form
    assert sum(len(sizes) for sizes in batches) == summary.frames_inferred == 24 + 30 + 12
    assert summary.batch_fill == pytest.approx((24 + 30 + 12) / len(batches))


class FailingSink:
    """Fails on its ``fail_at``-th frame, like a disk that fills up."""

    def __init__(self, fail_at: int) -> None:
        self.fail_at = fail_at
        self.written = 0

    def write(self, frame) -> None:
        if self.written == self.fail_at:
            raise OSError(28, "No space left on device")
        self.written += 1

    def close(self) -> None:
        """Nothing to finalise."""


def _file_plan(name: str, clip: Path, config: Config, sinks: list) -> StreamStart:
    def open_stream() -> OpenedStream:
        source = FileSource(clip)
        return OpenedStream(source, [Mp4Sink(sinks[0], config.output, frame_rate=source.info.frame_rate), *sinks[1:]],
                            None, Renderer(config.render, tracked=False))

    return StreamStart(name, open_stream, config)


def test_one_streams_failing_sink_ends_that_stream_only(tmp_path):
    config = _config(max_open_files=3)
    clips = [make_clip(tmp_path / f"c{i}.mp4", frames=40) for i in range(3)]
    plans = [_file_plan(f"c{i}", clip, config, [tmp_path / f"o{i}.mp4"] + ([FailingSink(10)] if i == 1 else []))
             for i, clip in enumerate(clips)]
    summary = Engine(SquareDetector(delay=0.002), config, plans).run()
    assert summary.error is None
    statuses = {s.name: s.status for s in summary.streams}
    assert statuses == {"c0": "done", "c1": "failed", "c2": "done"}
    failed = summary.failed_streams[0]
    assert failed.error.stage == "sinks" and "No space left on device" in str(failed.error)
    for i in (0, 2):
        assert len(read_video(tmp_path / f"o{i}.mp4")[0]) == 40
    partial = read_video(tmp_path / "o1.mp4")[0]  # the failed stream's MP4 is closed and plays what it had
    assert 0 < len(partial) <= 11


def test_a_failing_model_stops_every_stream_and_each_keeps_what_was_handed_on(tmp_path):
    config = _config(max_open_files=2)
    clips = [make_clip(tmp_path / f"c{i}.mp4", frames=60) for i in range(2)]
    plans = [_file_plan(f"c{i}", clip, config, [tmp_path / f"o{i}.mp4"]) for i, clip in enumerate(clips)]
    summary = Engine(SquareDetector(fail_at=30), config, plans).run()
    assert summary.error is not None and summary.error.stage == "inference"
    assert all(s.status == "failed" for s in summary.streams)
    assert sum(len(read_video(tmp_path / f"o{i}.mp4")[0]) for i in range(2)) == summary.frames_written > 0


def test_live_streams_share_the_model_equally_and_files_take_what_they_leave(tmp_path):
    config = _config(max_open_files=2)
    config.model = dataclasses.replace(config.model, batch_size=1)
    live_clips = [make_clip(tmp_path / f"live{i}.mp4", frames=60, fps=20) for i in range(2)]  # 3 s each at 20 fps
    archive = [make_clip(tmp_path / f"file{i}.mp4", frames=300) for i in range(2)]

    def plan(name: str, clip: Path, realtime: bool) -> StreamStart:
        def open_stream() -> OpenedStream:
            return OpenedStream(open_source(str(clip), config.live, realtime=realtime), [], None,
                                Renderer(config.render, tracked=False))
        return StreamStart(name, open_stream, config, live=realtime)

    # The model (40 ms a frame) cannot keep up with two 20 fps cameras: they must split it evenly.
    detector = SquareDetector(delay=0.04)
    plans = [plan(f"live{i}", c, True) for i, c in enumerate(live_clips)] + [plan(f"file{i}", c, False)
                                                                             for i, c in enumerate(archive)]
    engine = Engine(detector, config, plans)
    engine.start()
    stopper = threading.Timer(3.5, engine.stop)
    stopper.start()
    try:
        summary = engine.run()
    finally:
        stopper.cancel()
    by_name = {s.name: s for s in summary.streams}
    first, second = by_name["live0"].frames_inferred, by_name["live1"].frames_inferred
    assert first > 10 and second > 10
    assert abs(first - second) <= 0.1 * max(first, second)
    assert by_name["live0"].frames_dropped > 0  # the cameras were not waited for


def _archive(tmp_path: Path) -> Path:
    folder = tmp_path / "archive"
    folder.mkdir()
    make_clip(folder / "a.mp4", frames=20, audio=True)
    make_clip(folder / "b.mp4", frames=15, width=128, height=96)
    make_clip(folder / "c.mp4", frames=10, fps=5)
    (folder / "d.mp4").write_bytes(b"this is not a video" * 20)
    return folder


def _cli(monkeypatch, args: list[str]) -> int:
    monkeypatch.setattr("rtseg.api.MaskRCNNDetector", lambda settings: SquareDetector())
    return main([*args, "--no-show", "--weights", "none"])


def test_an_archive_gives_each_video_the_output_a_single_run_gives_it(tmp_path, monkeypatch, capsys):
    folder = _archive(tmp_path)
    assert _cli(monkeypatch, ["--source", str(folder), "--output", str(tmp_path / "out")]) == EXIT_PARTIAL
    err = capsys.readouterr().err
    assert "d.mp4" in err and "Traceback" not in err
    for name in ("a", "b", "c"):
        single = tmp_path / f"single-{name}.mp4"
        assert _cli(monkeypatch, ["--source", str(folder / f"{name}.mp4"), "--output", str(single)]) == 0
        frames, times, info = read_video(tmp_path / "out" / f"{name}.mp4")
        single_frames, single_times, single_info = read_video(single)
        assert times == single_times and info == single_info  # timestamps, size, codec, audio
        assert len(frames) == len(single_frames)
        assert all(np.abs(f.astype(int) - g).mean() < 1 for f, g in zip(frames, single_frames))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mp4", "b.mp4", "c.mp4", MANIFEST_NAME]
    records = {Path(r["file"]).name: r for r in read_manifest(tmp_path / "out" / MANIFEST_NAME)}
    assert {n: r["status"] for n, r in records.items()} == {"a.mp4": "done", "b.mp4": "done", "c.mp4": "done",
                                                           "d.mp4": "failed"}
    assert records["a.mp4"]["frames"] == 20 and "cannot read" in records["d.mp4"]["error"]


def test_rerunning_an_archive_skips_finished_videos_and_overwrite_redoes_them(tmp_path, monkeypatch, capsys):
    folder = _archive(tmp_path)
    (folder / "d.mp4").unlink()
    out = tmp_path / "out"
    assert _cli(monkeypatch, ["--source", str(folder), "--output", str(out)]) == 0
    (out / "b.mp4").unlink()  # as if the run had been cut off before b finished
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")}
    capsys.readouterr()
    assert _cli(monkeypatch, ["--source", str(folder), "--output", str(out)]) == 0
    printed = capsys.readouterr()
    assert "skipped 2 input(s)" in printed.out
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4") if p.name != "b.mp4"} == before
    assert len(read_video(out / "b.mp4")[0]) == 15
    assert _cli(monkeypatch, ["--source", str(folder), "--output", str(out), "--overwrite"]) == 0
    assert all(p.stat().st_mtime_ns > before[p.name] for p in out.glob("*.mp4") if p.name in before)
    assert not list(out.glob(".*partial"))


def test_a_yaml_streams_list_gives_each_stream_its_outputs_and_settings(tmp_path, monkeypatch):
    clips = [make_clip(tmp_path / f"c{i}.mp4", frames=12) for i in range(2)]
    (tmp_path / "fleet.yaml").write_text(
        "streams:\n"
        f"  - {{name: gate, source: '{clips[0]}', output: '{tmp_path / 'gate.mp4'}', tracking: {{min_hits: 1}}}}\n"
        f"  - {{source: '{clips[1]}', save_json: '{tmp_path / 'second.jsonl'}', tracking: {{enabled: false}}}}\n")
    assert _cli(monkeypatch, ["--config", str(tmp_path / "fleet.yaml")]) == 0
    assert len(read_video(tmp_path / "gate.mp4")[0]) == 12
    records = [json.loads(line) for line in (tmp_path / "second.jsonl").read_text().splitlines()]
    assert len(records) == 12
    assert all(i["track_id"] is None for r in records for i in r["instances"])  # that stream's tracking is off


def test_streams_given_to_the_api_run_with_their_own_settings(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", frames=12)
    streams = [StreamConfig(source=str(clip), name="tracked", save_json=str(tmp_path / "t.jsonl")),
               StreamConfig(source=str(clip), name="untracked", save_json=str(tmp_path / "u.jsonl"),
                            tracking={"enabled": False})]
    result = process(streams, config=_config(), detector=SquareDetector())
    assert [s.name for s in result.summary.streams] == ["tracked", "untracked"]
    tracked = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    untracked = [json.loads(line) for line in (tmp_path / "u.jsonl").read_text().splitlines()]
    assert tracked[-1]["instances"][0]["track_id"] is not None
    assert untracked[-1]["instances"][0]["track_id"] is None


class RecordingWindow:
    """Stands in for the window: keeps what it is shown and 'closes' after ``frames`` images."""

    available = True

    def __init__(self, frames: int) -> None:
        self.frames = frames
        self.images: list[np.ndarray] = []

    def show(self, image: np.ndarray, status: str = "") -> bool:
        self.images.append(image)
        return len(self.images) < self.frames

    def poll(self) -> bool:
        return True

    def close(self) -> None:
        """Nothing to release."""


def test_several_live_streams_are_shown_as_a_mosaic_and_closing_it_stops_them_all(tmp_path):
    config = _config()
    clips = [make_clip(tmp_path / f"cam{i}.mp4", frames=100, fps=20) for i in range(2)]

    def plan(clip: Path) -> StreamStart:
        def open_stream() -> OpenedStream:
            return OpenedStream(open_source(str(clip), config.live, realtime=True), [], None, Renderer(config.render))
        return StreamStart(clip.stem, open_stream, config, live=True)

    window = RecordingWindow(frames=8)
    summary = Engine(SquareDetector(), config, [plan(c) for c in clips], display=window).run()
    assert summary.stop_reason == "window closed" and summary.error is None
    assert all(s.status == "stopped" and 0 < s.frames_written < 100 for s in summary.streams)
    assert window.images[-1].shape[1] == 2 * 480  # two tiles side by side, one per camera
