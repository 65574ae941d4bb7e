"""One stream's own stages: capture before the shared model, then tracking, rendering and sinks after it.

A ``StreamLane`` is never shared: each stream has its own source, queues,
tracker, renderer and sinks, so a slow encoder or a failing disk slows or ends
that stream only. Files are lossless (capture waits for room); live sources
never wait: their queue keeps only the newest ``live.queue_size`` frames and
older ones are dropped and counted.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Sequence
from contextlib import nullcontext

import numpy as np

from rtseg.analytics.scene import SceneAnalytics
from rtseg.core.config import Config
from rtseg.core.errors import StageError
from rtseg.core.structures import Detections, Frame
from rtseg.pipeline.stages import END, POLL_SECONDS, EndOfStream, Item, Queue, RunState, Stage
from rtseg.pipeline.summary import StreamSummary
from rtseg.render.renderer import Renderer
from rtseg.render.scene import SceneAnnotator
from rtseg.sinks.base import Sink
from rtseg.sources.base import VideoSource
from rtseg.track.tracker import Tracker, track_detections

# Where each step's failure sits in the lane: the stages up to it halt, the ones after it drain.
STAGE_ORDER = {"capture": 0, "tracking": 1, "analytics": 1, "render": 1, "sinks": 2}


class StreamLane:
    """Capture, tracking + rendering, and sinks of one stream, each stage in its own thread.

    The shared inference worker takes the lane's frames with ``next_for_model``
    and hands results back with ``deliver``; the engine (the supervisor) contains
    a failure with ``contain``, stops capture with ``stop_capture`` and passes the
    lane's stages their ``END`` with ``offer_end``. Nobody else touches its queues.
    """

    def __init__(self, stream_id: int, name: str, source: VideoSource, sinks: Sequence[Sink], config: Config,
                 tracker: Tracker | None, renderer: Renderer, moved: threading.Event,
                 analytics: SceneAnalytics | None = None) -> None:
        self.stream_id = stream_id
        self.name = name
        self.source = source
        self.sinks = list(sinks)
        self.config = config
        self.tracker = tracker
        self.renderer = renderer
        self.analytics = analytics
        self._annotator = SceneAnnotator(config.render.line_width)
        self.live = source.info.is_live
        self.state = RunState()
        self.summary = StreamSummary(stream_id, name, live=self.live)
        # The detector may keep lower scores than this stream shows (for the tracker's second stage).
        self.score_threshold = config.model.score_threshold
        sizes = config.pipeline
        self._captured: Queue = Queue(maxsize=config.live.queue_size if self.live else sizes.capture_queue_size)
        self._inferred: Queue = Queue(maxsize=sizes.render_queue_size)
        self._rendered: Queue = Queue(maxsize=sizes.sink_queue_size)
        self.latest: Frame | None = None  # the newest written frame, for the live view
        self.written_at: deque[float] = deque(maxlen=64)  # recent write times, for the view's FPS
        label = f"{stream_id}-"
        self.stages = [
            Stage("capture", self.state, self._capture, self._captured, on_halt=source.stop, moved=moved, label=label),
            Stage("render", self.state, self._render, self._rendered, moved=moved, label=label),
            Stage("sinks", self.state, self._write, None, label=label),
        ]
        # Where an END may be owed: after capture (to the model), after the model, after rendering.
        self._end_queues = {"capture": self._captured, "inference": self._inferred, "render": self._rendered}
        self._capture_done = False  # the model has taken this stream's END (written by the inference worker)
        self._detached = False  # the model must not feed this stream any more: its later stages failed
        self._held: Frame | None = None  # a frame taken but left for a batch of its own size
        self.started_at = 0.0

    def start(self) -> None:
        self.started_at = time.monotonic()
        for stage in self.stages:
            stage.start()

    @property
    def finished(self) -> bool:
        sinks = self.stages[-1]
        return not sinks.is_alive() and sinks.ident is not None

    @property
    def reconnecting(self) -> bool:
        return self.source.reconnecting

    @property
    def frame_size(self) -> tuple[int, int]:
        """(height, width) as the source announced it (0 when unknown before the first frame)."""
        return self.source.info.height, self.source.info.width

    # -- what the shared inference worker uses ---------------------------------------------------

    @property
    def wants_model(self) -> bool:
        """Whether the model should still look at this stream: its END not yet taken, its later stages alive."""
        return not self._capture_done and not self._detached

    def next_for_model(self, shape: tuple[int, ...] | None, reserved: int) -> Item | None:
        """The next frame (or ``END``) if there is one, room after the model for it, and it fits the batch.

        ``reserved``: this lane's frames already in the batch being formed (their places are taken);
        ``shape``: the batch's image shape, None while it is empty. A frame of another size is held
        back for a batch of its own. Taking ``END`` means capture is done for the model.
        """
        if self._inferred.maxsize - self._inferred.qsize() - reserved <= 0:
            return None
        item: Item | None = self._held
        if item is None:
            try:
                item = self._captured.get_nowait()
            except queue.Empty:
                return None
        if isinstance(item, Frame) and shape is not None and item.image.shape != shape:
            self._held = item
            return None
        self._held = None
        if isinstance(item, EndOfStream):
            self._capture_done = True
        return item

    def deliver(self, frame: Frame, detections: Detections) -> None:
        """The model's result for a frame this lane gave it (its place was counted when it was taken)."""
        frame.detections = detections
        self.summary.frames_inferred += 1
        if not self._detached:
            self._inferred.put_nowait(frame)

    def deliver_end(self) -> None:
        """Pass the taken ``END`` on to tracking and rendering (its place was counted when it was taken)."""
        self._inferred.put_nowait(END)

    # -- what the supervisor uses -------------------------------------------------------------------

    def contain(self, error: StageError) -> str | None:
        """Halt the stages up to the failed one and stop feeding what comes after it.

        Returns the stage whose output queue is now owed an ``END`` (so the later
        stages drain and close), or None when the sinks themselves failed.
        """
        position = STAGE_ORDER.get(error.stage, 0)
        for stage in self.stages[: position + 1]:
            stage.halt()
        if position >= 1:
            self._detached = True
        return self.stages[position].stage if position < len(self.stages) - 1 else None

    def stop_capture(self) -> str:
        """Stop reading frames (a run-wide stop); the frames the model hands on are still written.

        Returns the queue now owed an ``END``: the one after the model.
        """
        self.stages[0].halt()
        return "inference"

    def offer_end(self, after: str) -> bool:
        """Put ``END`` after the stage ``after`` ('capture', 'inference' or 'render') without waiting; True if put."""
        try:
            self._end_queues[after].put(END, timeout=POLL_SECONDS / 4)
        except queue.Full:
            return False
        return True

    def halt(self) -> None:
        for stage in self.stages:
            stage.halt()

    def queues(self) -> dict[str, Queue]:
        """The lane's bounded queues by the stage each feeds (soaks check their bounds)."""
        return {"capture": self._captured, "render": self._inferred, "sinks": self._rendered}

    # -- stages ---------------------------------------------------------------------------------

    def _capture(self, stage: Stage) -> None:
        limit, summary = self.config.pipeline.max_frames, self.summary
        try:
            frames = self.source.frames()
            while not stage.halted.is_set():
                if limit and summary.frames_read >= limit:
                    # Cut only if a frame is left: a file of exactly ``limit`` frames is whole (an archive commits
                    # it). A live source never ends, so it is always cut (and never waited on here).
                    summary.cut = self.live or next(frames, None) is not None
                    break
                # A live source waits for its frames and handles its own hangs (read timeout,
                # reconnecting), so only file decoding is timed and watched by the watchdog.
                with nullcontext() if self.live else self.state.busy("capture", "decode"):
                    frame = next(frames, None)
                if frame is None:
                    break
                frame.stream_id = self.stream_id
                summary.frames_read += 1
                if self.live:
                    summary.frames_dropped += stage.put_newest(frame)
                else:
                    stage.put(frame)
        finally:
            summary.decode_errors = self.source.decode_errors
            summary.reconnects = self.source.reconnects
            self.source.close()
        stage.put(END)

    def _render(self, stage: Stage) -> None:
        state = self.state
        while not isinstance(frame := stage.get(self._inferred), EndOfStream):
            assert frame.detections is not None
            with state.busy("tracking"):
                frame.detections = self._track(frame.detections, frame.image)
            if self.analytics is not None:
                with state.busy("analytics"):
                    self._analyse(frame, self.analytics)
            with state.busy("render"):
                frame.rendered = self.renderer.draw(frame.image, frame.detections)
                if frame.scene is not None:
                    self._annotator.annotate(frame.rendered, frame.detections, frame.scene)
            stage.put(frame)
        stage.put(END)

    def _track(self, detections: Detections, image: np.ndarray) -> Detections:
        """Give detections their track ids, in frame order, then drop the low-score ones no track claimed.

        With tracking on, the detector keeps detections down to ``tracking.low_score``
        so that a partly hidden object (scoring low) can keep its track; those that
        continue no track are dropped here, leaving what ``model.score_threshold`` keeps.
        """
        if self.tracker is not None:
            try:
                track_detections(self.tracker, detections, image)
            except Exception as exc:
                text = str(exc).strip()
                raise StageError("tracking", f"{exc.__class__.__name__}: {text}" if text else
                                 exc.__class__.__name__) from exc
        keep = (detections.scores >= self.score_threshold) | (detections.track_ids >= 0)
        return detections if keep.all() else detections.select(keep)

    def _analyse(self, frame: Frame, analytics: SceneAnalytics) -> None:
        """The frame's events and scene; the event's wall time is when the frame was captured."""
        assert frame.detections is not None
        wall_time = time.time() - (time.monotonic() - frame.captured_at)
        try:
            frame.events = analytics.update(frame.detections, time=frame.timestamp, frame=frame.index,
                                            wall_time=wall_time, height=frame.height, width=frame.width)
        except Exception as exc:
            text = str(exc).strip()
            raise StageError("analytics", f"{exc.__class__.__name__}: {text}" if text else
                             exc.__class__.__name__) from exc
        frame.scene = analytics.state

    def _write(self, stage: Stage) -> None:
        state, summary = self.state, self.summary
        try:
            while not isinstance(frame := stage.get(self._rendered), EndOfStream):
                with state.busy("sinks", "write"):
                    for sink in self.sinks:
                        sink.write(frame)
                now = time.monotonic()
                frame.timings["latency"] = now - frame.captured_at
                summary.latency.add(frame.timings["latency"])
                self.written_at.append(now)
                summary.frames_written += 1
                self.latest = frame
        finally:
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

    # -- the live view ---------------------------------------------------------------------------

    def status_text(self) -> str:
        """The view's status line: output rate over the last frames, latency, drops, reconnects."""
        times, summary = list(self.written_at), self.summary
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        latency = summary.latency.recent[-1] * 1000 if summary.latency.recent else 0.0
        text = f"{fps:.1f} fps | latency {latency:.0f} ms (p95 {summary.latency.percentile(95) * 1000:.0f})"
        if self.live:
            text += f" | dropped {summary.frames_dropped} | reconnects {self.source.reconnects}"
        return text
