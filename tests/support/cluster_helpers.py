"""Catching a Ray archive worker in the middle of a file, to kill it or remove its node there; starting workers
together."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rtseg.cluster.archive import ArchiveRun
from rtseg.cluster.runtime import import_ray
from rtseg.core.errors import UsageError
from rtseg.detect.base import Detector

REQUIRE_ENV = "RTSEG_REQUIRE_CLUSTER"  # set by CI (.ci/run): there a missing Ray fails the tests instead of skipping


def ray_or_skip() -> Any:
    """The ``ray`` module kept on 127.0.0.1, or the test is skipped where the ``[cluster]`` extra is not installed
    (as the web tests skip without ``[web]``): the README's plain ``pip install -e ".[test]"`` stays green."""
    try:
        return import_ray(single_node=True)
    except UsageError as exc:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))

Current = dict[str, Any]  # ArchiveWorker.current(): the file, the attempt, the worker's pid, node and node id


def catch_mid_file(ray: Any, run: ArchiveRun, runner: threading.Thread, caught: Callable[[Current], bool],
                   act: Callable[[Current], None], timeout: float = 120.0) -> str | None:
    """Ask every worker what it works on until ``caught`` says one is far enough in, ``act`` on it, and return
    that file's name; None if the run ended or ``timeout`` passed first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and runner.is_alive():
        for worker in run.workers:
            ready, _ = ray.wait([asked := worker.current.remote()], timeout=1.0)
            now = ray.get(asked) if ready else None
            if now is not None and caught(now):
                act(now)
                return Path(now["file"]).name
        time.sleep(0.05)
    return None


def started_together(folder: Path, count: int, factory: Callable[[], Detector],
                     timeout: float = 120.0) -> Callable[[], Detector]:
    """A detector factory for ``count`` workers: each worker, once it has its detector, waits (at most ``timeout``
    seconds) until all of them have one, so that on a loaded machine a worker that is slow to start still finds
    files to do. ``folder`` (empty, on this machine) holds a mark per worker built.

    Ray pickles the returned closure by value: the workers need not import this module.
    """
    def build() -> Detector:
        detector = factory()
        (folder / f"{os.getpid()}-{uuid.uuid4().hex}").touch()
        deadline = time.monotonic() + timeout
        while len(list(folder.iterdir())) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return detector

    return build
