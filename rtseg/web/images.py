"""Image results: detected once down to the slider's floor, then filtered, drawn and exported on every request.

The page's slider and class filter only choose among detections the server
already holds, so moving them never runs the model again. Masks are kept
bit-packed (8 times smaller) while a result waits to be re-filtered.
"""

from __future__ import annotations

import io
import shutil
import threading
import time
import zipfile
from collections import OrderedDict
from collections.abc import Collection
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rtseg.core.config import RenderConfig
from rtseg.core.events import SceneState
from rtseg.core.structures import Detections, Frame
from rtseg.render.renderer import Renderer
from rtseg.render.scene import SceneAnnotator
from rtseg.sinks.data import CropsSink
from rtseg.web.sharing import wanted

IMAGE_KINDS = "jpg, png, webp or bmp"


class UnreadableImage(ValueError):
    """The upload is not an image OpenCV can decode."""


def decode_image(data: bytes, label: str) -> np.ndarray:
    """The upload as an RGB uint8 image, judged by decoding it (its name and type say nothing)."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise UnreadableImage(f"{label} is not an image rtseg can read: it does not decode as {IMAGE_KINDS}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def fit(image: np.ndarray, max_side: int) -> np.ndarray:
    """The image shrunk so that its longer side is at most ``max_side`` pixels (never enlarged)."""
    height, width = image.shape[:2]
    if max(height, width) <= max_side:
        return image
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def png_bytes(rgb_or_rgba: np.ndarray) -> bytes:
    code = cv2.COLOR_RGBA2BGRA if rgb_or_rgba.shape[2] == 4 else cv2.COLOR_RGB2BGR
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb_or_rgba, code))
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
        raise RuntimeError("PNG encoding failed")
    return encoded.tobytes()


class ImageResult:
    """One uploaded image (at the size the model saw) and everything the model found in it."""

    def __init__(self, name: str | None, image: np.ndarray, found: Detections) -> None:
        self.name = name
        self.image = image
        self.touched = time.monotonic()
        self._packed_masks = np.packbits(found.host_masks(), axis=2)
        self._found = Detections(boxes=found.boxes, scores=found.scores, class_ids=found.class_ids,
                                 masks=np.zeros((len(found), 0, 0), bool), class_names=found.class_names)

    def detections(self, min_score: float, class_ids: Collection[int] | None) -> Detections:
        chosen = wanted(self._found, min_score, class_ids)
        masks = np.unpackbits(self._packed_masks[chosen], axis=2, count=self.image.shape[1]).astype(bool)
        found = self._found
        return Detections(boxes=found.boxes[chosen], scores=found.scores[chosen], class_ids=found.class_ids[chosen],
                          masks=masks, class_names=found.class_names)

    def frame(self, min_score: float, class_ids: Collection[int] | None) -> Frame:
        """The result as the CLI's record of a still image: frame 0 at time 0, named after the upload."""
        return Frame(index=0, image=self.image, pts=0, time_base=Fraction(1), captured_at=0.0, name=self.name,
                     detections=self.detections(min_score, class_ids))


def annotated_png(frame: Frame, config: RenderConfig, scene: SceneState | None = None) -> bytes:
    """Drawn as the CLI draws still images: untracked, so colours follow the detection order; then the zones."""
    assert frame.detections is not None
    drawn = Renderer(config, tracked=False).draw(frame.image, frame.detections)
    if scene is not None:
        SceneAnnotator(config.line_width).annotate(drawn, frame.detections, scene)
    return png_bytes(drawn)


def objects_table(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The page's table rows, taken from the CLI's record so both always agree."""
    return [{"class": i["class_name"], "score": i["score"], "area": i["area"], "box": i["box"]}
            for i in record["instances"]]


def cutouts_zip(frame: Frame, scratch: Path) -> bytes:
    """Each object cut out as a transparent PNG (the CLI's --save-crops files), zipped."""
    CropsSink(scratch).write(frame)
    buffer = io.BytesIO()
    try:
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # PNGs are compressed already
            for path in sorted(scratch.iterdir()):
                archive.write(path, path.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return buffer.getvalue()


class ImageStore:
    """Results by id, at most ``capacity`` (the least recently used goes first), each dropped after ``keep_seconds``."""

    def __init__(self, capacity: int, keep_seconds: float) -> None:
        self.capacity = capacity
        self.keep_seconds = keep_seconds
        self._results: OrderedDict[str, ImageResult] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, result_id: str, result: ImageResult) -> None:
        with self._lock:
            self._results[result_id] = result
            while len(self._results) > self.capacity:
                self._results.popitem(last=False)

    def get(self, result_id: str) -> ImageResult | None:
        with self._lock:
            result = self._results.get(result_id)
            if result is not None:
                result.touched = time.monotonic()
                self._results.move_to_end(result_id)
            return result

    def expire(self, now: float) -> None:
        with self._lock:
            for result_id in [k for k, r in self._results.items() if now - r.touched > self.keep_seconds]:
                del self._results[result_id]

    def __len__(self) -> int:
        return len(self._results)
