"""The Ray actors: plain classes here (``ray.remote`` is applied when a run starts, so this imports without Ray).

Each worker loads the model once in its constructor, which Ray runs again when
it restarts the actor after its process died. Workers run the planner's
``StreamPlan``s through ``rtseg.api.PreparedRun``, as every front door does.
Every answer is a typed record (``FileOutcome``, ``GroupOutcome``, the streams'
own ``StreamSummary``) with credentials masked, never an exception: what
crosses to the driver is logged there.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtseg.api import PreparedRun
from rtseg.cluster.runtime import DetectorFactory, build_detector, setup_worker_logging
from rtseg.core.config import Config, ModelConfig
from rtseg.core.errors import RtsegError, RuntimeFailure
from rtseg.core.redaction import mask_credentials
from rtseg.pipeline.engine import Engine
from rtseg.pipeline.planner import RunPlan, StreamPlan
from rtseg.pipeline.summary import StreamSummary

log = logging.getLogger(__name__)


def _worker_config(config: Config) -> Config:
    """Workers show no window (the driver's checks have run: a worker only runs what was planned)."""
    return dataclasses.replace(config, output=dataclasses.replace(config.output, show=False))


@dataclass(frozen=True)
class Identity:
    """Where a worker runs: its node's address, Ray's node id and its process."""

    node: str
    node_id: str
    pid: int


def _identity() -> Identity:
    import ray

    address: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]  # unannotated in Ray
    return Identity(address, ray.get_runtime_context().get_node_id(), os.getpid())


def crossing(summary: StreamSummary) -> StreamSummary:
    """A stream's summary as it crosses to the driver: its error as one masked line (a plain ``RuntimeFailure``)."""
    if summary.error is None:
        return summary
    return dataclasses.replace(summary, error=RuntimeFailure(mask_credentials(str(summary.error))))


@dataclass
class FileTask:
    """One archive video to process: the planner's stream, and which attempt this is."""

    stream: StreamPlan
    attempt: int = 1

    @property
    def source(self) -> Path:
        assert self.stream.archive_input is not None, "an archive task is planned from an archive video"
        return self.stream.archive_input

    def retry(self) -> FileTask:
        return FileTask(self.stream, self.attempt + 1)


@dataclass
class FileOutcome:
    """One attempt at one archive video, as the worker reports it to the driver."""

    identity: Identity | None = None  # None when the worker died before it could answer
    summary: StreamSummary | None = None  # None when the run could not start (its error says why)
    error: str | None = None  # masked
    seconds: float = 0.0

    @property
    def done(self) -> bool:
        return self.error is None and self.summary is not None and self.summary.status == "done"

    @property
    def frames(self) -> int:
        return 0 if self.summary is None else self.summary.frames_written

    @property
    def fps(self) -> float:
        return 0.0 if self.summary is None else round(self.summary.fps, 3)


class ArchiveWorker:
    """Runs archive files one at a time through the same run as every front door (``PreparedRun``)."""

    def __init__(self, config: Config, settings: ModelConfig, detector_factory: DetectorFactory | None) -> None:
        setup_worker_logging()
        self.config = _worker_config(config)
        self.settings = settings
        self.detector = build_detector(detector_factory, settings)
        self._current: dict[str, Any] | None = None
        self._one_file = threading.Lock()  # Ray gives the actor two threads: one for a file, one for status calls

    def ready(self) -> Identity:
        return _identity()

    def current(self) -> dict[str, Any] | None:
        """The file being worked on now, with this worker's process and node (tests kill them mid-file)."""
        if self._current is None:
            return None
        return {**self._current, **dataclasses.asdict(_identity())}

    def process_file(self, task: FileTask) -> FileOutcome:
        """Attempt ``task.attempt`` writes in its own staging folder and commits when complete (``StagedOutput``);
        the manifest is the driver's."""
        started = time.monotonic()
        if not self._one_file.acquire(blocking=False):  # the driver lost track of this worker: never two at once
            busy = self._current["file"] if self._current is not None else "another file"
            return FileOutcome(_identity(), error=f"worker busy with {busy}")
        self._current = {"file": str(task.source), "attempt": task.attempt}
        outcome = FileOutcome(_identity())
        try:
            result = PreparedRun(RunPlan([task.stream], self.settings), self.config, detector=self.detector,
                                 attempt=task.attempt).run()
            summary = result.summary
            outcome.summary = crossing(summary.streams[0]) if summary.streams else None
            error = summary.error or (outcome.summary.error if outcome.summary is not None else None)
            if error is not None or outcome.summary is None or outcome.summary.status != "done":
                status = outcome.summary.status if outcome.summary is not None else "early"
                outcome.error = mask_credentials(str(error or f"ended {status}"))
        except (RtsegError, OSError) as exc:
            outcome.error = mask_credentials(str(exc))
        finally:
            self._current = None
            self._one_file.release()
        outcome.seconds = time.monotonic() - started
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


