"""The one inference worker every stream shares: batches across streams, never waits for a particular one.

Rules, in the order the worker applies them when it forms a batch:

- it takes frames only from streams with room after the model (their render
  queue), so a stream whose tracker, renderer or encoder is slow holds back
  only itself, and handing results on never blocks;
- live streams first, round-robin from the one after the last served, at most
  one frame each per batch: every camera gets an equal share of the model;
  files then fill the places the cameras leave free, round-robin too, so an
  archive never adds latency to a camera;
- a batch holds frames of one size only: torchvision pads a batch to its
  largest image, and padded pixels cost model time for nothing; a frame of
  another size waits (held, in order) for a batch of its own;
- after the first frame the worker waits at most ``pipeline.batch_timeout_ms``
  for more, then runs what it has.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from rtseg.core.errors import RuntimeFailure
from rtseg.core.structures import Frame
from rtseg.detect.base import Detector
from rtseg.pipeline.lanes import StreamLane
from rtseg.pipeline.stages import POLL_SECONDS, RunState, Stage, Stopped

Batch = list[tuple[StreamLane, Frame]]  # the frames of one model call, with the lane each came from


class InferenceWorker:
    """The body of the shared ``inference`` stage; ``detector`` may be set after construction (loaded late)."""

    def __init__(self, detector: Detector | None, lanes: Callable[[], Sequence[StreamLane]], state: RunState,
                 moved: threading.Event, no_more_lanes: threading.Event, batch_size: int,
                 batch_timeout: float) -> None:
        self.detector = detector
        self._lanes = lanes
        self._state = state
        self._moved = moved
        self._no_more_lanes = no_more_lanes
        self.batch_size = batch_size
        self.batch_timeout = batch_timeout
        self.calls = 0
        self.busy_seconds = 0.0
        self._last_served = {True: -1, False: -1}  # live / file: the stream id served last
        self._warmed: set[tuple[int, int]] = set()

    @property
    def model(self) -> Detector:
        if self.detector is None:
            raise RuntimeFailure("the inference stage started before its detector was loaded")
        return self.detector

    def run(self, stage: Stage) -> None:
        while True:
            lanes = [lane for lane in self._lanes() if lane.wants_model]
            if not lanes and self._no_more_lanes.is_set():
                return
            self._warm_up(lanes)
            batch, ends = self._collect(stage, lanes)
            if batch:
                self._infer(batch)
            for lane in ends:
                lane.deliver_end()

    def _warm_up(self, lanes: Sequence[StreamLane]) -> None:
        """Let the detector prepare for each new frame size once (CUDA kernels, buffers), untimed."""
        for lane in lanes:
            size = lane.frame_size
            if size in self._warmed or not all(size):
                continue
            self._warmed.add(size)
            with self._state.busy("inference", timed=False):
                self.model.warm_up(size[0], size[1], 1 if lane.live else self.batch_size)

    def _collect(self, stage: Stage, lanes: Sequence[StreamLane]) -> tuple[Batch, list[StreamLane]]:
        batch: Batch = []
        ends: list[StreamLane] = []
        deadline: float | None = None
        while True:
            self._moved.clear()  # cleared before looking, so a frame put while we look still wakes us
            took = self._take(lanes, batch, ends)
            if len(batch) >= self.batch_size or (ends and not batch):
                return batch, ends
            now = time.monotonic()
            if batch:
                deadline = deadline if deadline is not None else now + self.batch_timeout
                if now >= deadline:
                    return batch, ends
                if not took:
                    self._moved.wait(min(deadline - now, POLL_SECONDS))
                continue
            if stage.halted.is_set():
                raise Stopped
            if not took:
                self._moved.wait(POLL_SECONDS)
                return batch, ends  # look at the streams again: some may have ended or started

    def _take(self, lanes: Sequence[StreamLane], batch: Batch, ends: list[StreamLane]) -> bool:
        """One round over the streams in their turn; True if anything was taken."""
        took = False
        in_batch = {id(lane) for lane, _ in batch}
        for live in (True, False):
            group = sorted((lane for lane in lanes if lane.live == live and lane not in ends),
                           key=lambda lane: lane.stream_id)
            last = self._last_served[live]
            group = [lane for lane in group if lane.stream_id > last] + [lane for lane in group if lane.stream_id <= last]
            progress = True
            while progress and len(batch) < self.batch_size:
                progress = False
                for lane in group:
                    if len(batch) >= self.batch_size:
                        break
                    if live and id(lane) in in_batch or lane in ends:
                        continue  # one frame per camera per batch
                    reserved = sum(1 for other, _ in batch if other is lane)
                    item = lane.next_for_model(batch[0][1].image.shape if batch else None, reserved)
                    if item is None:
                        continue
                    took = progress = True
                    if not isinstance(item, Frame):  # END: capture is done
                        ends.append(lane)
                        continue
                    batch.append((lane, item))
                    in_batch.add(id(lane))
                    self._last_served[live] = lane.stream_id
                if live:
                    break
        return took

    def _infer(self, batch: Batch) -> None:
        state, frames = self._state, [frame for _, frame in batch]
        started = time.monotonic()
        with state.busy("inference", frames=len(frames)):
            results = self.model.detect([frame.image for frame in frames])
        self.busy_seconds += time.monotonic() - started
        self.calls += 1
        for step, seconds in self.model.last_timings.items():
            state.record(step, seconds, len(frames))
        for (lane, frame), detections in zip(batch, results):
            lane.deliver(frame, detections)
