"""The orchestrator: wires capture → inference → rendering → sinks with threads and bounded queues.

Each stage runs in its own daemon thread and hands ``Frame`` records on through
a bounded queue, so a slow stage applies back-pressure instead of letting memory
grow. A normal end travels as the ``END`` sentinel; any failure sets one shared
stop event that every stage polls between frames, so the whole pipeline stops
promptly and the first failure is reported with the stage it came from. The
main thread only supervises: it drives the window (OpenCV GUI calls belong to
one thread), watches for hung stages, and turns Ctrl-C into a clean stop.

Files are lossless: capture waits for the model, every frame is processed.
Live sources cannot wait (a camera does not pause), so capture never blocks:
its queue keeps only the newest ``live.queue_size`` frames, older ones are
dropped and counted, and the model always works on a recent frame. Latency
from capture to output is measured per frame for both.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections import deque
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from tqdm import tqdm

from rtseg.capture import VideoSource
from rtseg.config import Config
from rtseg.errors import StageError, TerminationRequest
from rtseg.inference import Detector
from rtseg.rendering import Renderer
from rtseg.sinks import Sink, WindowDisplay
from rtseg.structures import Detections, Frame
from rtseg.tracking import Tracker, track_detections

log = logging.getLogger(__name__)

END = object()  # sentinel: the source is exhausted, finish the frames in flight and stop
_POLL = 0.05  # seconds between checks of the stop event while waiting on a queue
_JOIN_TIMEOUT = 2.0  # how long a stopped stage may take to notice the stop event
_INTERRUPTS = ("interrupted", "terminated")  # stop reasons that end the process with 128 + signal number
_SINK_CLOSE_TIMEOUT = 60.0  # finalising an MP4 flushes the encoder, which can take a while


class _Stopped(Exception):
    """Raised inside a stage when the run is stopping."""


class StageTimer:
    """Time spent per frame in one stage: running mean plus a bounded window for percentiles."""

    def __init__(self, window: int = 4096) -> None:
        self.total = 0.0
        self.count = 0
        self.maximum = 0.0
        self.recent: deque[float] = deque(maxlen=window)

    def add(self, seconds: float, frames: int = 1) -> None:
        """Record ``seconds`` spent on ``frames`` frames at once (a batch) as that many equal shares."""
        share = seconds / frames
        self.total += seconds
        self.count += frames
        self.maximum = max(self.maximum, share)
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
    frames_dropped: int = 0  # live sources: frames replaced by newer ones before the model got to them
    decode_errors: int = 0
    reconnects: int = 0
    live: bool = False
    wall_seconds: float = 0.0
    stage_timers: dict[str, StageTimer] = field(default_factory=dict)
    latency: StageTimer = field(default_factory=StageTimer)  # captured -> written to the sinks and offered to the window
    error: StageError | None = None
    stop_reason: str | None = None  # 'interrupted' (Ctrl-C), 'terminated' (SIGTERM), 'window closed', 'stopped', ... or None

    @property
    def fps(self) -> float:
        return self.frames_written / self.wall_seconds if self.wall_seconds else 0.0

    def lines(self) -> list[str]:
        """Human-readable summary: counts, throughput, latency, mean, p50 and p95 time per frame and stage."""
        out = [
            f"frames: {self.frames_read} read, {self.frames_inferred} inferred, {self.frames_written} written"
            + (f", {self.frames_dropped} dropped (the model is slower than the source)" if self.live else "")
            + (f", {self.decode_errors} undecodable packets skipped" if self.decode_errors else ""),
            f"time: {self.wall_seconds:.1f} s, {self.fps:.2f} frames/s"
            + (f", {self.reconnects} reconnect(s)" if self.live else ""),
        ]
        if self.latency.count:
            out.append(f"latency (captured -> written): p50 {self.latency.percentile(50) * 1000:.0f} ms, "
                       f"p95 {self.latency.percentile(95) * 1000:.0f} ms, max {self.latency.maximum * 1000:.0f} ms")
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
    poll, so a stage stops between frames without needing a sentinel;
    ``on_halt`` also wakes a body that waits elsewhere (a live source reconnecting).
    """

    def __init__(self, name: str, state: _RunState, body: Callable[["_Stage"], None],
                 output: queue.Queue | None, on_halt: Callable[[], None] | None = None) -> None:
        super().__init__(name=f"rtseg-{name}", daemon=True)
        self.stage = name
        self.output = output
        self.halted = threading.Event()
        self._state = state
        self._body = body
        self._on_halt = on_halt

    def halt(self) -> None:
        self.halted.set()
        if self._on_halt is not None:
            self._on_halt()

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

    def put_newest(self, item: Any) -> int:
        """Put without waiting, dropping the oldest waiting items to make room; returns how many were dropped.

        Only the capture stage puts into its queue, so after one drop the put succeeds
        unless the consumer raced us for the free slot, which just means one more round.
        """
        assert self.output is not None
        dropped = 0
        while True:
            try:
                self.output.put_nowait(item)
                return dropped
            except queue.Full:
                pass
            try:
                self.output.get_nowait()
                dropped += 1
            except queue.Empty:
                pass

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
    before a fault still reaches the output file. Ctrl-C, closing the window and
    ``stop()`` halt capture and inference the same way.
    """

    def __init__(self, source: VideoSource, detector: Detector, config: Config, sinks: Sequence[Sink],
                 display: WindowDisplay | None = None, progress: bool = False,
                 tracker: Tracker | None = None) -> None:
        self.source = source
        self.detector = detector
        self.config = config
        self.sinks = list(sinks)
        self.display = display
        self.progress = progress
        self.tracker = tracker
        self.renderer = Renderer(config.render, tracked=tracker is not None)
        self.live = source.info.is_live
        self.summary = RunSummary(live=self.live)
        self._state = _RunState()
        self._written_at: deque[float] = deque(maxlen=64)  # recent write times, for the window's FPS
        sizes = config.pipeline
        capture_size = config.live.queue_size if self.live else sizes.capture_queue_size
        self._captured: queue.Queue = queue.Queue(maxsize=capture_size)
        self._inferred: queue.Queue = queue.Queue(maxsize=sizes.render_queue_size)
        self._rendered: queue.Queue = queue.Queue(maxsize=sizes.sink_queue_size)
        self._shown: queue.Queue = queue.Queue(maxsize=1)

    def stop(self, reason: str = "stopped") -> None:
        """End a run from any thread, as Ctrl-C does: frames the model has already handed on are still written."""
        self._state.request_stop(reason)

    # -- stages ---------------------------------------------------------------------------------

    def _capture(self, stage: _Stage) -> None:
        state, limit = self._state, self.config.pipeline.max_frames
        try:
            frames = self.source.frames()
            while not stage.halted.is_set():
                if limit and self.summary.frames_read >= limit:
                    break
                # A live source waits for its frames and handles its own hangs (read timeout,
                # reconnecting), so only file decoding is timed and watched by the watchdog.
                with nullcontext() if self.live else state.busy("capture", "decode"):
                    frame = next(frames, None)
                if frame is None:
                    break
                self.summary.frames_read += 1
                if self.live:
                    self.summary.frames_dropped += stage.put_newest(frame)
                else:
                    stage.put(frame)
        finally:
            self.summary.decode_errors = self.source.decode_errors
            self.summary.reconnects = self.source.reconnects
            self.source.close()
        stage.put(END)

    def _infer(self, stage: _Stage) -> None:
        """Run the detector on batches of queued frames; its own step timings join the stage timers."""
        state = self._state
        batch_size = 1 if self.live else self.config.model.batch_size  # batching would hold fresh frames back
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
                if self.tracker is not None:
                    with state.busy("inference", "tracking"):
                        detections = self._track(detections)
                frame.detections = detections
                self.summary.frames_inferred += 1
                stage.put(frame)
            if ended:
                break
        stage.put(END)

    def _track(self, detections: Detections) -> Detections:
        """Give detections their track ids, in frame order, then drop the low-score ones no track claimed.

        With tracking on, the detector keeps detections down to ``tracking.low_score``
        so that a partly hidden object (scoring low) can keep its track; those that
        continue no track are dropped here, leaving what ``model.score_threshold`` keeps.
        """
        assert self.tracker is not None
        track_detections(self.tracker, detections)
        keep = (detections.scores >= self.config.model.score_threshold) | (detections.track_ids >= 0)
        return detections if keep.all() else detections.select(keep)

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
        # Only built when shown: even a disabled tqdm starts its monitor thread, which would outlive the run.
        bar = tqdm(total=total, unit="frame", file=sys.stderr, dynamic_ncols=True) if self.progress else None
        try:
            while (frame := stage.get(self._rendered)) is not END:
                with state.busy("sinks", "encode"):
                    for sink in self.sinks:
                        sink.write(frame)
                now = time.monotonic()
                frame.timings["latency"] = now - frame.captured_at
                self.summary.latency.add(frame.timings["latency"])
                self._written_at.append(now)
                self.summary.frames_written += 1
                if bar is not None:
                    bar.update(1)
                if self.display is not None:
                    self._offer_to_display(frame)
        finally:
            if bar is not None:
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

    def status_text(self) -> str:
        """The window's status line: output rate over the last frames, latency, drops, reconnects."""
        times, summary = list(self._written_at), self.summary
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        latency = summary.latency.recent[-1] * 1000 if summary.latency.recent else 0.0
        text = f"{fps:.1f} fps | latency {latency:.0f} ms (p95 {summary.latency.percentile(95) * 1000:.0f})"
        if self.live:
            text += f" | dropped {summary.frames_dropped} | reconnects {self.source.reconnects}"
        return text

    # -- supervision ----------------------------------------------------------------------------

    def run(self) -> RunSummary:
        state = self._state
        started = time.monotonic()
        stages = [
            _Stage("capture", state, self._capture, self._captured, on_halt=self.source.stop),
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
                stage.halt()
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
                if self.display is not None:
                    # Between frames (a live source reconnecting) the window must still answer q and closing.
                    still_open = self.display.poll() if frame is None else self.display.show(frame.rendered, self.status_text())
                    if not still_open:
                        state.request_stop("window closed")
                hung = state.hung_stage(timeout)
                if hung is not None and state.error is None:
                    stage, seconds = hung
                    state.fail(stage, StageError(stage, f"no progress for {seconds:.0f} s (hung; stage_timeout is {timeout:g} s)"))
            except KeyboardInterrupt as exc:
                if state.stop_reason in _INTERRUPTS:
                    state.fail("sinks", StageError("sinks", "interrupted twice while finishing"))
                state.request_stop("terminated" if isinstance(exc, TerminationRequest) else "interrupted")
            if state.changed.is_set():
                state.changed.clear()
                last = names.index(state.error.stage) if state.error else names.index("inference")
                if last >= len(stages) - 1:
                    return
                for stage in stages[: last + 1]:
                    stage.halt()
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
