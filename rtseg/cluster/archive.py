"""Archives on a cluster: one video per task, given to whichever long-lived worker is free.

The driver keeps the queue, counts attempts and writes the manifest; workers
only process files. A file whose worker died or that failed goes back to the
queue until ``cluster.max_attempts`` tries are spent; then it is reported and
the rest go on. Every output is written under its temporary name and renamed
by the worker when complete, so a final name always holds a whole file, a
rerun skips files whose outputs all stand under their final names, and a
retried file starts afresh and yields what a single run would.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rtseg.cluster.runtime import DetectorFactory, WorkerPool, WorkerTally, shape_workers, short_error
from rtseg.cluster.workers import ArchiveWorker, FileOutcome, FileTask
from rtseg.core.config import Config
from rtseg.core.errors import TerminationRequest
from rtseg.pipeline.planner import RunPlan
from rtseg.sinks.archive import Manifest, nothing_to_do

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.5


@dataclass
class ArchiveResult:
    """A finished archive run: one record per file (as in the manifest), each worker's tally, Ray's overhead."""

    records: list[dict[str, Any]] = field(default_factory=list)
    workers: list[WorkerTally] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    overheads: list[float] = field(default_factory=list)  # per file: driver's round trip minus the worker's own time
    file_seconds: list[float] = field(default_factory=list)  # per file: the worker's own time
    manifest: Path | None = None
    stop_reason: str | None = None
    ready_seconds: float | None = None  # from the start until the first worker had loaded its model

    @property
    def done(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] == "done"]

    @property
    def cut(self) -> list[dict[str, Any]]:
        """Files ended by --max-frames: processed as asked, but not finished (a rerun redoes them)."""
        return [r for r in self.records if r["status"] == "cut"]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] == "failed"]

    @property
    def overhead_share(self) -> float:
        """Ray's part (scheduling, transfer) of a file's time, over all files."""
        total = sum(self.overheads) + sum(self.file_seconds)
        return sum(self.overheads) / total if total else 0.0

    @property
    def state(self) -> str:
        if self.stop_reason is not None:
            return self.stop_reason
        if self.failed:
            return "failed" if not (self.done or self.cut) else "partial"
        return "done"

    def lines(self) -> list[str]:
        if not self.records and self.skipped and self.stop_reason is None:  # a rerun of a finished archive
            return [nothing_to_do(len(self.skipped))]
        frames = sum(r["frames"] for r in [*self.done, *self.cut])
        out = [tally.line("file") for tally in self.workers]
        out.append(f"files: {len(self.done)} done, {len(self.failed)} failed"
                   + (f", {len(self.cut)} cut by --max-frames (kept staged)" if self.cut else "")
                   + (f", {len(self.skipped)} skipped (finished by an earlier run)" if self.skipped else "")
                   + f"; {sum(r['attempts'] for r in self.records)} attempt(s)")
        rate = frames / self.wall_seconds if self.wall_seconds else 0.0
        out.append(f"time: {self.wall_seconds:.1f} s, {frames} frames, {rate:.2f} frames/s, "
                   f"{len(self.done) / self.wall_seconds if self.wall_seconds else 0:.3f} files/s")
        if self.overheads:
            out.append(f"Ray overhead per file: {1000 * sum(self.overheads) / len(self.overheads):.0f} ms mean, "
                       f"{self.overhead_share:.1%} of the files' time")
        out += [f"failed: {r['file']} after {r['attempts']} attempt(s): {r['error']}" for r in self.failed]
        if self.manifest is not None:
            out.append(f"manifest: {self.manifest}")
        return out


class ArchiveRun:
    """The driver of one archive run planned by ``plan_run(..., cluster=True)``; ``workers`` holds the pool's
    actors once ``run`` has started them."""

    def __init__(self, ray: Any, plan: RunPlan, config: Config, detector_factory: DetectorFactory | None = None,
                 progress: bool = False) -> None:
        if plan.manifest is None:
            raise ValueError("an archive run needs a manifest (plan_run(..., cluster=True) decides it)")
        self.ray = ray
        self.plan = plan
        self.tasks = [FileTask(stream) for stream in plan.streams]
        self.config = config
        self.manifest_path = plan.manifest
        self.detector_factory = detector_factory
        self.progress = progress
        self.pool: WorkerPool | None = None

    @property
    def workers(self) -> list[Any]:
        return [] if self.pool is None else list(self.pool.actors)

    def run(self) -> ArchiveResult:
        result = ArchiveResult(manifest=self.manifest_path, skipped=list(self.plan.skipped))
        started = time.monotonic()
        settings = self.config.cluster
        shape = shape_workers(settings, self.ray.cluster_resources(), len(self.tasks))
        log.info("%d file(s) on %d worker(s), %g CPU and %g GPU each", len(self.tasks), shape.count, shape.cpus,
                 shape.gpus)
        self.pool = pool = WorkerPool.start(self.ray, ArchiveWorker, shape, settings.max_restarts,
                                            lambda i: (self.config, self.plan.detector, self.detector_factory))
        manifest = Manifest(self.manifest_path)
        bar = tqdm(total=len(self.tasks), unit="file", file=sys.stderr, dynamic_ncols=True) if self.progress else None
        queue = deque(self.tasks)
        running: dict[Any, tuple[FileTask, int, float]] = {}  # a process_file call -> its task, worker, submit time
        try:
            while queue or running:
                if pool.ready and result.ready_seconds is None:
                    result.ready_seconds = time.monotonic() - started
                while queue and pool.ready:
                    index, task = pool.ready.pop(0), queue.popleft()
                    running[pool.actors[index].process_file.remote(task)] = (task, index, time.monotonic())
                waiting = [*running, *pool.pings]
                if not pool.alive or not waiting:
                    for task in [*queue, *(t for t, _, _ in running.values())]:
                        self._record(result, manifest, task, None, FileOutcome(error="no worker left in the cluster"))
                    break
                finished, _ = self.ray.wait(waiting, num_returns=1, timeout=_POLL_SECONDS)
                for ref in finished:
                    if ref in pool.pings:
                        pool.answer(ref)
                    else:
                        self._take(ref, running.pop(ref), pool, queue, result, manifest)
                if bar is not None:
                    frames = sum(r["frames"] for r in [*result.done, *result.cut])
                    bar.update(len(result.records) - bar.n)
                    bar.set_postfix_str(f"{frames} frames, {frames / (time.monotonic() - started):.1f} frames/s",
                                        refresh=False)
        except KeyboardInterrupt as exc:
            result.stop_reason = "terminated" if isinstance(exc, TerminationRequest) else "interrupted"
            log.warning("%s: %d file(s) unfinished stay under temporary names until a rerun redoes them",
                        result.stop_reason, len(queue) + len(running))
        finally:
            pool.close()
            manifest.close()
            if bar is not None:
                bar.close()
        result.workers = pool.tallies
        result.wall_seconds = time.monotonic() - started
        return result

    def _take(self, ref: Any, submitted: tuple[FileTask, int, float], pool: WorkerPool, queue: deque[FileTask],
              result: ArchiveResult, manifest: Manifest) -> None:
        """One attempt's outcome: record the file, or put it back in the queue for another try."""
        task, index, sent_at = submitted
        tally = pool.tallies[index]
        try:
            outcome: FileOutcome = self.ray.get(ref)
        except self.ray.exceptions.ActorUnavailableError as exc:
            # Out of reach, not dead: the attempt may still be running there. Restart the worker first, so that
            # the retry never runs beside it (nor the worker, answering pings meanwhile, gets a second file).
            pool.restart(index)
            outcome = FileOutcome(error=f"{tally.name} unreachable, restarted: {short_error(exc)}")
        except self.ray.exceptions.RayActorError as exc:
            pool.died(index)
            outcome = FileOutcome(error=f"{tally.name} died: {short_error(exc)}")
        except self.ray.exceptions.RayError as exc:
            pool.ready.append(index)
            outcome = FileOutcome(error=short_error(exc))
        else:
            pool.ready.append(index)
            tally.busy_seconds += outcome.seconds
            result.file_seconds.append(outcome.seconds)
            result.overheads.append(max(0.0, time.monotonic() - sent_at - outcome.seconds))
        if outcome.done:
            tally.units += 1
            tally.frames += outcome.frames
            self._record(result, manifest, task, index, outcome)
            return
        tally.failed_attempts += 1
        if task.attempt < self.config.cluster.max_attempts:
            log.warning("%s: attempt %d of %d failed (%s); trying again", task.source.name, task.attempt,
                        self.config.cluster.max_attempts, outcome.error)
            queue.append(task.retry())
            return
        log.error("%s: failed %d time(s), giving up: %s", task.source.name, task.attempt, outcome.error)
        self._record(result, manifest, task, index, outcome)

    def _record(self, result: ArchiveResult, manifest: Manifest, task: FileTask, index: int | None,
                outcome: FileOutcome) -> None:
        worker = None if index is None or self.pool is None else self.pool.tallies[index]
        done = outcome.done
        cut = done and outcome.summary is not None and outcome.summary.cut  # left staged by the worker
        record = {"file": str(task.source), "output": str(task.stream.finals[0]) if done and not cut else None,
                  "worker": None if worker is None else worker.name,
                  "node": None if outcome.identity is None else outcome.identity.node,
                  "status": ("cut" if cut else "done") if done else "failed", "frames": outcome.frames, "fps": outcome.fps,
                  "attempts": task.attempt, "error": None if done else outcome.error or "failed"}
        manifest.append(record)
        result.records.append(record)
