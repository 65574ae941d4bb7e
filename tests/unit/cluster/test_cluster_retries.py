"""Without a Ray cluster: a worker the driver loses touch with is restarted before its file is retried, and two
attempts of one file (one given up on while it still ran, and its retry) never spoil each other's outputs."""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Any

import pytest
from helpers import make_clip

from rtseg.api import Outputs
from rtseg.cluster.archive import ArchiveResult, ArchiveRun
from rtseg.cluster.runtime import WorkerPool, WorkerTally
from rtseg.cluster.workers import FileTask
from rtseg.core.config import Config
from rtseg.pipeline.planner import plan_run
from rtseg.sinks.archive import Manifest, StagedOutput


class _Call:
    def remote(self, *args: Any) -> object:
        return object()


class _Actor:
    ready = _Call()


class _Ray:
    """What ``ArchiveRun._take`` and ``WorkerPool`` use of Ray: ``get`` fails with ``error``; kills are recorded."""

    def __init__(self, error: BaseException) -> None:
        self.exceptions = pytest.importorskip("ray").exceptions
        self.error = error
        self.killed: list[tuple[Any, bool]] = []

    def get(self, ref: Any) -> Any:
        raise self.error

    def kill(self, actor: Any, no_restart: bool = True) -> None:
        self.killed.append((actor, no_restart))


def _lost_attempt(tmp_path: Path, error: BaseException) -> tuple[_Ray, WorkerPool, deque[FileTask]]:
    (tmp_path / "in").mkdir()
    make_clip(tmp_path / "in" / "a.mp4", frames=2)
    plan = plan_run([str(tmp_path / "in")], Outputs(output=tmp_path / "out"), Config(), cluster=True)
    ray = _Ray(error)
    run = ArchiveRun(ray, plan, Config())
    pool = WorkerPool(ray, [_Actor()], [WorkerTally("worker-0")])
    queue: deque[FileTask] = deque()
    run._take(object(), (run.tasks[0], 0, time.monotonic()), pool, queue, ArchiveResult(),
              Manifest(tmp_path / "manifest.jsonl"))
    return ray, pool, queue


def test_a_worker_out_of_reach_is_restarted_before_its_file_is_tried_again(tmp_path):
    ray_exceptions = pytest.importorskip("ray").exceptions
    ray, pool, queue = _lost_attempt(tmp_path, ray_exceptions.ActorUnavailableError("connection lost", None))
    # Its attempt may still be running: Ray kills and restarts it, and it is not ready for work until it answers.
    assert ray.killed == [(pool.actors[0], False)]
    assert pool.ready == [] and list(pool.pings.values()) == [0] and pool.tallies[0].deaths == 1
    assert [(task.source.name, task.attempt) for task in queue] == [("a.mp4", 2)]


def test_a_dead_worker_is_left_to_ray_to_restart(tmp_path):
    ray_exceptions = pytest.importorskip("ray").exceptions
    ray, pool, queue = _lost_attempt(tmp_path, ray_exceptions.ActorDiedError())
    assert ray.killed == [] and list(pool.pings.values()) == [0] and pool.tallies[0].deaths == 1
    assert [(task.source.name, task.attempt) for task in queue] == [("a.mp4", 2)]


def test_two_attempts_of_one_file_keep_out_of_each_others_folders(tmp_path):
    final = tmp_path / "v.mp4"
    given_up, retry = StagedOutput(final, attempt=1), StagedOutput(final, attempt=2)
    given_up.prepare()
    given_up.path.write_bytes(b"half")
    retry.prepare()  # a retry clears what the earlier attempt left ...
    assert not given_up.path.parent.exists()
    retry.path.write_bytes(b"being written")
    given_up.prepare()  # ... but an earlier attempt starting late does not clear the retry's
    assert retry.path.read_bytes() == b"being written"
    given_up.discard_if_empty()  # the earlier attempt failed having written nothing: only its own folder goes
    assert not given_up.path.parent.exists() and retry.path.read_bytes() == b"being written"
    retry.path.write_bytes(b"whole")
    retry.commit()
    assert final.read_bytes() == b"whole" and not retry.directory.exists()
