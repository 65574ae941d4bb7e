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
import time
from collections import deque
from collections.abc import Sequence
from contextlib import nullcontext

from tqdm import tqdm

from rtseg.core.config import Config
from rtseg.core.errors import StageError, TerminationRequest
from rtseg.core.structures import Detections, Frame
from rtseg.detect.worker import Detector
from rtseg.pipeline.stages import END, INTERRUPTS, JOIN_TIMEOUT, POLL_SECONDS, SINK_CLOSE_TIMEOUT, RunState, Stage
from rtseg.pipeline.summary import RunSummary
from rtseg.render.renderer import Renderer
from rtseg.sinks.base import Sink
from rtseg.sinks.window import WindowDisplay
from rtseg.sources.base import VideoSource
from rtseg.track.tracker import Tracker, track_detections

log = logging.getLogger(__name__)

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
        self._state = RunState()
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

    def _capture(self, stage: Stage) -> None:
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

    def _infer(self, stage: Stage) -> None:
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

    def _render(self, stage: Stage) -> None:
        state = self._state
        while (frame := stage.get(self._inferred)) is not END:
            with state.busy("render"):
                frame.rendered = self.renderer.draw(frame.image, frame.detections)
            stage.put(frame)
        stage.put(END)

    def _write(self, stage: Stage) -> None:
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
            Stage("capture", state, self._capture, self._captured, on_halt=self.source.stop),
            Stage("inference", state, self._infer, self._inferred),
            Stage("render", state, self._render, self._rendered),
            Stage("sinks", state, self._write, None),
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

    def _supervise(self, stages: list[Stage]) -> None:
        """Show frames, watch for hangs, and turn failures and stop requests into halts."""
        state, timeout = self._state, self.config.pipeline.stage_timeout
        names = [s.stage for s in stages]
        sink_stage = stages[-1]
        pending_end: queue.Queue | None = None  # a queue still owed an END sentinel
        while sink_stage.is_alive():
            try:
                try:
                    frame = self._shown.get(timeout=POLL_SECONDS)
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
                if state.stop_reason in INTERRUPTS:
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
                    pending_end.put(END, timeout=POLL_SECONDS)
                    pending_end = None
                except queue.Full:
                    pass

    def _finish(self, stages: list[Stage]) -> None:
        """Wait for the stages to end: sinks get time to finalise files, the rest ``JOIN_TIMEOUT``."""
        deadline = time.monotonic() + JOIN_TIMEOUT
        sink_stage = stages[-1]
        for stage in stages[:-1]:
            stage.join(max(0.0, deadline - time.monotonic()))
        hung = self._state.error is not None and self._state.error.stage == "sinks" and "hung" in self._state.error.cause
        sink_stage.join(JOIN_TIMEOUT if hung else SINK_CLOSE_TIMEOUT)
        for stage in stages:
            if stage.is_alive():
                log.warning("%s stage did not stop in time; leaving it behind", stage.stage)
