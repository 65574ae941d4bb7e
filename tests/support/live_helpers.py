"""Helpers for live-source tests: a sink that keeps what it gets, and a watcher that stops a run.

The simulated camera (RTSP server), clip cutting and looping and the frame-stamping stub model live in the
package (``rtseg.offline.rtsp``, ``rtseg.offline.stubs``): scripts use them too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rtseg.core.structures import Frame


class RecordingSink:
    """Keeps every frame it gets (images optional, to spare memory)."""

    def __init__(self, keep_images: bool = False) -> None:
        self.frames: list[Frame] = []
        self.keep_images = keep_images

    def write(self, frame: Frame) -> None:
        if not self.keep_images:
            frame = Frame(index=frame.index, image=frame.image[:1, :1], pts=frame.pts, time_base=frame.time_base,
                          captured_at=frame.captured_at)
        self.frames.append(frame)

    def close(self) -> None:
        pass


def stop_when(pipeline, condition: Callable[[], bool], timeout: float) -> threading.Thread:
    """Start a watcher that stops ``pipeline`` once ``condition()`` holds, or after ``timeout`` seconds regardless."""

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not condition():
            time.sleep(0.05)
        pipeline.stop()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher
