"""Two Ray nodes on this machine (ray.cluster_utils.Cluster, 127.0.0.1): a fleet of four RTSP cameras whose worker is
killed, and an archive whose node is removed mid-file."""

from __future__ import annotations

import dataclasses
import functools
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from cluster_helpers import catch_mid_file, ray_or_skip
from helpers import SquareDetector, make_clip, read_video

from rtseg.api import Outputs
from rtseg.cluster.archive import ArchiveRun
from rtseg.cluster.fleet import FleetRun
from rtseg.core.config import Config, StreamConfig
from rtseg.offline.rtsp import RtspServer
from rtseg.pipeline.planner import plan_run
from rtseg.sinks.archive import read_manifest

STORE = 80 * 1024 * 1024


@pytest.fixture(scope="module")
def two_nodes():
    ray = ray_or_skip()
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 1, "object_store_memory": STORE,
                                                            "include_dashboard": False})
    second = cluster.add_node(num_cpus=1, num_gpus=1, object_store_memory=STORE)
    ray.init(address=cluster.address, logging_level="WARNING")
    cluster.wait_for_nodes()
    try:
        yield ray, cluster, second
    finally:
        ray.shutdown()
        cluster.shutdown()


def _config() -> Config:
    config = Config()
    config.model = dataclasses.replace(config.model, weights="none")
    config.output = dataclasses.replace(config.output, show=False, fragment_seconds=0.5)
    config.live = dataclasses.replace(config.live, read_timeout=3.0, reconnect_delay=0.2, reconnect_max_delay=1.0)
    config.cluster = dataclasses.replace(config.cluster, workers=2, cpus_per_worker=1.0, gpus_per_worker=0.5)
    return config


def _wait(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _has_frames(path: Path, count: int = 10) -> bool:
    """At least ``count`` frames of a recording still being written can be played (its fragments so far)."""
    try:
        return path.exists() and len(read_video(path)[1]) >= count
    except Exception:  # noqa: BLE001 - no fragment finished yet
        return False


def _worker_logs(ray) -> str:
    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    return "\n".join(p.read_text(errors="replace") for p in logs.glob("worker-*") if p.suffix in (".out", ".err"))


def test_a_killed_fleet_worker_is_restarted_and_its_cameras_resume_as_new_segments(two_nodes, rtsp, tmp_path, caplog):
    ray, _, _ = two_nodes
    caplog.set_level("INFO", logger="rtseg")
    clip = make_clip(tmp_path / "camera.mp4", frames=600, fps=10, width=96, height=64)  # 60 s: longer than the test
    servers = [RtspServer(clip) for _ in range(4)]
    rec = tmp_path / "rec"
    results = []
    try:
        for server in servers:
            server.start()
        cameras = plan_run([StreamConfig(source=s.url("viewer:s3cret"), name=f"cam{i}") for i, s in enumerate(servers)],
                           Outputs(output=rec), _config(), cluster=True)
        fleet = FleetRun(ray, cameras, _config(), functools.partial(SquareDetector))
        runner = threading.Thread(target=lambda: results.append(fleet.run()))
        runner.start()
        try:
            _wait(lambda: all(_has_frames(rec / f"cam{i}.mp4") for i in range(4)), 120, "four recordings")
            victim = fleet.pool.tallies[0]
            names = [c.name for c in fleet.groups[0]]
            os.kill(victim.pid, signal.SIGKILL)
            _wait(lambda: all(_has_frames(rec / f"{name}-1.mp4") for name in names), 120, "the resumed segments")
            time.sleep(2.0)
        finally:
            fleet.stop()
            runner.join(120)
    finally:
        for server in servers:
            server.stop()
    [result] = results
    assert result.workers[0].deaths == 1 and result.workers[1].deaths == 0
    by_name = {c.name: c for c in result.cameras}
    for camera in result.cameras:
        resumed = camera.name in names
        assert camera.segments == [str(rec / f"{camera.name}.mp4")] + ([str(rec / f"{camera.name}-1.mp4")] if resumed else [])
        for segment in camera.segments:  # each segment plays on its own, on one monotonic timeline
            _, times, _ = read_video(Path(segment))
            assert len(times) >= 10 and (np.diff(times) > 0).all(), segment
    assert all(by_name[name].frames_written > 0 for name in by_name)
    assert sorted(p.name for p in rec.iterdir()) == sorted([f"cam{i}.mp4" for i in range(4)] + [f"{n}-1.mp4" for n in names])
    logs = _worker_logs(ray)
    assert "viewer:***@127.0.0.1" in logs  # the workers' own lines name the cameras, masked
    assert "s3cret" not in logs and "s3cret" not in caplog.text and "s3cret" not in "\n".join(result.lines())


def test_a_node_removed_mid_archive_leaves_the_rest_to_the_other(two_nodes, tmp_path):
    ray, cluster, second = two_nodes
    (tmp_path / "archive").mkdir()
    clips = [make_clip(tmp_path / "archive" / f"clip{i}.mp4", frames=40, width=64, height=48) for i in range(6)]
    out = tmp_path / "out"
    plan = plan_run([str(tmp_path / "archive")], Outputs(output=out), _config(), cluster=True)
    manifest = plan.manifest
    run = ArchiveRun(ray, plan, _config(), functools.partial(SquareDetector, delay=0.04))
    results = []
    runner = threading.Thread(target=lambda: results.append(run.run()))
    runner.start()

    def remove_node(now: dict) -> None:
        time.sleep(0.3)
        cluster.remove_node(second)  # the node goes, with the worker and its half-done file

    try:
        removed = catch_mid_file(ray, run, runner, lambda now: now["node_id"] == second.node_id, remove_node)
    finally:
        runner.join(180)
    assert removed is not None, "the second node's worker was never caught mid-file"
    [result] = results
    assert result.state == "done", result.lines()
    records = {Path(r["file"]).name: r for r in read_manifest(manifest)}
    assert sorted(records) == [c.name for c in clips] and all(r["status"] == "done" for r in records.values())
    assert records[removed]["attempts"] == 2
    assert sorted(p.name for p in out.iterdir()) == sorted([c.name for c in clips] + ["rtseg-manifest.jsonl"])
    assert all(len(read_video(out / c.name)[1]) == 40 for c in clips)
