"""The engine: any number of streams, one shared model; a single source is the case N = 1.

Each stream has its own lane (capture, tracking + rendering, sinks: see
``lanes``); one inference worker serves them all (``inference``). The main
thread supervises: it opens streams (live ones in parallel, archive files as
slots free up), drives the window (OpenCV GUI calls belong to one thread),
watches for hung stages, and turns Ctrl-C into a clean stop.

Faults stay where they happen. A stream whose source cannot be opened, ends
with an error, or whose tracker, renderer or sinks fail, ends alone: the stages
before the fault halt, the ones after it drain what they hold and close their
outputs, one line names it, the others go on. A failure of the shared model,
a stop request (Ctrl-C, SIGTERM, the window closed, ``stop()``) halt capture and
the model everywhere; every stream then finishes the frames the model already
handed on, so every output keeps all that was processed.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tqdm import tqdm

from rtseg.analytics.scene import SceneAnalytics
from rtseg.core.config import Config
from rtseg.core.errors import RtsegError, RuntimeFailure, SourceError, StageError, TerminationRequest
from rtseg.detect.base import Detector
from rtseg.pipeline.inference import InferenceWorker
from rtseg.pipeline.lanes import StreamLane
from rtseg.pipeline.stages import INTERRUPTS, JOIN_TIMEOUT, POLL_SECONDS, SINK_CLOSE_TIMEOUT, Queue, RunState, Stage
from rtseg.pipeline.summary import RunSummary, StreamSummary
from rtseg.render.renderer import Renderer
from rtseg.render.window import PreviewWindow, compose_mosaic
from rtseg.sinks.base import Sink
from rtseg.sources.base import VideoSource
from rtseg.track.tracker import Tracker

log = logging.getLogger(__name__)

_PARALLEL_OPENS = 16  # live streams opened at once at start (each may take seconds to connect)


@dataclass
class OpenedStream:
    """What a stream runs with once its source is open: its own sinks, tracker and renderer."""

    source: VideoSource
    sinks: list[Sink]
    tracker: Tracker | None
    renderer: Renderer
    analytics: SceneAnalytics | None = None  # the stream's zones and lines, when it has any


@dataclass
class StreamStart:
    """How the engine starts one stream. ``open`` opens its source and sinks, or raises an ``RtsegError`` naming
    the problem (``pipeline.factory`` builds these from the planner's ``StreamPlan``s).

    Streams that are not ``live`` count against ``pipeline.max_open_files`` and
    are opened as slots free up; ``finish`` runs once the stream has ended
    (archives: commit the outputs, append to the manifest). ``config`` carries
    the stream's own live and tracking settings.
    """

    name: str
    open: Callable[[], OpenedStream]
    config: Config
    live: bool = False
    finish: Callable[[StreamSummary], None] | None = None
    frame_count: int | None = None  # for the progress bar, when known before opening


class Engine:
    """One run over many streams with one detector; ``run()`` blocks until every stream has ended."""

    def __init__(self, detector: Detector | None, config: Config, starts: Sequence[StreamStart],
                 display: PreviewWindow | None = None, progress: bool = False, *,
                 load_detector: Callable[[], Detector] | None = None) -> None:
        """Give ``detector``, or ``load_detector``: a function called once the streams are open, so that a source
        that cannot be opened is reported before the model takes its seconds to load (and decoding overlaps it)."""
        if (detector is None) == (load_detector is None):
            raise ValueError("give the engine either a detector or a function that loads one")
        self._load_detector = load_detector
        self.config = config
        self.display = display
        self.progress = progress
        self._pending = list(starts)
        self._planned = len(starts)
        self._next_id = 0
        self.lanes: list[StreamLane] = []  # the streams running now
        self._starts: dict[int, StreamStart] = {}  # stream id -> how it was started
        self._owed_ends: dict[int, str] = {}  # stream id -> the stage whose output queue is owed an END
        self._left_at: dict[int, float] = {}  # stream id -> when the supervisor gave up waiting for its hung sinks
        self._ended: list[StreamSummary] = []
        self._state = RunState()  # the shared model's stage and run-wide stop requests
        self._moved = threading.Event()  # a frame moved in some stream's queues: wakes the worker
        self._no_more_lanes = threading.Event()
        self._started = False
        self._stopping = False
        self._shown_frames = 0
        self._ended_status: dict[int, str] = {}  # the view's status line of each ended stream, as it last read
        self.summary = RunSummary()
        self.worker = InferenceWorker(detector, lambda: list(self.lanes), self._state, self._moved,
                                      self._no_more_lanes, config.model.batch_size,
                                      config.pipeline.batch_timeout_ms / 1000)

    def stop(self, reason: str = "stopped") -> None:
        """End a run from any thread, as Ctrl-C does: frames the model has already handed on are still written."""
        self._state.request_stop(reason)

    # -- opening streams --------------------------------------------------------------------------

    def start(self) -> None:
        """Open every live stream (in parallel) and the first files; raise if none of them could be opened."""
        self._started = True
        live = [start for start in self._pending if start.live]
        self._pending = [start for start in self._pending if not start.live]
        if len(live) == 1:
            self._launch(live[0], self._open(live[0]))
        elif live:
            with ThreadPoolExecutor(max_workers=min(_PARALLEL_OPENS, len(live)), thread_name_prefix="rtseg-open") as pool:
                opened = list(pool.map(self._open, live))
            for plan, stream in zip(live, opened):
                self._launch(plan, stream)
        self._open_files()
        if not self.lanes and not self._pending:
            self._no_more_lanes.set()
            errors = [s.error for s in self._ended if s.error is not None]
            if len(self._ended) == 1 and errors:
                raise errors[0]
            raise SourceError(f"none of the {len(self._ended)} streams could be opened; first: {errors[0]}"
                              if errors else "no stream to run")
        if self._load_detector is not None:
            try:
                self.worker.detector = self._load_detector()
                for lane in self.lanes:  # a zone's class the model does not know: before any frame is inferred
                    if lane.analytics is not None:
                        lane.analytics.check_classes(self.worker.detector.class_names)
            except BaseException:
                self._stopping = True
                for lane in self.lanes:
                    lane.halt()
                for lane in list(self.lanes):
                    for stage in lane.stages:
                        stage.join(JOIN_TIMEOUT)
                raise

    @staticmethod
    def _open(start: StreamStart) -> OpenedStream | RtsegError:
        """The opened stream, or the error that names why it could not be opened."""
        try:
            return start.open()
        except RtsegError as exc:
            return exc

    def _checked(self, opened: OpenedStream) -> OpenedStream | RtsegError:
        """A stream opened after the model loaded: its zones' classes are checked against the model's now."""
        if opened.analytics is None or self.worker.detector is None:
            return opened
        try:
            opened.analytics.check_classes(self.worker.detector.class_names)
        except RtsegError as exc:
            opened.source.close()
            for sink in opened.sinks:
                sink.close()
            return exc
        return opened

    def _launch(self, start: StreamStart, opened: OpenedStream | RtsegError) -> None:
        if not isinstance(opened, RtsegError):
            opened = self._checked(opened)
        stream_id, self._next_id = self._next_id, self._next_id + 1
        if isinstance(opened, RtsegError):
            if self._planned > 1:
                log.warning("stream %s not started: %s", start.name, opened)
            failed = StreamSummary(stream_id, start.name, live=start.live, status="failed", error=opened)
            self._ended.append(failed)
            self._finish_stream(start, failed)
            return
        lane = StreamLane(stream_id, start.name, opened.source, opened.sinks, start.config, opened.tracker,
                          opened.renderer, self._moved, opened.analytics)
        self._starts[stream_id] = start
        self.lanes.append(lane)
        lane.start()

    def _open_files(self) -> None:
        """Open pending files while fewer than ``pipeline.max_open_files`` are running."""
        limit = self.config.pipeline.max_open_files
        while self._pending and not self._stopping:
            if sum(1 for lane in self.lanes if not self._starts[lane.stream_id].live) >= limit:
                break
            start = self._pending.pop(0)
            self._launch(start, self._open(start))
        if self._stopping:
            self._pending = []
        if not self._pending:
            self._no_more_lanes.set()

    @staticmethod
    def _finish_stream(start: StreamStart, summary: StreamSummary) -> None:
        if start.finish is None:
            return
        try:
            start.finish(summary)
        except (OSError, RtsegError) as exc:
            summary.status, summary.error = "failed", RuntimeFailure(f"cannot finish the outputs of {start.name}: {exc}")
            log.warning("stream %s: %s", start.name, summary.error)

    # -- supervision ------------------------------------------------------------------------------

    def run(self) -> RunSummary:
        if not self._started:
            self.start()
        started = time.monotonic()
        worker = Stage("inference", self._state, self.worker.run, None)
        worker.start()
        bar = self._progress_bar()
        try:
            self._supervise(worker, bar)
        finally:
            self._halt_everything(worker)
            self._finish(worker)
            if bar is not None:
                bar.close()
            if self.display is not None:
                self.display.close()
        return self._summarise(time.monotonic() - started)

    def _supervise(self, worker: Stage, bar: tqdm | None) -> None:
        """Show frames, watch for hangs, turn failures and stop requests into halts, retire finished streams."""
        state, timeout = self._state, self.config.pipeline.stage_timeout
        owed_ends = self._owed_ends
        while self.lanes or (self._pending and not self._stopping):
            try:
                self._show()
                hung = state.hung_stage(timeout)
                if hung is not None and state.error is None:
                    state.fail(hung[0], StageError(hung[0], f"no progress for {hung[1]:.0f} s (hung; stage_timeout "
                                                            f"is {timeout:g} s)"))
                if state.changed.is_set():
                    state.changed.clear()
                    self._stopping = True
                    self._no_more_lanes.set()
                    worker.halt()
                    for lane in self.lanes:
                        owed_ends[lane.stream_id] = lane.stop_capture()
                for lane in list(self.lanes):
                    self._watch_lane(lane, timeout)
                    if lane.stream_id in owed_ends and lane.offer_end(owed_ends[lane.stream_id]):
                        del owed_ends[lane.stream_id]
                    left_at = self._left_at.get(lane.stream_id)
                    if lane.finished or (left_at is not None and time.monotonic() > left_at + JOIN_TIMEOUT):
                        self._retire(lane)
                self._open_files()
                if bar is not None:
                    self._update_bar(bar)
            except KeyboardInterrupt as exc:
                if state.stop_reason in INTERRUPTS:
                    for lane in self.lanes:
                        lane.state.fail("sinks", StageError("sinks", "interrupted twice while finishing"))
                state.request_stop("terminated" if isinstance(exc, TerminationRequest) else "interrupted")

    def _watch_lane(self, lane: StreamLane, timeout: float) -> None:
        """A stream's own failure or hang halts the stages up to it; the ones after it drain and close."""
        hung = lane.state.hung_stage(timeout)
        if hung is not None and lane.state.error is None:
            lane.state.fail(hung[0], StageError(hung[0], f"no progress for {hung[1]:.0f} s (hung; stage_timeout is "
                                                          f"{timeout:g} s)"))
        if not lane.state.changed.is_set():
            return
        lane.state.changed.clear()
        error = lane.state.error
        if error is None:
            return
        if len(self.lanes) + len(self._ended) + len(self._pending) > 1:
            log.warning("stream %s failed: %s; the other streams go on", lane.name, error)
        owed = lane.contain(error)
        if owed is not None:
            self._owed_ends[lane.stream_id] = owed
        elif lane.stages[-1].is_alive() and "hung" in error.cause:
            self._left_at[lane.stream_id] = time.monotonic()

    def _retire(self, lane: StreamLane) -> None:
        self.lanes.remove(lane)
        self._owed_ends.pop(lane.stream_id, None)
        left_behind = self._left_at.pop(lane.stream_id, None) is not None
        for stage in lane.stages[:-1]:  # halted or done by now: their threads end within a poll
            stage.join(JOIN_TIMEOUT)
        if len(self._ended_status) < 64:  # bounded: an archive may hold thousands of videos
            self._ended_status[lane.stream_id] = lane.status_text()
        summary = lane.summary
        summary.wall_seconds = time.monotonic() - lane.started_at
        summary.timers = dict(lane.state.timers)
        summary.decode_errors = lane.source.decode_errors
        summary.reconnects = lane.source.reconnects
        if left_behind:
            log.warning("stream %s: sinks stage did not stop in time; leaving it behind", lane.name)
        if lane.state.error is not None:
            summary.status, summary.error = "failed", lane.state.error
        elif self._state.error is not None:
            summary.status, summary.error = "failed", self._state.error
        elif lane.stages[0].halted.is_set() or self._state.stop_reason is not None:
            summary.status = "stopped"
        else:
            summary.status = "done"
        self._ended.append(summary)
        self._finish_stream(self._starts.pop(lane.stream_id), summary)

    def _halt_everything(self, worker: Stage) -> None:
        worker.halt()
        for lane in self.lanes:
            lane.halt()

    def _finish(self, worker: Stage) -> None:
        """Wait for the threads to end: sinks get time to finalise files, the rest ``JOIN_TIMEOUT``."""
        deadline = time.monotonic() + JOIN_TIMEOUT
        worker.join(max(0.0, deadline - time.monotonic()))
        for lane in list(self.lanes):
            for stage in lane.stages[:-1]:
                stage.join(max(0.0, deadline - time.monotonic()))
            lane.stages[-1].join(JOIN_TIMEOUT if lane.stream_id in self._left_at else SINK_CLOSE_TIMEOUT)
            self._retire(lane)
        for thread in [worker, *(stage for lane in self.lanes for stage in lane.stages)]:
            if thread.is_alive():
                log.warning("%s stage did not stop in time; leaving it behind", thread.stage)

    def _summarise(self, wall_seconds: float) -> RunSummary:
        summary = self.summary
        streams = sorted(self._ended, key=lambda s: s.stream_id)
        summary.gather(streams)
        for name, timer in self._state.timers.items():
            summary.stage_timers.setdefault(name, timer)
        summary.wall_seconds = wall_seconds
        summary.model_calls = self.worker.calls
        summary.model_busy_seconds = self.worker.busy_seconds
        summary.precision_note = None if self.worker.detector is None else self.worker.detector.precision_note
        summary.stop_reason = self._state.stop_reason
        failed = summary.failed_streams
        if self._state.error is not None:
            summary.error = self._state.error
        elif failed and len(failed) == len(streams):
            summary.error = failed[0].error if len(streams) == 1 else RuntimeFailure(
                f"all {len(streams)} streams failed; first: {failed[0].name}: {failed[0].error}")
        return summary

    # -- what people see --------------------------------------------------------------------------

    def _show(self) -> None:
        """The window shows the newest frame (a mosaic of every stream when there are several); never blocks a stream."""
        display = self.display
        written = sum(lane.summary.frames_written for lane in self.lanes)
        if display is None or not self.lanes:
            time.sleep(POLL_SECONDS / 2)
            return
        if written == self._shown_frames:
            still_open = display.poll()  # between frames (a stream reconnecting) the window must still answer q
            time.sleep(POLL_SECONDS / 5)
        else:
            self._shown_frames = written
            latest = self.lanes[0].latest if len(self.lanes) == 1 else None
            if latest is not None and latest.rendered is not None:
                still_open = display.show(latest.rendered, self.lanes[0].status_text())
            else:
                tiles = [(None if lane.reconnecting or lane.latest is None else lane.latest.rendered, lane.name,
                          "reconnecting..." if lane.reconnecting else lane.status_text()) for lane in self.lanes]
                still_open = display.show(compose_mosaic(tiles))
        if not still_open:
            self._state.request_stop("window closed")

    def queues(self) -> dict[str, Queue]:
        """Every running stream's bounded queues by '<stream>/<stage it feeds>' (soaks check their bounds)."""
        return {f"{lane.name}/{stage}": q for lane in self.lanes for stage, q in lane.queues().items()}

    def frames_written(self) -> int:
        """Frames written so far by every stream, running or ended."""
        return sum(s.frames_written for s in self._ended) + sum(lane.summary.frames_written for lane in self.lanes)

    def status_text(self, stream_id: int = 0) -> str:
        """A stream's status line as the window shows it (the last one it had, once it has ended)."""
        for lane in self.lanes:
            if lane.stream_id == stream_id:
                return lane.status_text()
        return self._ended_status.get(stream_id, "")

    def _progress_bar(self) -> tqdm | None:
        if not self.progress:
            return None
        counts = [lane.source.info.frame_count for lane in self.lanes] + [s.frame_count for s in self._pending]
        limit = self.config.pipeline.max_frames
        total = sum((min(c, limit) if limit else c) for c in counts if c) if counts and all(counts) else None
        # Only built when shown: even a disabled tqdm starts its monitor thread, which would outlive the run.
        return tqdm(total=total, unit="frame", file=sys.stderr, dynamic_ncols=True)

    def _update_bar(self, bar: tqdm) -> None:
        bar.update(self.frames_written() - bar.n)
        if self._planned > 1:
            bar.set_postfix_str(f"streams {len(self._ended)}/{self._planned} ended", refresh=False)


class Pipeline(Engine):
    """The single-stream handle: the engine over one source you opened yourself, into sinks you chose.

    ``Pipeline(source, detector, config, sinks).run()`` runs any ``VideoSource``
    (your own reader, a test's synthetic one) through the same lane, model
    worker and supervision as every other run; ``stop()`` ends it from any thread.
    """

    def __init__(self, source: VideoSource, detector: Detector, config: Config, sinks: Sequence[Sink],
                 display: PreviewWindow | None = None, progress: bool = False,
                 tracker: Tracker | None = None) -> None:
        opened = OpenedStream(source, list(sinks), tracker, Renderer(config.render, tracked=tracker is not None))
        start = StreamStart(source.info.name, lambda: opened, config, live=source.info.is_live,
                            frame_count=source.info.frame_count)
        super().__init__(detector, config, [start], display, progress)
