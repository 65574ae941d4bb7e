"""One model for every user: model calls taken in arrival order, and a bounded count of admitted work."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Collection, Sequence
from typing import TypeVar

import numpy as np

from rtseg.core.structures import Detections
from rtseg.detect.base import Detector, DetectorBase

T = TypeVar("T")

MIN_SCORE = 0.05  # the shared model keeps everything scoring at least this; each user's threshold picks from there up


class FairLock:
    """A lock granted in the order it was asked for.

    A plain ``threading.Lock`` lets the thread that just released it take it
    again at once, so a video job could starve an image request; here the next
    waiter gets it, and an image request waits for at most the calls queued
    before it (one, when one video job is running).
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._waiters: deque[threading.Event] = deque()
        self._held = False

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def acquire(self) -> None:
        with self._guard:
            if not self._held:
                self._held = True
                return
            turn = threading.Event()
            self._waiters.append(turn)
        turn.wait()  # release() hands the lock over: it stays held

    def release(self) -> None:
        with self._guard:
            if self._waiters:
                self._waiters.popleft().set()
            else:
                self._held = False

    def __enter__(self) -> FairLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class SharedModel(DetectorBase):
    """The one detector of the server; every caller (image request, video job, webcam) goes through ``detect``."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self.class_names = detector.class_names
        self.precision_note = detector.precision_note
        self.lock = FairLock()

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        with self.lock:
            return self.detector.detect(images)

    def detect_then(self, images: Sequence[np.ndarray], keep: Callable[[list[Detections]], T]) -> T:
        """``keep(detect(images))`` with the model still held: what ``keep`` makes of the full-frame masks (an
        image result's run-length encodings) is done before the next call makes its own, so the callers of this
        method hold one call's full-frame masks at a time, not one per waiting request."""
        with self.lock:
            return keep(self.detector.detect(images))


class FilteredDetector(DetectorBase):
    """A view of the shared model that keeps one job's score floor and classes (the model itself keeps everything)."""

    def __init__(self, model: SharedModel, min_score: float, class_ids: Collection[int] | None) -> None:
        self.model = model
        self.class_names = model.class_names
        self.precision_note = model.precision_note
        self.min_score = min_score
        self.class_ids = class_ids

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        results = []
        for detections in self.model.detect(images):
            chosen = wanted(detections, self.min_score, self.class_ids)
            results.append(detections if chosen.all() else detections.select(chosen))
        return results


def wanted(detections: Detections, min_score: float, class_ids: Collection[int] | None) -> np.ndarray:
    """Which detections score at least ``min_score`` and, when ``class_ids`` is given, are of those classes."""
    chosen = detections.scores >= min_score
    if class_ids is not None:
        chosen &= np.isin(detections.class_ids, list(class_ids))
    return chosen


class Admission:
    """At most ``capacity`` pieces of work at once: image requests, video jobs (queued or running), webcam sessions.

    Work beyond that is refused at once (the page shows 503 and a message) rather than left waiting.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._slots = threading.BoundedSemaphore(capacity)

    def try_enter(self) -> bool:
        return self._slots.acquire(blocking=False)

    def leave(self) -> None:
        self._slots.release()
