"""Helpers shared by the tests: synthetic clips and reading videos back.

The stub detectors that find what these clips show live in the package (``rtseg.offline.stubs``; soaks and
benchmarks use them too) and are re-exported here for the tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from rtseg.offline.stubs import SHAPE_CLASSES, SHAPE_LEVELS, SquareDetector, TwoSquaresDetector

__all__ = ["SAMPLE_CLIP", "SHAPE_CLASSES", "SHAPE_LEVELS", "SquareDetector",
           "TwoSquaresDetector", "make_clip", "make_two_squares_clip", "read_video", "square_x"]

# The repository's own real footage: 4.8 s (60 frames, audio included) of the car clip, so tests of real footage
# run on a fresh clone too (samples/README.md).
SAMPLE_CLIP = Path(__file__).resolve().parents[2] / "samples" / "car.mp4"


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


def make_two_squares_clip(path: Path, frames: int = 20, width: int = 128, height: int = 96) -> Path:
    """A lossless-ish clip of two squares (grey levels ``SHAPE_LEVELS``) moving in opposite directions on grey.

    ``TwoSquaresDetector`` finds them, for tracking end to end.
    """
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
