"""On a local Ray cluster (127.0.0.1, one per module): archives with the same outputs as single runs, a killed
worker, reruns, a file that always fails; a fleet none of whose cameras can be reached."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
from cluster_helpers import catch_mid_file, ray_or_skip, started_together
from helpers import SquareDetector, make_clip, read_video

from rtseg.api import Outputs, process
from rtseg.cli import EXIT_PARTIAL, main
from rtseg.cluster.archive import ArchiveRun
from rtseg.cluster.front import run_cluster
from rtseg.cluster.runtime import DETECTOR_ENV
from rtseg.core.config import Config
from rtseg.core.redaction import MASK
from rtseg.offline.rtsp import free_port
from rtseg.pipeline.planner import plan_run
from rtseg.sinks.archive import MANIFEST_NAME, nothing_to_do, read_manifest

STUB = "rtseg.offline.stubs:SquareDetector"


@pytest.fixture(scope="module")
def ray_cluster():
    ray = ray_or_skip()
    ray.init(address="local", num_cpus=2, num_gpus=1, object_store_memory=80 * 1024 * 1024, include_dashboard=False,
             logging_level="WARNING")
    yield ray
    ray.shutdown()


def _config(**cluster) -> Config:
    config = Config()
    config.model = dataclasses.replace(config.model, weights="none")
    # The square (x = 4 + 3 i) crosses the middle of every clip: each video has events, written per file.
    config.analytics = dataclasses.replace(config.analytics, lines=[{"name": "gate", "points": [[0.4, 0], [0.4, 1]]}])
    config.output = dataclasses.replace(config.output, show=False)
    config.cluster = dataclasses.replace(config.cluster, workers=2, cpus_per_worker=1.0, gpus_per_worker=0.5, **cluster)
    return config


def _archive(folder: Path, count: int, frames: int) -> list[Path]:
    folder.mkdir()
    return [make_clip(folder / f"clip{i}.mp4", frames=frames, width=64 + 16 * i, height=48) for i in range(count)]


def _single_run(clip: Path, target: Path, delay: float = 0.0) -> None:
    target.mkdir(exist_ok=True)
    process(str(clip), Outputs(output=target / f"{clip.stem}.mp4", save_json=target / f"{clip.stem}.jsonl",
                               events=target / f"{clip.stem}.events.jsonl"),
            config=_config(), detector=SquareDetector(delay=delay))


def _events(path: Path) -> list[dict]:
    """A run's events without their wall clock, which differs between runs."""
    return [{k: v for k, v in json.loads(line).items() if k != "wall_time"} for line in path.read_text().splitlines()]


def _same_as_single(out: Path, reference: Path, name: str) -> None:
    """The cluster's outputs of ``name`` are those of a single run; if not, the message says where and how they
    differ, with the manifest's records (worker, attempts) of that file."""
    frames, times, _ = read_video(out / f"{name}.mp4")
    expected, expected_times, _ = read_video(reference / f"{name}.mp4")
    records = [r for r in read_manifest(out / MANIFEST_NAME) if Path(r["file"]).stem == name]
    context = f"{name}: manifest records {records}"
    assert times == expected_times and len(frames) == len(expected) > 0, \
        f"{context}; {len(frames)} frames at {times} against {len(expected)} at {expected_times}"
    differences = [_difference(i, a, b) for i, (a, b) in enumerate(zip(frames, expected)) if not np.array_equal(a, b)]
    assert not differences, f"{context}; {len(differences)} of {len(frames)} frames differ from a single run's: " \
                            + "; ".join(differences)
    lines, expected_lines = ((folder / f"{name}.jsonl").read_text().splitlines() for folder in (out, reference))
    wrong = [i for i, (a, b) in enumerate(zip(lines, expected_lines)) if a != b]
    assert lines == expected_lines, f"{context}; JSON Lines: {len(lines)} lines against {len(expected_lines)}, " \
                                    f"first different line {wrong[:1]}"


def _difference(index: int, frame: np.ndarray, expected: np.ndarray) -> str:
    """Where one decoded frame differs from the single run's: its size, or the pixels and by how much."""
    if frame.shape != expected.shape:
        return f"frame {index} is {frame.shape} against {expected.shape}"
    delta = np.abs(frame.astype(np.int16) - expected.astype(np.int16)).max(axis=2)
    ys, xs = np.nonzero(delta)
    return (f"frame {index}: {len(ys)} pixels differ, by up to {delta.max()}, "
            f"in x {xs.min()}..{xs.max()}, y {ys.min()}..{ys.max()}")


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_an_archive_on_two_workers_matches_single_runs_and_a_rerun_skips_it(ray_cluster, tmp_path, monkeypatch, capsys):
    clips = _archive(tmp_path / "archive", 6, frames=12)
    out = tmp_path / "out"
    (tmp_path / "started").mkdir()  # both workers start before either takes a file, however loaded the machine
    factory = started_together(tmp_path / "started", 2, functools.partial(SquareDetector, delay=0.01))
    result = run_cluster("auto", [str(tmp_path / "archive")], Outputs(output=out, save_json=out, events=out),
                         _config(), detector_factory=factory)
    assert result.state == "done", result.lines()
    assert len(result.workers) == 2 and all(w.node == "127.0.0.1" for w in result.workers), result.lines()
    assert sum(w.units for w in result.workers) == 6 and sum(w.frames for w in result.workers) == 72
    crossed = []
    for clip in clips:
        _single_run(clip, tmp_path / "single")
        reference = _events(tmp_path / "single" / f"{clip.stem}.events.jsonl")
        assert _events(out / f"{clip.stem}.events.jsonl") == reference
        crossed += [clip.stem for e in reference if e["kind"] == "cross"]
        _same_as_single(out, tmp_path / "single", clip.stem)
    assert crossed == ["clip0", "clip1", "clip2"]  # the narrower clips, where the square gets past 40 % of the width
    records = read_manifest(out / MANIFEST_NAME)
    assert sorted(Path(r["file"]).name for r in records) == [c.name for c in clips]
    assert all(r["status"] == "done" and r["frames"] == 12 and r["attempts"] == 1 and r["fps"] > 0
               and r["worker"] in ("worker-0", "worker-1") and r["error"] is None for r in records)
    assert _leftovers(out) == []
    # The same command again: nothing to redo. Then one output lost: only that file is redone, from the CLI.
    monkeypatch.setenv(DETECTOR_ENV, STUB)
    argv = ["--source", str(tmp_path / "archive"), "--output", str(out), "--save-json", str(out), "--weights", "none",
            "--cluster", "auto", "--line", "gate=0.4,0,0.4,1"]  # the line of _config(): drawn alike
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [nothing_to_do(6)]  # one line, exit 0, as without --cluster
    (out / "clip3.mp4").unlink()
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "1 done, 0 failed, 5 skipped" in printed and "worker-0 on 127.0.0.1: 1 file(s), 12 frames" in printed
    records = read_manifest(out / MANIFEST_NAME)
    assert len(records) == 7 and Path(records[-1]["file"]).name == "clip3.mp4"
    assert records[-1]["status"] == "done" and records[-1]["attempts"] == 1, records[-1]
    _same_as_single(out, tmp_path / "single", "clip3")


def test_a_worker_killed_mid_file_has_that_file_redone(ray_cluster, tmp_path):
    clips = _archive(tmp_path / "archive", 6, frames=30)
    out = tmp_path / "out"
    plan = plan_run([str(tmp_path / "archive")], Outputs(output=out, save_json=out), _config(), cluster=True)
    assert len(plan.streams) == 6 and plan.skipped == []
    manifest = plan.manifest
    run = ArchiveRun(ray_cluster, plan, _config(), functools.partial(SquareDetector, delay=0.04))
    results = []
    runner = threading.Thread(target=lambda: results.append(run.run()))
    runner.start()

    def half_written(now: dict) -> bool:
        staged = out / f".{Path(now['file']).stem}.mp4.partial" / "1"
        return staged.is_dir() and any(p.stat().st_size for p in staged.iterdir())

    try:  # the worker's process dies with the file half written
        killed = catch_mid_file(ray_cluster, run, runner, half_written, lambda now: os.kill(now["pid"], signal.SIGKILL))
    finally:
        runner.join(180)
    assert killed is not None, "no worker was caught mid-file"
    [result] = results
    assert result.state == "done", result.lines()
    records = {Path(r["file"]).name: r for r in read_manifest(manifest)}
    assert sorted(records) == [c.name for c in clips]
    assert records[killed]["attempts"] == 2 and records[killed]["status"] == "done"
    assert all(r["attempts"] == 1 for name, r in records.items() if name != killed)
    assert sum(w.deaths for w in result.workers) == 1
    assert _leftovers(out) == []
    for clip in clips:
        assert len(read_video(out / f"{clip.stem}.mp4")[1]) == 30
    _single_run(tmp_path / "archive" / killed, tmp_path / "single")
    _same_as_single(out, tmp_path / "single", Path(killed).stem)


