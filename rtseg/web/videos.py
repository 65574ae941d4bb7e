"""Video jobs: each upload runs through the real pipeline (``rtseg.api.stream``) on one background thread.

The pipeline tracks, colours by track, keeps the audio and writes the H.264
MP4 and JSON Lines the CLI writes; the job counts frames as they reach the
sinks (progress, ETA), and cancelling stops the pipeline as Ctrl-C does and
deletes what it wrote. Jobs run one after another; their model calls share the
model with image requests through ``SharedModel``'s fair lock. A queued job that
is cancelled finishes at once and gives its admission slot back, so the page
never shows a dead job holding a place in the queue.

A job with zones or lines runs scene analytics in the pipeline: its status
carries the latest counts and the last ``RECENT_EVENTS`` events while it runs,
and when done it has the events as JSON Lines. Every job writes a heatmap.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable, Collection
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtseg.api import Outputs, StreamConfig, stream
from rtseg.core.config import Config, ModelConfig
from rtseg.core.errors import RtsegError
from rtseg.core.structures import Frame
from rtseg.web.scenes import RECENT_EVENTS, Regions, scene_dict, shown_events
from rtseg.web.sharing import FilteredDetector, SharedModel

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)
CLOSE_TIMEOUT = 60.0  # seconds shutdown waits for a running job: one model call, and the MP4 being finished


@dataclass
class VideoJob:
    directory: Path  # private, random name; holds the upload and the results
    label: str  # the user's file name, for messages
    stem: str  # download file names start with it (safe characters only)
    config: Config  # the page's score threshold in model.score_threshold
    class_ids: Collection[int] | None
    frames_total: int | None
    on_finish: Callable[[], None]  # gives the job's admission slot back
    regions: Regions | None = None  # zones and lines (already in config.analytics); None: no analytics
    state: str = QUEUED
    frames_done: int = 0
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    scene: dict[str, Any] | None = None  # the latest frame's counts (scenes.scene_dict)
    events: tuple[dict[str, Any], ...] = ()  # the latest RECENT_EVENTS events, oldest first (replaced, never mutated)
    events_total: int = 0
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    # Rule: a job leaves QUEUED under this lock, once: either the worker starts it or cancel() finishes it.
    _start: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    # The job's files, all in its private directory (set by __post_init__).
    upload: Path = field(init=False, repr=False)
    video: Path = field(init=False, repr=False)
    records: Path = field(init=False, repr=False)
    event_lines: Path = field(init=False, repr=False)
    heatmap: Path = field(init=False, repr=False)

    def __post_init__(self) -> None:
        names = ("upload", "annotated.mp4", "detections.jsonl", "events.jsonl", "heatmap.png")
        self.upload, self.video, self.records, self.event_lines, self.heatmap = (self.directory / n for n in names)

    def outputs(self) -> Outputs:
        """Every job writes the MP4, its records and a heatmap; the events only where there are zones or lines."""
        return Outputs(output=self.video, save_json=self.records, heatmap=self.heatmap,
                       events=self.event_lines if self.regions is not None else None)

    def seen(self, frame: Frame) -> None:
        """Called for each finished frame, in order: progress, and the counts and events the page shows."""
        self.frames_done += 1
        if frame.scene is not None:
            self.scene = scene_dict(frame.scene)
        shown = shown_events(frame.events)
        if shown:
            self.events = (*self.events, *shown)[-RECENT_EVENTS:]
            self.events_total += len(shown)

    def status(self, ahead: int = 0) -> dict[str, Any]:
        """What the page shows; ``ahead`` is how many jobs run or wait before this one (0 unless queued)."""
        eta = None
        if self.state == RUNNING and self.frames_total and self.frames_done and self.started_at is not None:
            rate = self.frames_done / max(time.monotonic() - self.started_at, 1e-6)
            eta = round(max(self.frames_total - self.frames_done, 0) / rate, 1)
        return {"state": self.state, "frames_done": self.frames_done, "frames_total": self.frames_total,
                "eta_seconds": eta, "error": self.error, "ahead": ahead if self.state == QUEUED else 0,
                "stem": self.stem, "analytics": self.regions is not None, "scene": self.scene,
                "events": list(self.events), "events_total": self.events_total}

    def cancel(self) -> None:
        """A queued job finishes now (its slot is free at once); a running one stops at its next frame."""
        with self._start:
            if self.state == QUEUED:
                self.cancel_requested.set()
                self.finish(CANCELLED)
            elif self.state not in FINISHED:
                self.cancel_requested.set()

    def begin(self) -> bool:
        """Called by the worker: moves a queued job to RUNNING; False when it was cancelled meanwhile."""
        with self._start:
            if self.state != QUEUED:
                return False  # cancel() has finished it already
            if self.cancel_requested.is_set():  # the server is closing
                self.finish(CANCELLED)
                return False
            self.state, self.started_at = RUNNING, time.monotonic()
            return True

    def finish(self, state: str, error: str | None = None) -> None:
        self.state, self.error, self.finished_at = state, error, time.monotonic()
        if state != DONE:
            for path in (self.video, self.records, self.event_lines, self.heatmap):
                path.unlink(missing_ok=True)
        self.upload.unlink(missing_ok=True)
        self.on_finish()


class VideoWorker:
    """Runs queued jobs in order on one thread and keeps every job by id until it expires.

    ``close`` cancels every job and waits for the thread.
    """

    def __init__(self, model: SharedModel, keep_seconds: float) -> None:
        self.model = model
        self.keep_seconds = keep_seconds
        self.jobs: dict[str, VideoJob] = {}
        self._queue: queue.Queue[VideoJob | None] = queue.Queue()  # bounded by the server's Admission
        self._thread = threading.Thread(target=self._serve, name="rtseg-web-videos", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def submit(self, job_id: str, job: VideoJob) -> None:
        with self._lock:
            self.jobs[job_id] = job
        self._queue.put(job)

    def ahead_of(self, job_id: str) -> int:
        """How many jobs submitted before ``job_id`` are still queued or running (jobs run in submission order)."""
        with self._lock:
            ahead = 0
            for other_id, job in self.jobs.items():
                if other_id == job_id:
                    return ahead
                ahead += job.state in (QUEUED, RUNNING)
        return 0

    def status(self, job_id: str, job: VideoJob) -> dict[str, Any]:
        return job.status(self.ahead_of(job_id) if job.state == QUEUED else 0)

    def expire(self, now: float) -> None:
        """Forget finished jobs older than ``keep_seconds`` and delete their files."""
        with self._lock:
            old = [k for k, job in self.jobs.items()
                   if job.finished_at is not None and now - job.finished_at > self.keep_seconds]
            for job_id in old:
                shutil.rmtree(self.jobs.pop(job_id).directory, ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            for job in self.jobs.values():
                job.cancel_requested.set()
        self._queue.put(None)  # after every queued job, each of which now finishes as cancelled at once
        if self._thread.is_alive():
            self._thread.join(CLOSE_TIMEOUT)  # a running job stops at its next frame
        if self._thread.is_alive():
            log.warning("a video job did not stop within %.0f s; its files are deleted anyway", CLOSE_TIMEOUT)

    def _serve(self) -> None:
        while (job := self._queue.get()) is not None:
            self._run(job)

    def _run(self, job: VideoJob) -> None:
        if not job.begin():
            return

        def detector(settings: ModelConfig) -> FilteredDetector:
            """The planner's score floor (down to tracking.low_score, as for the CLI) over the shared model."""
            return FilteredDetector(self.model, settings.score_threshold, job.class_ids)

        try:
            # The stream is named after the user's file (events carry it), not after the private upload's name.
            source = StreamConfig(source=str(job.upload), name=job.stem)
            with closing(stream(source, job.outputs(), config=job.config, build_detector=detector)) as frames:
                for frame in frames:
                    job.seen(frame)
                    if job.cancel_requested.is_set():
                        break
        except RtsegError as exc:
            job.finish(FAILED, str(exc).replace(str(job.upload), job.label))
        except Exception as exc:  # a job's failure is shown in the page; the server goes on
            log.exception("video job failed")
            job.finish(FAILED, f"unexpected {exc.__class__.__name__}: {exc}")
        else:
            job.finish(CANCELLED if job.cancel_requested.is_set() else DONE)
