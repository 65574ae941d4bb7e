"""The Ray actors: plain classes here (``ray.remote`` is applied when a run starts, so this imports without Ray).

Each worker loads the model once in its constructor, which Ray runs again when
it restarts the actor after its process died. Every answer is plain data with
credentials masked, never an exception: what crosses to the driver is logged there.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtseg.api import Engine, Outputs, process
from rtseg.cluster.runtime import DetectorFactory, build_detector, setup_worker_logging
from rtseg.core.config import Config, StreamConfig, stream_config
from rtseg.core.errors import RtsegError
from rtseg.core.redaction import mask_credentials
from rtseg.pipeline.plans import plan_run
from rtseg.pipeline.summary import StreamSummary
from rtseg.sinks.archive import partial_path

log = logging.getLogger(__name__)


def _worker_config(config: Config) -> Config:
    """Workers show no window; their temporary outputs may be replaced (a retried file starts afresh)."""
    return dataclasses.replace(config, output=dataclasses.replace(config.output, show=False, overwrite=True))


def _identity() -> dict[str, Any]:
    import ray

    return {"node": ray.util.get_node_ip_address(), "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid()}


@dataclass(frozen=True)
class FileTask:
    """One archive video: where it is, what its stream is called, and its outputs' final paths."""

    source: Path
    name: str
    finals: tuple[Path, ...]  # the MP4 and/or the JSON Lines file, under their final names
    attempt: int = 1

    def scratch(self, final: Path) -> Path:
        """Where this attempt writes ``final``: inside its temporary name, so a retry never meets a half file."""
        return partial_path(final) / str(self.attempt) / final.name


def commit(task: FileTask) -> None:
    """Move each complete output from its temporary place to its final name (atomic, same directory)."""
    for final in task.finals:
        os.replace(task.scratch(final), final)
    for final in task.finals:
        shutil.rmtree(partial_path(final), ignore_errors=True)


class ArchiveWorker:
    """Runs archive files one at a time through the single-file path, ``rtseg.api.process``."""

    def __init__(self, config: Config, detector_factory: DetectorFactory | None) -> None:
        setup_worker_logging()
        self.config = _worker_config(config)
        self.detector = build_detector(detector_factory, self.config)
        self._current: dict[str, Any] | None = None

    def ready(self) -> dict[str, Any]:
        return _identity()

    def current(self) -> dict[str, Any] | None:
        """The file being worked on now, with this worker's process and node (tests kill them mid-file)."""
        return None if self._current is None else {**self._current, **_identity()}

    def process_file(self, task: FileTask) -> dict[str, Any]:
        started = time.monotonic()
        self._current = {"file": str(task.source), "attempt": task.attempt}
        outcome: dict[str, Any] = {"status": "failed", "frames": 0, "fps": 0.0, "error": None, **_identity()}
        try:
            for final in task.finals:
                shutil.rmtree(partial_path(final), ignore_errors=True)  # what an earlier attempt left
                task.scratch(final).parent.mkdir(parents=True)
            scratch = {final.suffix: task.scratch(final) for final in task.finals}
            result = process(str(task.source), Outputs(output=scratch.get(".mp4"), save_json=scratch.get(".jsonl")),
                             config=self.config, detector=self.detector)
            summary = result.summary
            stream = summary.streams[0] if summary.streams else None
            outcome.update(frames=summary.frames_written, fps=round(summary.fps, 3))
            error = summary.error or (stream.error if stream is not None else None)
            if error is None and stream is not None and stream.status == "done":
                commit(task)
                outcome["status"] = "done"
            else:
                outcome["error"] = mask_credentials(str(error or f"ended {stream.status if stream else 'early'}"))
        except (RtsegError, OSError) as exc:
            outcome["error"] = mask_credentials(str(exc))
        finally:
            self._current = None
        if outcome["status"] != "done":  # what was processed stays under its temporary name; nothing, nothing
            for final in task.finals:
                if not task.scratch(final).exists():
                    shutil.rmtree(partial_path(final), ignore_errors=True)
        outcome["seconds"] = time.monotonic() - started
        return outcome


