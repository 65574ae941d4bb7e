"""Nothing lost, nothing broken: signals, damaged inputs, full disks and faults injected into every stage."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import av
import pytest
from helpers import SquareDetector, make_clip, read_video

from rtseg.api import Outputs, process
from rtseg.core.config import Config
from rtseg.core.errors import SourceError
from rtseg.pipeline.engine import Pipeline
from rtseg.sinks.data import JsonLinesSink
from rtseg.sinks.mp4 import Mp4Sink
from rtseg.sources.files import FileSource

TESTS = Path(__file__).resolve().parents[1] / "support"

# The real CLI in a child process, with the stub detector standing in for Mask R-CNN so it runs at a known pace.
DRIVER = textwrap.dedent("""
    import resource, signal, sys
    sys.path.insert(0, {tests!r})
    from helpers import SquareDetector
    import rtseg.api
    rtseg.api.MaskRCNNDetector = lambda config: SquareDetector(delay={delay})
    if {file_limit}:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({file_limit}, {file_limit}))
    from rtseg.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _start_cli(args: list[str], delay: float = 0.05, file_limit: int = 0) -> subprocess.Popen:
    code = DRIVER.format(tests=str(TESTS), delay=delay, file_limit=file_limit)
    return subprocess.Popen([sys.executable, "-c", code, *args, "--no-show"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_frames(path: Path, count: int, process_: subprocess.Popen, timeout: float = 60) -> None:
    """Wait until the fragmented MP4 being written already plays ``count`` frames."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process_.poll() is None:
        try:
            if path.exists() and len(read_video(path)[0]) >= count:
                return
        except av.error.FFmpegError:
            pass  # caught between two writes
        time.sleep(0.1)
    raise AssertionError(f"{path} did not reach {count} frames (exit code {process_.poll()})")


@pytest.fixture
def long_clip(tmp_path: Path) -> Path:
    return make_clip(tmp_path / "long.mp4", frames=300, width=96, height=64, fps=10, audio=True)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_and_terminate_finalise_a_playable_file(long_clip, tmp_path, sig, code):
    out = tmp_path / "out.mp4"
    child = _start_cli(["--source", str(long_clip), "--output", str(out)])
    _wait_for_frames(out, 20, child)
    child.send_signal(sig)
    stdout, stderr = child.communicate(timeout=60)
    assert child.returncode == code, stderr
    assert "Traceback" not in stderr
    written = int(stdout.split(" read, ")[1].split(" inferred, ")[1].split(" written")[0])
    frames, times, info = read_video(out)
    assert 0 < len(frames) == written < 300
    _, source_times, _ = read_video(long_clip)
    assert times == pytest.approx(source_times[: len(times)], abs=1e-3)
    assert info["audio"] == ["aac"]


def test_sigkill_leaves_a_file_that_plays_up_to_its_last_fragment(long_clip, tmp_path):
    out = tmp_path / "out.mp4"
    child = _start_cli(["--source", str(long_clip), "--output", str(out)])
    _wait_for_frames(out, 20, child)
    child.kill()
    child.communicate(timeout=30)
    frames, times, _ = read_video(out)
    assert len(frames) >= 20  # every fragment flushed before the kill still plays
    _, source_times, _ = read_video(long_clip)
    assert times == pytest.approx(source_times[: len(times)], abs=1e-3)


def test_file_size_limit_mid_run_is_one_line_and_keeps_what_was_written(long_clip, tmp_path):
    out = tmp_path / "out.mp4"
    child = _start_cli(["--source", str(long_clip), "--output", str(out)], delay=0.0, file_limit=60_000)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 1
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("rtseg: error: sinks stage failed:") and "file size limit reached" in last
    frames, _, _ = read_video(out)
    assert len(frames) >= 10


# -- damaged sources ----------------------------------------------------------------------------------------------

def _faststart_copy(source: Path, target: Path) -> Path:
    """Remux with the index (moov) first, as streaming-friendly files are, so a cut file still has one."""
    with av.open(str(source)) as src, av.open(str(target), "w", options={"movflags": "faststart"}) as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    return target


def test_truncated_file_without_index_is_a_clear_error(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", frames=40)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])  # the index is at the end: gone
    with pytest.raises(SourceError, match="cannot read .*cut.mp4 as video"):
        FileSource(cut)


def test_truncated_file_with_index_keeps_the_frames_before_the_cut(tmp_path, sample_clip):
    clip = _faststart_copy(sample_clip, tmp_path / "fs.mp4")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    out = tmp_path / "out.mp4"
    result = process(str(cut), Outputs(output=out), detector=SquareDetector())
    assert result.summary.error is None
    frames, _, _ = read_video(out)
    assert 20 < len(frames) == result.summary.frames_written < 45  # about half of the 60 frames


def test_corrupted_bytes_mid_file_skip_the_damage_and_go_on(tmp_path, sample_clip):
    data = bytearray(sample_clip.read_bytes())
    middle = len(data) // 2
    data[middle: middle + 10_000] = os.urandom(10_000)
    corrupted = tmp_path / "corrupted.mp4"
    corrupted.write_bytes(bytes(data))
    out = tmp_path / "out.mp4"
    config = Config()
    config.pipeline = dataclasses.replace(config.pipeline, capture_queue_size=64, render_queue_size=64)
    result = process(str(corrupted), Outputs(output=out), config=config, detector=SquareDetector())
    assert result.summary.error is None
    frames, times, _ = read_video(out)
    assert 40 < len(frames) == result.summary.frames_written <= 60
    assert times == sorted(times) and times[-1] > 4.5  # the run went on past the damage to the end (4.8 s)


# -- faults injected into each stage ------------------------------------------------------------------------------

class FaultySink:
    """Wraps a real sink and injects a fault at a given frame."""

    def __init__(self, inner, mode: str, at: int = 5) -> None:
        self.inner, self.mode, self.at, self.count = inner, mode, at, 0

    def write(self, frame) -> None:
        if self.count == self.at:
            _inject(self.mode)
        self.count += 1
        self.inner.write(frame)

    def close(self) -> None:
        self.inner.close()


def _inject(mode: str) -> None:
    if mode == "raise":
        raise RuntimeError("injected fault")
    if mode == "hang":
        time.sleep(30)
    if mode == "slow":
        time.sleep(0.3)


FRAMES = 30


@pytest.mark.parametrize("mode", ["raise", "hang", "slow"])
@pytest.mark.parametrize("stage", ["capture", "inference", "render", "mp4", "jsonl"])
def test_fault_matrix(stage, mode, tmp_path, monkeypatch):
    clip = make_clip(tmp_path / "c.mp4", frames=FRAMES)
    out, jsonl = tmp_path / "out.mp4", tmp_path / "d.jsonl"
    config = Config()
    config.pipeline = dataclasses.replace(config.pipeline, stage_timeout=1.0, capture_queue_size=2,
                                          render_queue_size=2, sink_queue_size=2)
    source, detector = FileSource(clip), SquareDetector()
    mp4, lines = Mp4Sink(out, config.output, frame_rate=source.info.frame_rate), JsonLinesSink(jsonl)
    real_mp4 = mp4
    if stage == "capture":
        frames = source.frames

        def faulty_frames():
            for frame in frames():
                if frame.index == 5:
                    _inject(mode)
                yield frame
        monkeypatch.setattr(source, "frames", faulty_frames)
    elif stage == "inference":
        detect = detector.detect
        monkeypatch.setattr(detector, "detect", lambda images: (_inject(mode) if detector.seen == 5 else None,
                                                               detect(images))[1])
    elif stage == "render":
        from rtseg.render.renderer import Renderer
        draw, calls = Renderer.draw, []

        def faulty_draw(self, image, detections):
            if len(calls) == 5:
                _inject(mode)
            calls.append(1)
            return draw(self, image, detections)
        monkeypatch.setattr(Renderer, "draw", faulty_draw)
    elif stage == "mp4":
        mp4 = FaultySink(mp4, mode)
    else:
        lines = FaultySink(lines, mode)

    started = time.monotonic()
    summary = Pipeline(source, detector, config, [mp4, lines]).run()
    seconds = time.monotonic() - started

    expected_stage = {"mp4": "sinks", "jsonl": "sinks"}.get(stage, stage)
    if mode == "slow":
        assert summary.error is None and summary.frames_written == FRAMES
    else:
        assert summary.error is not None and summary.error.stage == expected_stage
        assert ("hung" if mode == "hang" else "injected fault") in str(summary.error)
        assert seconds < 8
    if not (stage in ("mp4", "jsonl") and mode == "hang"):  # the sinks thread is stuck: it cannot finish files
        frames, times, _ = read_video(out)
        assert len(frames) == real_mp4.frames_written >= summary.frames_written
        assert times == sorted(times)
    assert len(jsonl.read_text().splitlines()) >= min(summary.frames_written, 5)


def test_an_archive_interrupted_midway_is_finished_by_the_same_command(tmp_path):
    folder = tmp_path / "archive"
    folder.mkdir()
    for name in ("a", "b", "c", "d"):
        make_clip(folder / f"{name}.mp4", frames=60, fps=10)
    out = tmp_path / "out"
    args = ["--source", str(folder), "--output", str(out)]
    # One file at a time, so the first is finished and the second is halfway when the signal comes.
    config = tmp_path / "one-at-a-time.yaml"
    config.write_text("pipeline:\n  max_open_files: 1\n")
    child = _start_cli([*args, "--config", str(config)], delay=0.02)
    deadline = time.monotonic() + 60
    while not (out / "a.mp4").exists() and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    _wait_for_frames(out / ".b.mp4.partial" / "1" / "b.mp4", 10, child)  # the one staging layout
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 130, stderr
    assert (out / "a.mp4").exists() and not (out / "b.mp4").exists()  # only complete outputs have final names
    assert len(read_video(out / ".b.mp4.partial" / "1" / "b.mp4")[0]) >= 10  # what was done is kept, playable
    finished_at = (out / "a.mp4").stat().st_mtime_ns

    rerun = _start_cli([*args, "--config", str(config)], delay=0.0)
    stdout, stderr = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, stderr
    assert "skipped 1 input(s)" in stdout
    assert (out / "a.mp4").stat().st_mtime_ns == finished_at
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "b.mp4", "c.mp4", "d.mp4", "rtseg-manifest.jsonl"]
    for name in "abcd":
        assert len(read_video(out / f"{name}.mp4")[0]) == 60
    statuses = [(Path(r["file"]).name, r["status"]) for r in map(json.loads, (out / "rtseg-manifest.jsonl").open())]
    assert ("b.mp4", "stopped") in statuses and ("b.mp4", "done") in statuses and ("a.mp4", "done") in statuses
