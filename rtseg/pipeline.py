"""The orchestrator: wires capture → inference → rendering → sinks with threads and bounded queues.

Each stage runs in its own daemon thread and hands ``Frame`` records on through
a bounded queue, so a slow stage applies back-pressure instead of letting memory
grow. A normal end travels as the ``END`` sentinel; any failure sets one shared
stop event that every stage polls between frames, so the whole pipeline stops
promptly and the first failure is reported with the stage it came from. The
main thread only supervises: it drives the window (OpenCV GUI calls belong to
one thread), watches for hung stages, and turns Ctrl-C into a clean stop.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from tqdm import tqdm

from rtseg.capture import VideoSource
from rtseg.config import Config
from rtseg.errors import StageError
from rtseg.inference import Detector
from rtseg.rendering import Renderer
from rtseg.sinks import Sink, WindowDisplay
from rtseg.structures import Frame

log = logging.getLogger(__name__)

END = object()  # sentinel: the source is exhausted, finish the frames in flight and stop
_POLL = 0.05  # seconds between checks of the stop event while waiting on a queue
_JOIN_TIMEOUT = 2.0  # how long a stopped stage may take to notice the stop event
_SINK_CLOSE_TIMEOUT = 60.0  # finalising an MP4 flushes the encoder, which can take a while


class _Stopped(Exception):
    """Raised inside a stage when the run is stopping."""


class StageTimer:
    """Time spent per frame in one stage: running mean plus a bounded window for percentiles."""

    def __init__(self, window: int = 4096) -> None:
        self.total = 0.0
        self.count = 0
        self.recent: deque[float] = deque(maxlen=window)

    def add(self, seconds: float, frames: int = 1) -> None:
        """Record ``seconds`` spent on ``frames`` frames at once (a batch) as that many equal shares."""
        share = seconds / frames
        self.total += seconds
        self.count += frames
        self.recent.extend([share] * frames)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def percentile(self, q: float) -> float:
        if not self.recent:
            return 0.0
        ordered = sorted(self.recent)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


@dataclass
class RunSummary:
    """What a run did, for the CLI's closing lines and for API callers."""

    frames_read: int = 0
    frames_inferred: int = 0
    frames_written: int = 0
    decode_errors: int = 0
    wall_seconds: float = 0.0
    stage_timers: dict[str, StageTimer] = field(default_factory=dict)
    error: StageError | None = None
    stop_reason: str | None = None  # 'interrupted', 'window closed', or None for a normal end

    @property
    def fps(self) -> float:
        return self.frames_written / self.wall_seconds if self.wall_seconds else 0.0

    def lines(self) -> list[str]:
        """Human-readable summary: counts, throughput, mean, p50 and p95 time per frame and stage."""
        out = [
            f"frames: {self.frames_read} read, {self.frames_inferred} inferred, {self.frames_written} written"
            + (f", {self.decode_errors} undecodable packets skipped" if self.decode_errors else ""),
            f"time: {self.wall_seconds:.1f} s, {self.fps:.2f} frames/s",
        ]
        stages = ", ".join(f"{name} {t.mean * 1000:.1f} ms (p50 {t.percentile(50) * 1000:.1f}, "
                           f"p95 {t.percentile(95) * 1000:.1f})"
                           for name, t in self.stage_timers.items() if t.count)
        if stages:
            out.append(f"per frame: {stages}")
        return out


class _RunState:
    """What the threads share: the first error, stop requests, and which stage is busy since when.

    Stage threads only record (``fail``, ``request_stop``); the supervisor acts on
    the records, so every stop decision is taken in one place.
    """

    def __init__(self) -> None:
        self.error: StageError | None = None
        self.stop_reason: str | None = None
        self.changed = threading.Event()  # set whenever error or stop_reason is recorded
        self.busy_since: dict[str, float | None] = {}
        self.timers: dict[str, StageTimer] = {}
        self._lock = threading.Lock()

    def fail(self, stage: str, exc: BaseException) -> None:
        with self._lock:
            if self.error is None:
                if isinstance(exc, StageError) and exc.stage == stage:
                    self.error = exc
                else:
                    text = str(exc).strip()
                    self.error = StageError(stage, f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__)
                    self.error.__cause__ = exc
        self.changed.set()

    def request_stop(self, reason: str) -> None:
        with self._lock:
            if self.stop_reason is None:
                self.stop_reason = reason
        self.changed.set()

    @contextmanager
    def busy(self, stage: str, timer: str | None = None, frames: int = 1, timed: bool = True) -> Iterator[None]:
        """Mark ``stage`` as working (for the hang watchdog); if ``timed``, record its time shared by ``frames``."""
        start = time.monotonic()
        self.busy_since[stage] = start
        try:
            yield
        finally:
            self.busy_since[stage] = None
            if timed:
                self.record(timer or stage, time.monotonic() - start, frames)

    def record(self, timer: str, seconds: float, frames: int = 1) -> None:
        """Add ``seconds`` spent on ``frames`` frames to the named timer (also used for the detector's own steps)."""
        self.timers.setdefault(timer, StageTimer()).add(seconds, frames)

    def hung_stage(self, timeout: float) -> tuple[str, float] | None:
        now = time.monotonic()
        for stage, since in list(self.busy_since.items()):
            if since is not None and now - since > timeout:
                return stage, now - since
        return None


