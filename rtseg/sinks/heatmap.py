"""``--heatmap FILE.png``: where objects were over a run, made from their masks (not from box centres).

Each frame adds one to every pixel covered by a shown object's mask (read inside
its box only); at the end the counts, as a share of the frames, are coloured over
the run's first frame. A pixel an object covered in every frame is the hottest
colour; one no object touched shows the scene, dimmed. The PNG is written to a
temporary name and renamed, so the final name only ever holds a whole picture.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from rtseg.core.errors import OutputError
from rtseg.core.structures import Frame

DIM = 0.55  # the scene's brightness under the heat colours


class HeatmapSink:
    """Accumulates mask occupancy of ``classes`` (empty: all) and writes the picture on ``close``."""

    def __init__(self, path: str | Path, classes: Sequence[str] = ()) -> None:
        self.path = Path(path)
        self.classes = set(classes)
        self.frames = 0
        self._heat: np.ndarray | None = None
        self._scene: np.ndarray | None = None

    def write(self, frame: Frame) -> None:
        if self._heat is None or self._heat.shape != frame.image.shape[:2]:
            self._heat = np.zeros(frame.image.shape[:2], np.float32)
            self._scene = frame.image.copy()
        self.frames += 1
        detections = frame.detections
        if detections is None or not len(detections):
            return
        height, width = self._heat.shape
        names = detections.names()
        for i, box in enumerate(detections.boxes):
            if self.classes and names[i] not in self.classes:
                continue
            x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
            x1, y1 = min(width, math.ceil(box[2]) + 1), min(height, math.ceil(box[3]) + 1)
            if x1 <= x0 or y1 <= y0:
                continue
            self._heat[y0:y1, x0:x1] += detections.host_mask_window(i, slice(y0, y1), slice(x0, x1))

    def picture(self) -> np.ndarray | None:
        """The heatmap as an RGB image (None before the first frame)."""
        if self._heat is None or self._scene is None:
            return None
        share = self._heat / max(self.frames, 1)
        scaled = np.clip(np.sqrt(share / max(float(share.max()), 1e-9)) * 255, 0, 255).astype(np.uint8)
        colours = cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)
        out = (self._scene.astype(np.float32) * DIM).astype(np.uint8)
        touched = self._heat > 0
        weight = (0.35 + 0.5 * scaled[touched].astype(np.float32) / 255)[:, None]
        out[touched] = (colours[touched] * weight + out[touched] * (1 - weight)).astype(np.uint8)
        return out

    def close(self) -> None:
        picture = self.picture()
        if picture is None:
            return
        partial = self.path.with_name(f".{self.path.name}.partial.png")
        if not cv2.imwrite(str(partial), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)):
            raise OutputError(f"cannot write the heatmap {self.path}")
        os.replace(partial, self.path)
