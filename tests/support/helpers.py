"""Helpers shared by the tests: synthetic clips, reading videos back, a stub detector."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from rtseg.core.structures import Detections

DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "clips"
CAR_CLIP = DATA_DIR / "car-detection.mp4"
BIKES_CLIP = DATA_DIR / "bikes.mp4"

SHAPE_CLASSES = ("__background__", "square")


def make_clip(path: Path, *, frames: int = 12, width: int = 96, height: int = 64, pts: Sequence[int] | None = None,
              time_base: Fraction = Fraction(1, 1000), audio: bool = False, fps: int = 10) -> Path:
    """Write an H.264 clip of a white square moving right on grey, with optional audio and explicit pts.

    Returns the path. The square's left edge in frame i is at ``square_x(i, width)``.
    """
    pts = list(pts) if pts is not None else [round(i * 1000 / fps) for i in range(frames)]
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.time_base = time_base
        video.codec_context.time_base = time_base
        video.options = {"crf": "10", "preset": "ultrafast", "bf": "0"}
        if audio:
            sound = container.add_stream("aac", rate=16000)
            sound.layout = "mono"
        for i, p in enumerate(pts):
            image = np.full((height, width, 3), 60, np.uint8)
            x = square_x(i, width)
            image[height // 4: height // 4 + 16, x: x + 16] = 255
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = p, time_base
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if audio:
            duration = float(pts[-1] * time_base) + 0.1
            samples = int(16000 * duration)
            tone = (0.2 * np.sin(2 * math.pi * 440 * np.arange(samples) / 16000)).astype(np.float32)
            for start in range(0, samples, 1024):
                chunk = tone[start:start + 1024]
                audio_frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
                audio_frame.sample_rate, audio_frame.pts = 16000, start
                for packet in sound.encode(audio_frame):
                    container.mux(packet)
            for packet in sound.encode(None):
                container.mux(packet)
    return path


def square_x(index: int, width: int) -> int:
    return (4 + 3 * index) % (width - 16)


def read_video(path: Path) -> tuple[list[np.ndarray], list[float], dict]:
    """Decoded RGB frames, their timestamps in seconds, and stream facts of an MP4."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        info = {"width": stream.codec_context.width, "height": stream.codec_context.height,
                "codec": stream.codec_context.name, "pix_fmt": stream.codec_context.pix_fmt,
                "audio": [s.codec_context.name for s in container.streams.audio]}
        images, times = [], []
        for frame in container.decode(stream):
            images.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.pts * frame.time_base))
    return images, times, info


class SquareDetector:
    """Stub detector: finds the bright square of ``make_clip`` by thresholding, like a perfect model would."""

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
            mask = image.mean(axis=2) > 180
            if not mask.any():
                results.append(Detections.empty(*image.shape[:2], self.class_names))
                continue
            ys, xs = np.nonzero(mask)
            results.append(Detections(
                boxes=np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32),
                scores=np.array([0.9], np.float32), class_ids=np.array([1]), masks=mask[None],
                class_names=self.class_names))
        return results


SHAPE_LEVELS = (255, 160)  # grey levels of the two squares of ``make_two_squares_clip``


def make_two_squares_clip(path: Path, frames: int = 20, width: int = 128, height: int = 96) -> Path:
    """A lossless-ish clip of two squares moving in opposite directions on grey, for tracking end to end."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": "0", "preset": "ultrafast"}
        for i in range(frames):
            image = np.full((height, width, 3), 60, np.uint8)
            image[16:40, 8 + 4 * i: 32 + 4 * i] = SHAPE_LEVELS[0]
            image[56:80, width - 32 - 4 * i: width - 8 - 4 * i] = SHAPE_LEVELS[1]
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 10)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
    return path


class TwoSquaresDetector:
    """Stub detector for ``make_two_squares_clip``: one 'square' per grey level, in a shuffled order."""

    class_names = SHAPE_CLASSES

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        results = []
        for image in images:
            grey = image.mean(axis=2)
            masks = [np.abs(grey - level) < 30 for level in SHAPE_LEVELS]
            order = self.rng.permutation(len(masks))  # detection order must not decide colours
            boxes = []
            for i in order:
                ys, xs = np.nonzero(masks[i])
                boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            results.append(Detections(boxes=np.array(boxes, np.float32), scores=np.full(2, 0.9, np.float32),
                                      class_ids=np.ones(2, np.int64), masks=np.stack([masks[i] for i in order]),
                                      class_names=self.class_names))
        return results
