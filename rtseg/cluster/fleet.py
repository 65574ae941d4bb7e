"""Camera fleets on a cluster: cameras spread over workers, each worker one multi-stream engine for its group.

Batching still happens on each worker's model. A worker whose process dies is
restarted by Ray (actor restarts, ``cluster.max_restarts``); the driver then
starts its group again, and each camera's recording continues as a new
segment (NAME.mp4, NAME-1.mp4, ...: a segment is never overwritten, and the
one cut short stays playable up to its last fragment). The driver logs each
camera's state as it changes and sums every segment into the closing summary.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtseg.cluster.runtime import DetectorFactory, WorkerPool, WorkerTally, shape_workers, short_error
from rtseg.cluster.workers import CameraState, FleetWorker, GroupOutcome, next_segment, segment
from rtseg.core.config import Config
from rtseg.core.errors import TerminationRequest
from rtseg.core.redaction import mask_credentials
from rtseg.pipeline.planner import RunPlan, StreamPlan
from rtseg.pipeline.summary import StreamSummary

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.5
_STATUS_SECONDS = 2.0
_STOP_GRACE_SECONDS = 30.0  # after a stop request, how long workers get to close their recordings


@dataclass
class CameraTally:
    """One camera over the whole run: every segment it recorded and the sums of their counts."""

    name: str
    worker: str
    finals: list[Path] = field(default_factory=list)  # the outputs' base paths, segment 0
    first_segment: int = 0  # the first segment number of this run (earlier runs' segments stay as they are)
    state: str = "starting"
    segments: list[str] = field(default_factory=list)
    frames_read: int = 0
    frames_written: int = 0
    frames_dropped: int = 0
    reconnects: int = 0
    error: str | None = None

    def add(self, stream: StreamSummary) -> None:
        """Sum one segment's counts (a worker that died mid-segment reports none: its file stands, uncounted)."""
        self.frames_read += stream.frames_read
        self.frames_written += stream.frames_written
        self.frames_dropped += stream.frames_dropped
        self.reconnects += stream.reconnects
        self.state, self.error = stream.status, None if stream.error is None else str(stream.error)

    def find_segments(self) -> None:
        """Every segment this run recorded, from the files (those of a worker that died included)."""
        number = self.first_segment
        while self.finals and segment(self.finals, number)[0].exists():
            self.segments.append(str(segment(self.finals, number)[0]))
            number += 1

    def line(self) -> str:
        text = (f"camera {self.name} ({self.worker}): {self.state}, {len(self.segments)} segment(s), "
                f"{self.frames_read} read, {self.frames_written} written, {self.frames_dropped} dropped, "
                f"{self.reconnects} reconnect(s)")
        return text + (f" ({self.error})" if self.error else "")


@dataclass
class FleetResult:
    cameras: list[CameraTally] = field(default_factory=list)
    workers: list[WorkerTally] = field(default_factory=list)
    wall_seconds: float = 0.0
    stop_reason: str | None = None

    @property
    def state(self) -> str:
        failed = [c for c in self.cameras if c.state == "failed"]
        if failed and len(failed) == len(self.cameras):
            return "failed"
        if self.stop_reason is not None:
            return self.stop_reason
        return "partial" if failed else "done"

    def lines(self) -> list[str]:
        out = [c.line() for c in self.cameras] + [w.line("segment") for w in self.workers]
        written = sum(c.frames_written for c in self.cameras)
        out.append(f"frames: {written} written by {len(self.cameras)} camera(s) in {self.wall_seconds:.1f} s "
                   f"({written / self.wall_seconds if self.wall_seconds else 0:.2f} frames/s)")
        failed = [c.name for c in self.cameras if c.state == "failed"]
        if failed:
            out.append(f"{len(failed)} of {len(self.cameras)} cameras failed: {', '.join(failed)}")
        return [mask_credentials(line) for line in out]


