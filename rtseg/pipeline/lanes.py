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

from rtseg.core.config import Config
from rtseg.core.errors import StageError
from rtseg.core.structures import Detections, Frame
from rtseg.pipeline.stages import END, RunState, Stage
from rtseg.pipeline.summary import StreamSummary
from rtseg.render.renderer import Renderer
from rtseg.sinks.base import Sink
from rtseg.sources.base import VideoSource
from rtseg.track.tracker import Tracker, track_detections

# Where each step's failure sits in the lane: the stages up to it halt, the ones after it drain.
STAGE_ORDER = {"capture": 0, "tracking": 1, "render": 1, "sinks": 2}


class StreamLane:
    """Capture, tracking + rendering, and sinks of one stream, each stage in its own thread."""

    def __init__(self, stream_id: int, name: str, source: VideoSource, sinks: Sequence[Sink], config: Config,
                 tracker: Tracker | None, renderer: Renderer, moved: threading.Event,
                 score_threshold: float | None = None) -> None:
        self.stream_id = stream_id
        self.name = name
        self.source = source
        self.sinks = list(sinks)
        self.config = config
        self.tracker = tracker
        self.renderer = renderer
        self.live = source.info.is_live
        self.state = RunState()
        self.summary = StreamSummary(stream_id, name, live=self.live)
        # The detector may keep lower scores than this stream shows (for the tracker's second stage).
        self.score_threshold = config.model.score_threshold if score_threshold is None else score_threshold
        sizes = config.pipeline
        self.captured: queue.Queue = queue.Queue(maxsize=config.live.queue_size if self.live else sizes.capture_queue_size)
        self.inferred: queue.Queue = queue.Queue(maxsize=sizes.render_queue_size)
        self.rendered: queue.Queue = queue.Queue(maxsize=sizes.sink_queue_size)
        self.latest: Frame | None = None  # the newest written frame, for the live view
        self.written_at: deque[float] = deque(maxlen=64)  # recent write times, for the view's FPS
        label = f"{stream_id}-"
        self.stages = [
            Stage("capture", self.state, self._capture, self.captured, on_halt=source.stop, moved=moved, label=label),
            Stage("render", self.state, self._render, self.rendered, moved=moved, label=label),
            Stage("sinks", self.state, self._write, None, label=label),
        ]
        # Kept by the shared inference worker only.
        self.capture_done = False  # the worker has passed on this stream's END
        self.detached = False  # the worker must not feed this stream any more (its later stages failed)
        self.held: Frame | None = None  # a frame taken but left for a batch of its own size
        self.started_at = 0.0
        self.end_owed = False  # the supervisor still owes the lane's later stages an END
        self.left_at: float | None = None  # when the supervisor gave up waiting for a hung sink stage

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
        return bool(getattr(self.source, "reconnecting", False))

    # -- stages ---------------------------------------------------------------------------------

    def _capture(self, stage: Stage) -> None:
        limit, summary = self.config.pipeline.max_frames, self.summary
        try:
            frames = self.source.frames()
            while not stage.halted.is_set():
                if limit and summary.frames_read >= limit:
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
        while (frame := stage.get(self.inferred)) is not END:
            assert frame.detections is not None
            with state.busy("tracking"):
                frame.detections = self._track(frame.detections, frame.image)
            with state.busy("render"):
                frame.rendered = self.renderer.draw(frame.image, frame.detections)
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

    def _write(self, stage: Stage) -> None:
        state, summary = self.state, self.summary
        try:
            while (frame := stage.get(self.rendered)) is not END:
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