def test_a_file_failing_every_attempt_is_reported_and_the_rest_go_on(ray_cluster, tmp_path, monkeypatch, capsys):
    _archive(tmp_path / "archive", 2, frames=8)
    (tmp_path / "archive" / "broken.mp4").write_bytes(b"this is not a video" * 20)
    monkeypatch.setenv(DETECTOR_ENV, STUB)
    config = tmp_path / "cluster.yaml"
    config.write_text("cluster: {workers: 2, cpus_per_worker: 1, gpus_per_worker: 0.5, max_attempts: 2}\n")
    code = main(["--source", str(tmp_path / "archive"), "--output", str(tmp_path / "out"), "--weights", "none",
                 "--config", str(config), "--cluster", "auto"])
    captured = capsys.readouterr()
    assert code == EXIT_PARTIAL, captured.err
    assert "2 done, 1 failed" in captured.out and "failed: " in captured.out and "broken.mp4 after 2 attempt(s)" in captured.out
    records = {Path(r["file"]).name: r for r in read_manifest(tmp_path / "out" / MANIFEST_NAME)}
    assert records["broken.mp4"]["status"] == "failed" and records["broken.mp4"]["attempts"] == 2
    assert records["broken.mp4"]["error"] and records["broken.mp4"]["output"] is None
    assert [records[f"clip{i}.mp4"]["status"] for i in range(2)] == ["done", "done"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip0.mp4", "clip1.mp4", MANIFEST_NAME]
    assert "Traceback" not in captured.err


def test_files_cut_by_max_frames_are_recorded_cut_and_redone_by_a_full_rerun(ray_cluster, tmp_path, monkeypatch,
                                                                            capsys):
    _archive(tmp_path / "archive", 2, frames=8)
    monkeypatch.setenv(DETECTOR_ENV, STUB)
    out = tmp_path / "out"
    argv = ["--source", str(tmp_path / "archive"), "--output", str(out), "--weights", "none", "--cluster", "auto"]
    assert main([*argv, "--max-frames", "3"]) == 0
    assert "0 done, 0 failed, 2 cut by --max-frames (kept staged)" in capsys.readouterr().out
    records = read_manifest(out / MANIFEST_NAME)
    assert sorted((r["status"], r["frames"], r["output"]) for r in records) == [("cut", 3, None)] * 2
    assert not (out / "clip0.mp4").exists()
    assert main(argv) == 0  # not taken for finished: both redone to their ends
    assert "2 done, 0 failed" in capsys.readouterr().out
    assert [(r["status"], r["frames"]) for r in read_manifest(out / MANIFEST_NAME)[2:]] == [("done", 8)] * 2
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [nothing_to_do(2)]


def test_a_fleet_on_one_worker_whose_cameras_are_all_down_fails_in_one_line_each(ray_cluster, tmp_path, monkeypatch,
                                                                                 capsys):
    monkeypatch.setenv(DETECTOR_ENV, STUB)
    config = tmp_path / "fleet.yaml"
    urls = [f"rtsp://viewer:s3cret@127.0.0.1:{free_port()}/gate", f"rtsp://127.0.0.1:{free_port()}/yard"]
    config.write_text("cluster: {workers: 1, cpus_per_worker: 1, gpus_per_worker: 0}\n"
                      f"streams:\n  - {{name: gate, source: '{urls[0]}'}}\n  - {{name: yard, source: '{urls[1]}'}}\n")
    code = main(["--config", str(config), "--output", str(tmp_path / "rec"), "--weights", "none", "--cluster", "auto"])
    captured = capsys.readouterr()
    assert code == 1, captured.err
    assert "2 of 2 cameras failed: gate, yard" in captured.out
    assert [line.split(":")[0] for line in captured.out.splitlines() if line.startswith("camera ")] == \
        ["camera gate (worker-0)", "camera yard (worker-0)"]
    assert f"viewer:{MASK}@" in captured.out and "s3cret" not in captured.out + captured.err
    assert list((tmp_path / "rec").iterdir()) == []