class FleetRun:
    """The driver of one fleet run; ``stop()`` (any thread) ends it as Ctrl-C does, recordings closed."""

    def __init__(self, ray: Any, plan: RunPlan, config: Config,
                 detector_factory: DetectorFactory | None = None) -> None:
        self.ray = ray
        self.plan = plan
        self.cameras = list(plan.streams)
        self.config = config
        self.detector_factory = detector_factory
        self.pool: WorkerPool | None = None
        self.groups: list[list[StreamPlan]] = []
        self.states: dict[str, str] = {}  # camera -> its state as last shown
        self._stop = threading.Event()

    @property
    def workers(self) -> list[Any]:
        return [] if self.pool is None else list(self.pool.actors)

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> FleetResult:
        started = time.monotonic()
        settings = self.config.cluster
        shape = shape_workers(settings, self.ray.cluster_resources(), len(self.cameras))
        self.groups = [self.cameras[i::shape.count] for i in range(shape.count)]
        tallies = {}  # numbered before any worker records, so that this run's segments are told from earlier ones
        for i, group in enumerate(self.groups):
            log.info("worker-%d: %s", i, ", ".join(c.name for c in group))
            for camera in group:
                tallies[camera.name] = CameraTally(camera.name, f"worker-{i}", camera.finals,
                                                   next_segment(camera.finals))
        self.pool = pool = WorkerPool.start(self.ray, FleetWorker, shape, settings.max_restarts,
                                            lambda i: (self.config, self.groups[i], self.plan.detector,
                                                       self.detector_factory))
        result = FleetResult(workers=pool.tallies)
        result.cameras = list(tallies.values())
        runs: dict[Any, int] = {}  # a run() call -> its worker
        stop_sent_at: float | None = None
        next_status = time.monotonic()
        try:
            while pool.pings or pool.ready or runs:
                try:
                    if self._stop.is_set() and stop_sent_at is None:
                        stop_sent_at = time.monotonic()
                        for actor in pool.actors:
                            actor.stop.remote()
                    if stop_sent_at is not None and time.monotonic() > stop_sent_at + _STOP_GRACE_SECONDS:
                        log.warning("workers did not stop within %g s; leaving them", _STOP_GRACE_SECONDS)
                        break
                    for index in pool.ready:
                        runs[pool.actors[index].run.remote()] = index
                    pool.ready.clear()
                    finished, _ = self.ray.wait([*runs, *pool.pings], num_returns=1, timeout=_POLL_SECONDS)
                    for ref in finished:
                        if ref in pool.pings:
                            pool.answer(ref)
                            if pool.ready and self._stop.is_set():
                                pool.ready.clear()  # restarted during a stop: nothing more to record
                        else:
                            self._take(ref, runs.pop(ref), pool, tallies)
                    if time.monotonic() >= next_status:
                        next_status = time.monotonic() + _STATUS_SECONDS
                        self._show_states(pool, runs)
                except KeyboardInterrupt as exc:
                    if result.stop_reason is not None:
                        raise
                    result.stop_reason = "terminated" if isinstance(exc, TerminationRequest) else "interrupted"
                    log.warning("%s: stopping every camera (their recordings are closed first)", result.stop_reason)
                    self._stop.set()
        finally:
            pool.close()
        for tally in result.cameras:
            tally.find_segments()
        result.wall_seconds = time.monotonic() - started
        return result

    def _take(self, ref: Any, index: int, pool: WorkerPool, tallies: dict[str, CameraTally]) -> None:
        tally = pool.tallies[index]
        group = self.groups[index]
        try:
            outcome: GroupOutcome = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as exc:
            restarts = self.config.cluster.max_restarts
            if self._stop.is_set() or (restarts >= 0 and tally.deaths >= restarts):
                tally.deaths += 1
                tally.gone = True
                for camera in group:
                    tallies[camera.name].state, tallies[camera.name].error = "failed", f"{tally.name} died"
                log.error("%s died (%s); its cameras are lost: %s", tally.name, short_error(exc),
                          ", ".join(c.name for c in group))
                return
            if isinstance(exc, self.ray.exceptions.ActorUnavailableError):
                pool.restart(index)  # out of reach, maybe still recording: never two recordings of one camera
            else:
                pool.died(index)
            log.warning("%s died (%s); Ray restarts it and its cameras resume as new segments: %s", tally.name,
                        short_error(exc), ", ".join(c.name for c in group))
            for camera in group:
                self._show(camera.name, "restarting")
            return
        tally.units += len(outcome.streams)
        tally.busy_seconds += outcome.seconds
        tally.node = outcome.identity.node
        for stream in outcome.streams:
            tally.frames += stream.frames_written
            tallies[stream.name].add(stream)
            self._show(stream.name, stream.status)
        if outcome.error is not None:
            log.error("%s: %s", tally.name, outcome.error)
        if outcome.error is not None and not outcome.streams:  # none of its cameras could start
            for camera in group:
                tallies[camera.name].state, tallies[camera.name].error = "failed", outcome.error

    def _show_states(self, pool: WorkerPool, runs: dict[Any, int]) -> None:
        """Ask every recording worker for its cameras' states (one that does not answer at once is skipped)."""
        asked = {pool.actors[index].status.remote(): index for index in set(runs.values())}
        if not asked:
            return
        answered, _ = self.ray.wait(list(asked), num_returns=len(asked), timeout=1.0)
        for ref in answered:
            try:
                states: dict[str, CameraState] = self.ray.get(ref)
            except self.ray.exceptions.RayError:
                continue
            for name, state in states.items():
                self._show(name, state.state)

    def _show(self, name: str, state: str) -> None:
        if self.states.get(name) != state:
            self.states[name] = state
            log.info("camera %s: %s", name, state)
