"""The live preview window (OpenCV): shows rendered frames; it is driven by the main thread, not a sink."""

from __future__ import annotations

import logging
import os
import sys

import cv2
import numpy as np

log = logging.getLogger(__name__)


def draw_status(image: np.ndarray, text: str) -> np.ndarray:
    """A copy of ``image`` with ``text`` on a dark band at the top (the recording stays clean)."""
    out = image.copy()
    scale = max(0.4, min(1.0, out.shape[1] / 1280))
    (text_w, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    band = text_h + baseline + 8
    out[:band, : text_w + 12] //= 3
    cv2.putText(out, text, (6, band - baseline - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def compose_mosaic(tiles: list[tuple[np.ndarray | None, str, str]], tile_width: int = 480) -> np.ndarray:
    """One image of several streams in a grid; each tile is (rendered frame or None, title, status line).

    A tile without an image (a stream not yet connected, or reconnecting) shows its
    status on black, never a frozen last frame. Tiles keep their own aspect ratio.
    """
    columns = max(1, int(np.ceil(np.sqrt(len(tiles)))))
    rows = int(np.ceil(len(tiles) / columns))
    heights = [round(tile_width * img.shape[0] / img.shape[1]) for img, _, _ in tiles if img is not None]
    tile_height = max(heights) if heights else tile_width * 9 // 16
    canvas = np.zeros((rows * tile_height, columns * tile_width, 3), np.uint8)
    for i, (image, title, status) in enumerate(tiles):
        top, left = (i // columns) * tile_height, (i % columns) * tile_width
        cell = canvas[top: top + tile_height, left: left + tile_width]
        if image is not None:
            h = round(tile_width * image.shape[0] / image.shape[1])
            cell[:h] = cv2.resize(image, (tile_width, h), interpolation=cv2.INTER_AREA)
        else:
            cv2.putText(cell, status, (10, tile_height // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 200, 0), 1,
                        cv2.LINE_AA)
        cell[:] = draw_status(cell, f"{title} | {status}" if image is not None else title)
        cv2.rectangle(cell, (0, 0), (tile_width - 1, tile_height - 1), (90, 90, 90), 1)
    return canvas


class PreviewWindow:
    """An OpenCV window; skipped with one notice when no display is available.

    OpenCV's GUI must be driven from one thread, so the engine calls this
    from the main thread only.
    """

    def __init__(self, title: str) -> None:
        self.title = title
        self.available = self._open()
        self._shown = False

    def _open(self) -> bool:
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            log.warning("no display available: running without a window")
            return False
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            log.warning("cannot open a window (%s): running without one", str(exc).strip().splitlines()[-1])
            return False
        return True

    def show(self, image: np.ndarray, status: str = "") -> bool:
        """Show an RGB image with an optional status line; False once the user pressed q or Esc or closed the window."""
        if not self.available:
            return True
        if status:
            image = draw_status(image, status)
        cv2.imshow(self.title, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        self._shown = True
        return self.poll()

    def poll(self) -> bool:
        """Handle window events without a new image; False once the user asked to stop."""
        if not self.available or not self._shown:  # before the first image, there is no window to close yet
            return True
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):
            return False
        try:
            return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1
        except cv2.error:
            return False

    def close(self) -> None:
        if self.available:
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)
            except cv2.error:
                pass
