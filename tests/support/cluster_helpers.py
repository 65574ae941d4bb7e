"""Catching a Ray archive worker in the middle of a file, to kill it or remove its node there."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rtseg.cluster.archive import ArchiveRun

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