class _Stage(threading.Thread):
    """A daemon thread running one stage body between its input and output queues.

    ``halt`` makes the stage's queue operations raise ``_Stopped`` at the next
    poll, so a stage stops between frames without needing a sentinel.
    """

    def __init__(self, name: str, state: _RunState, body: Callable[["_Stage"], None],
                 output: queue.Queue | None) -> None:
        super().__init__(name=f"rtseg-{name}", daemon=True)
        self.stage = name
        self.output = output
        self.halted = threading.Event()
        self._state = state
        self._body = body

    def run(self) -> None:
        try:
            self._body(self)
        except _Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the supervisor
            log.debug("%s stage failed", self.stage, exc_info=True)
            self._state.fail(self.stage, exc)

    def put(self, item: Any) -> None:
        assert self.output is not None
        while not self.halted.is_set():
            try:
                self.output.put(item, timeout=_POLL)
                return
            except queue.Full:
                continue
        raise _Stopped

    def get(self, source: queue.Queue) -> Any:
        while not self.halted.is_set():
            try:
                return source.get(timeout=_POLL)
            except queue.Empty:
                continue
        raise _Stopped


class Pipeline:
    """One run of source → detector → renderer → sinks; ``run()`` blocks until it ends.

    When a stage fails or hangs, the stages before it are halted and the ones
    after it drain what they already hold and end, so every frame processed
    before a fault still reaches the output file. Ctrl-C and closing the window
    halt capture and inference the same way.
    """

    def __init__(self, source: VideoSource, detector: Detector, config: Config, sinks: Sequence[Sink],
                 display: WindowDisplay | None = None, progress: bool = False) -> None:
        self.source = source
        self.detector = detector
        self.config = config
        self.sinks = list(sinks)
        self.display = display
        self.progress = progress
        self.renderer = Renderer(config.render)
        self.summary = RunSummary()
        self._state = _RunState()
        sizes = config.pipeline
        self._captured: queue.Queue = queue.Queue(maxsize=sizes.capture_queue_size)
        self._inferred: queue.Queue = queue.Queue(maxsize=sizes.render_queue_size)
        self._rendered: queue.Queue = queue.Queue(maxsize=sizes.sink_queue_size)
        self._shown: queue.Queue = queue.Queue(maxsize=1)

    # -- stages ---------------------------------------------------------------------------------

    def _capture(self, stage: _Stage) -> None:
        state, limit = self._state, self.config.pipeline.max_frames
        try:
            frames = self.source.frames()
            while not stage.halted.is_set():
                if limit and self.summary.frames_read >= limit:
                    break
                with state.busy("capture", "decode"):
                    frame = next(frames, None)
                if frame is None:
                    break
                self.summary.frames_read += 1
                stage.put(frame)
        finally:
            self.summary.decode_errors = self.source.decode_errors
            self.source.close()
        stage.put(END)

    def _infer(self, stage: _Stage) -> None:
        """Run the detector on batches of queued frames; its own step timings join the stage timers."""
        state, batch_size = self._state, self.config.model.batch_size
        warm_up = getattr(self.detector, "warm_up", None)
        if warm_up is not None:
            with state.busy("inference", timed=False):
                warm_up(self.source.info.height, self.source.info.width, batch_size)
        while True:
            first = stage.get(self._captured)
            if first is END:
                break
            batch, ended = [first], False
            while len(batch) < batch_size:
                try:
                    item = self._captured.get_nowait()
                except queue.Empty:
                    break
                if item is END:
                    ended = True
                    break
                batch.append(item)
            with state.busy("inference", frames=len(batch)):
                results = self.detector.detect([f.image for f in batch])
            for step, seconds in getattr(self.detector, "last_timings", {}).items():
                state.record(step, seconds, len(batch))
            for frame, detections in zip(batch, results):
                frame.detections = detections
                self.summary.frames_inferred += 1
                stage.put(frame)
            if ended:
                break
        stage.put(END)

    def _render(self, stage: _Stage) -> None:
        state = self._state
        while (frame := stage.get(self._inferred)) is not END:
            with state.busy("render"):
                frame.rendered = self.renderer.draw(frame.image, frame.detections)
            stage.put(frame)
        stage.put(END)

    def _write(self, stage: _Stage) -> None:
        state = self._state
        total = self.source.info.frame_count
        if total and self.config.pipeline.max_frames:
            total = min(total, self.config.pipeline.max_frames)
        bar = tqdm(total=total, unit="frame", disable=not self.progress, file=sys.stderr, dynamic_ncols=True)
        try:
            while (frame := stage.get(self._rendered)) is not END:
                with state.busy("sinks", "encode"):
                    for sink in self.sinks:
                        sink.write(frame)
                self.summary.frames_written += 1
                bar.update(1)
                if self.display is not None:
                    self._offer_to_display(frame)
        finally:
            bar.close()
            self._close_sinks()

    def _close_sinks(self) -> None:
        failure: BaseException | None = None
        for sink in self.sinks:
            try:
                sink.close()
            except BaseException as exc:  # noqa: BLE001 - close every sink, report the first failure
                failure = failure or exc
        if failure is not None:
            raise failure

    def _offer_to_display(self, frame: Frame) -> None:
        """The window shows the newest frame; it never holds the pipeline back."""
        try:
            self._shown.get_nowait()
        except queue.Empty:
            pass
        self._shown.put_nowait(frame)

    # -- supervision ----------------------------------------------------------------------------

    def run(self) -> RunSummary:
        state = self._state
        started = time.monotonic()
        stages = [
            _Stage("capture", state, self._capture, self._captured),
            _Stage("inference", state, self._infer, self._inferred),
            _Stage("render", state, self._render, self._rendered),
            _Stage("sinks", state, self._write, None),
        ]
        for stage in stages:
            stage.start()
        try:
            self._supervise(stages)
        finally:
            for stage in stages:
                stage.halted.set()
            self._finish(stages)
            if self.display is not None:
                self.display.close()
        self.summary.wall_seconds = time.monotonic() - started
        self.summary.stage_timers = dict(state.timers)
        self.summary.error = state.error
        self.summary.stop_reason = state.stop_reason
        return self.summary

    def _supervise(self, stages: list[_Stage]) -> None:
        """Show frames, watch for hangs, and turn failures and stop requests into halts."""
        state, timeout = self._state, self.config.pipeline.stage_timeout
        names = [s.stage for s in stages]
        sink_stage = stages[-1]
        pending_end: queue.Queue | None = None  # a queue still owed an END sentinel
        while sink_stage.is_alive():
            try:
                try:
                    frame = self._shown.get(timeout=_POLL)
                except queue.Empty:
                    frame = None
                if frame is not None and self.display is not None and not self.display.show(frame.rendered):
                    state.request_stop("window closed")
                hung = state.hung_stage(timeout)
                if hung is not None and state.error is None:
                    stage, seconds = hung
                    state.fail(stage, StageError(stage, f"no progress for {seconds:.0f} s (hung; stage_timeout is {timeout:g} s)"))
            except KeyboardInterrupt:
                if state.stop_reason == "interrupted":
                    state.fail("sinks", StageError("sinks", "interrupted twice while finishing"))
                state.request_stop("interrupted")
            if state.changed.is_set():
                state.changed.clear()
                last = names.index(state.error.stage) if state.error else names.index("inference")
                if last >= len(stages) - 1:
                    return
                for stage in stages[: last + 1]:
                    stage.halted.set()
                pending_end = stages[last].output
            if pending_end is not None:
                try:
                    pending_end.put(END, timeout=_POLL)
                    pending_end = None
                except queue.Full:
                    pass

    def _finish(self, stages: list[_Stage]) -> None:
        """Wait for the stages to end: sinks get time to finalise files, the rest ``_JOIN_TIMEOUT``."""
        deadline = time.monotonic() + _JOIN_TIMEOUT
        sink_stage = stages[-1]
        for stage in stages[:-1]:
            stage.join(max(0.0, deadline - time.monotonic()))
        hung = self._state.error is not None and self._state.error.stage == "sinks" and "hung" in self._state.error.cause
        sink_stage.join(_JOIN_TIMEOUT if hung else _SINK_CLOSE_TIMEOUT)
        for stage in stages:
            if stage.is_alive():
                log.warning("%s stage did not stop in time; leaving it behind", stage.stage)