@dataclass
class GroupOutcome:
    """One recording run of a worker's cameras: each camera's summary (errors masked), or why none started."""

    identity: Identity
    streams: list[StreamSummary] = field(default_factory=list)
    error: str | None = None  # masked
    seconds: float = 0.0


@dataclass(frozen=True)
class CameraState:
    """A camera's state as the driver shows it: starting, live, reconnecting, or how it ended."""

    state: str
    frames: int


class FleetWorker:
    """One multi-stream engine for a group of cameras; each ``run`` records every camera into a new segment."""

    def __init__(self, config: Config, cameras: list[StreamPlan], settings: ModelConfig,
                 detector_factory: DetectorFactory | None) -> None:
        setup_worker_logging()
        self.config = dataclasses.replace(_worker_config(config), streams=[])
        self.cameras = cameras
        self.settings = settings
        self.detector = build_detector(detector_factory, settings)
        self._engine: Engine | None = None
        self._ended: dict[str, StreamSummary] = {}
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def ready(self) -> Identity:
        return _identity()

    def _segments(self) -> list[StreamPlan]:
        """Each camera's plan with its outputs moved to the first segment none of whose files exists."""
        segments = []
        for camera in self.cameras:
            number = next_segment(camera.finals)
            outputs = camera.outputs.moved({name: segment([path], number)[0]
                                            for name, path in camera.outputs.files().items()})
            segments.append(dataclasses.replace(camera, outputs=outputs))
            log.info("recording camera %s from %s into %s", camera.name, camera.source,
                     ", ".join(str(p) for p in segments[-1].finals) or "no file")
        return segments

    def run(self) -> GroupOutcome:
        """Record every camera of the group until they end or ``stop``; the per-camera summaries."""
        started = time.monotonic()
        outcome = GroupOutcome(_identity())
        try:
            with self._lock:  # stop() either comes first, or finds the engine to stop (even while it opens cameras)
                if self._stopping.is_set():
                    return outcome
                prepared = PreparedRun(RunPlan(self._segments(), self.settings), self.config, detector=self.detector,
                                       on_finish=self._recorded)
                self._engine = prepared.engine
            summary = prepared.run().summary
            outcome.streams = [crossing(s) for s in summary.streams]
            if summary.error is not None:
                outcome.error = mask_credentials(str(summary.error))
        except RtsegError as exc:
            outcome.error = mask_credentials(str(exc))
        outcome.seconds = time.monotonic() - started
        return outcome

    def _recorded(self, summary: StreamSummary) -> None:
        self._ended[summary.name] = summary

    def status(self) -> dict[str, CameraState]:
        """Each camera's state now: starting, live, reconnecting, or how it ended; with its frames written."""
        engine = self._engine
        lanes = {lane.name: lane for lane in (engine.lanes if engine is not None else [])}
        states = {}
        for camera in self.cameras:
            name = camera.name
            if name in self._ended:
                ended = self._ended[name]
                states[name] = CameraState(ended.status, ended.frames_written)
            elif name in lanes:
                lane = lanes[name]
                states[name] = CameraState("reconnecting" if lane.reconnecting else "live",
                                           lane.summary.frames_written)
            else:
                states[name] = CameraState("starting", 0)
        return states

    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
            if self._engine is not None:
                self._engine.stop()