def segment(finals: Sequence[Path], number: int) -> list[Path]:
    """A camera's outputs for recording segment ``number``: NAME.mp4 for 0, then NAME-1.mp4, NAME-2.mp4 ..."""
    return [p if number == 0 else p.with_name(f"{p.stem}-{number}{p.suffix}") for p in finals]


def next_segment(finals: Sequence[Path]) -> int:
    """The first segment number none of whose files exists: a new segment never overwrites an earlier one.

    All of a camera's outputs (MP4, JSON Lines) take the same number.
    """
    number = 0
    while any(p.exists() for p in segment(finals, number)):
        number += 1
    return number


class FleetWorker:
    """One multi-stream engine for a group of cameras; each ``run`` records every camera into a new segment."""

    def __init__(self, config: Config, cameras: list[StreamConfig], detector_factory: DetectorFactory | None) -> None:
        setup_worker_logging()
        self.config = dataclasses.replace(_worker_config(config), streams=[])
        self.config.output = dataclasses.replace(self.config.output, overwrite=False)  # segments never replace
        self.cameras = cameras
        self.detector = build_detector(detector_factory, self.config,
                                       [stream_config(self.config, c) for c in cameras])
        self._engine: Engine | None = None
        self._ended: dict[str, StreamSummary] = {}
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def ready(self) -> dict[str, Any]:
        return _identity()

    def _segments(self) -> list[StreamConfig]:
        segments = []
        for camera in self.cameras:
            finals = [Path(p) for p in (camera.output, camera.save_json) if p]
            paths = iter(segment(finals, next_segment(finals)))
            segments.append(dataclasses.replace(camera, output=str(next(paths)) if camera.output else None,
                                                save_json=str(next(paths)) if camera.save_json else None))
            log.info("recording camera %s from %s into %s", camera.name, camera.source,
                     ", ".join(p for p in (segments[-1].output, segments[-1].save_json) if p) or "no file")
        return segments

    def run(self) -> dict[str, Any]:
        """Record every camera of the group until they end or ``stop``; the per-camera summaries as plain data."""
        started = time.monotonic()
        outcome: dict[str, Any] = {"streams": [], "error": None, **_identity()}
        try:
            plan = plan_run(self._segments(), Outputs(), self.config)
            for stream_plan in plan.plans:
                stream_plan.finish = self._recorder(stream_plan.finish)
            with self._lock:
                if self._stopping.is_set():
                    return outcome
                self._engine = Engine(self.detector, self.config, plan.plans)
            summary = self._engine.run()
            outcome["streams"] = [{**s.as_dict(), "output": s.output,
                                   "error": None if s.error is None else mask_credentials(str(s.error))}
                                  for s in summary.streams]
            if summary.error is not None:
                outcome["error"] = mask_credentials(str(summary.error))
        except RtsegError as exc:
            outcome["error"] = mask_credentials(str(exc))
        outcome["seconds"] = time.monotonic() - started
        return outcome

    def _recorder(self, finish: Any) -> Any:
        def recorded(summary: StreamSummary) -> None:
            if finish is not None:
                finish(summary)
            self._ended[summary.name] = summary
        return recorded

    def status(self) -> dict[str, dict[str, Any]]:
        """Each camera's state now: starting, live, reconnecting, or how it ended; with its frames written."""
        engine = self._engine
        lanes = {lane.name: lane for lane in (engine.lanes if engine is not None else [])}
        states = {}
        for camera in self.cameras:
            name = camera.name or camera.source
            if name in self._ended:
                ended = self._ended[name]
                states[name] = {"state": ended.status, "frames": ended.frames_written}
            elif name in lanes:
                lane = lanes[name]
                states[name] = {"state": "reconnecting" if lane.reconnecting else "live",
                                "frames": lane.summary.frames_written}
            else:
                states[name] = {"state": "starting", "frames": 0}
        return states

    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
            if self._engine is not None:
                self._engine.stop()
