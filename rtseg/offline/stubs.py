"""Stub detectors that stand in for Mask R-CNN where the plumbing, not the model, is under test.

Tests, soaks and benchmarks use them: each finds what a synthetic clip shows by thresholding, as a perfect model
would, or records which frame it was given (frames carry their index stamped into their pixels).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from rtseg.core.structures import Detections, Frame
from rtseg.detect.base import DetectorBase
from rtseg.sources.base import VideoSource

SHAPE_CLASSES: tuple[str, ...] = ("__background__", "square")
SHAPE_LEVELS = (255, 160)  # grey levels of the two squares that ``TwoSquaresDetector`` tells apart
BRIGHT_LEVEL = 180  # pixels brighter than this (mean over channels) belong to ``SquareDetector``'s square


class SquareDetector(DetectorBase):
    """Finds the one bright square on a darker background by thresholding; can be slow, fail or hang on request.

    ``fail_at`` / ``hang_at``: raise, or wait on ``release`` (at most 60 s), once that many images were seen.
    """

    class_names = SHAPE_CLASSES

    def __init__(self, delay: float = 0.0, fail_at: int | None = None, hang_at: int | None = None) -> None:
        self.delay = delay
        self.fail_at = fail_at
        self.hang_at = hang_at
        self.calls = 0
        self.seen = 0
        self.release = threading.Event()

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        self.calls += 1
        results = []
        for image in images:
            if self.fail_at is not None and self.seen >= self.fail_at:
                raise RuntimeError("stub detector exploded")
            if self.hang_at is not None and self.seen >= self.hang_at:
                self.release.wait(60)
            if self.delay:
                time.sleep(self.delay)
            self.seen += 1
            mask = image.mean(axis=2) > BRIGHT_LEVEL
            if not mask.any():
                results.append(Detections.empty(image.shape[0], image.shape[1], self.class_names))
                continue
            ys, xs = np.nonzero(mask)
            results.append(Detections(
                boxes=np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32),
                scores=np.array([0.9], np.float32), class_ids=np.array([1]), masks=mask[None],
                class_names=self.class_names))
        return results


class TwoSquaresDetector(DetectorBase):
    """One 'square' per grey level of ``SHAPE_LEVELS``, in a shuffled order (the order must not decide colours)."""

    class_names = SHAPE_CLASSES

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        results = []
        for image in images:
            grey = image.mean(axis=2)
            masks = [np.abs(grey - level) < 30 for level in SHAPE_LEVELS]
            order = self.rng.permutation(len(masks))
            boxes = []
            for i in order:
                ys, xs = np.nonzero(masks[i])
                boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            results.append(Detections(boxes=np.array(boxes, np.float32), scores=np.full(2, 0.9, np.float32),
                                      class_ids=np.ones(2, np.int64), masks=np.stack([masks[i] for i in order]),
                                      class_names=self.class_names))
        return results


def stamp_index(image: np.ndarray, index: int) -> None:
    """Write ``index`` into the red channel of the first four pixels (``read_stamp`` reads it back)."""
    image[0, :4, 0] = np.frombuffer(index.to_bytes(4, "little"), np.uint8)


def read_stamp(image: np.ndarray) -> int:
    return int.from_bytes(image[0, :4, 0].tobytes(), "little")


class StampedSource:
    """Wraps a source so that each frame's index is written into its image: lets a stub model see which frame it got."""

    def __init__(self, source: VideoSource) -> None:
        self._source = source

    def __getattr__(self, name: str) -> Any:  # the wrapped source's other members, whatever they are
        return getattr(self._source, name)

    def frames(self) -> Iterator[Frame]:
        for frame in self._source.frames():
            if not frame.image.flags.writeable:
                frame.image = frame.image.copy()
            stamp_index(frame.image, frame.index)
            yield frame


class IndexRecordingDetector(DetectorBase):
    """Takes ``delay`` seconds per frame, finds nothing, and records the stamped index of each frame it gets."""

    class_names = SHAPE_CLASSES

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.indices: list[int] = []

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        results = []
        for image in images:
            self.indices.append(read_stamp(image))
            time.sleep(self.delay)
            results.append(Detections.empty(image.shape[0], image.shape[1], self.class_names))
        return results


class BatchCostDetector(DetectorBase):
    """A stand-in that costs what a batched model costs: a fixed part per call plus a part per image, and no CPU.

    On a CPU, Mask R-CNN gains nothing from batching, so the engine's batching is measured with this stand-in
    (``scripts/bench_streams.py``): its capacity at batch size B is B / (per_call + B * per_image) frames/s. It
    sleeps rather than computes (as a GPU leaves the CPU free) and finds nothing.
    """

    class_names = SHAPE_CLASSES

    def __init__(self, per_call: float, per_image: float) -> None:
        self.per_call = per_call
        self.per_image = per_image
        self.batch_sizes: list[int] = []

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        self.batch_sizes.append(len(images))
        time.sleep(self.per_call + self.per_image * len(images))
        return [Detections.empty(image.shape[0], image.shape[1], self.class_names) for image in images]

    def capacity(self, batch_size: int) -> float:
        """Frames per second this detector can do at full batches of ``batch_size``."""
        return batch_size / (self.per_call + self.per_image * batch_size)


class FrameTrigger:
    """A sink that starts ``actions[index]`` in a thread of its own when frame ``index`` is written (never waits),
    and records the indices it saw: faults injected at known frames of a run (a broker killed, restarted)."""

    def __init__(self, actions: dict[int, Callable[[], None]]) -> None:
        self.actions = actions
        self.frames: list[int] = []
        self.threads: list[threading.Thread] = []

    def write(self, frame: Frame) -> None:
        self.frames.append(frame.index)
        action = self.actions.get(frame.index)
        if action is not None:
            self.threads.append(threading.Thread(target=action))
            self.threads[-1].start()

    def close(self) -> None:
        for thread in self.threads:
            thread.join(30)
