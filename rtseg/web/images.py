"""Image results: detected once down to the slider's floor, then filtered, drawn and exported on every request.

The page's slider and class filter only choose among detections the server
already holds, so moving them never runs the model again.

Memory, per rule: an upload's size is read from its header and judged against
the pixel budget before it is decoded (``Decoder``); it is shrunk to the
requested side at once (JPEGs while they decode); a stored result keeps that
shrunk image and each mask as a COCO run-length encoding (a blob's RLE grows
with its outline, not with the frame), never the full-frame masks the model
returned; and only a request that draws or exports masks unpacks them, for its
chosen detections only (``ImageResult.frame``).
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
from rtseg.core.masks import decode_mask, encode_mask
from rtseg.core.pixels import decode_image
from rtseg.core.structures import Detections, Frame
from rtseg.render.renderer import Renderer
from rtseg.render.scene import SceneAnnotator
from rtseg.sinks.data import CropsSink
from rtseg.web.sharing import wanted

IMAGE_KINDS = "jpg, png, webp or bmp"


class UnreadableImage(ValueError):
    """The upload is not an image OpenCV can decode."""


class Decoder:
    """Decodes the page's images (uploads, webcam frames) within the pixel budget, one at a time.

    The size comes from the file's header and is refused (``OverBudget``) before any pixel is decoded; images are
    decoded one at a time, so the decoded pixels held at once are at most ``max_pixels`` x 3 bytes however many
    requests arrive together.
    """

    def __init__(self, max_pixels: int) -> None:
        self.max_pixels = max_pixels
        self._one_at_a_time = threading.Lock()

    def decode(self, data: bytes, max_side: int, label: str) -> np.ndarray:
        """The image as RGB uint8 with its longer side at most ``max_side``, judged by decoding it (its name and
        type say nothing)."""
        with self._one_at_a_time:
            image = decode_image(data, self.max_pixels, label, max_side)
            if image is None:
                raise UnreadableImage(f"{label} is not an image rtseg can read: it does not decode as {IMAGE_KINDS}")
            return fit(image, max_side)


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
    """One uploaded image (at the size the model saw) and everything the model found in it, masks as RLE."""

    def __init__(self, name: str | None, image: np.ndarray, found: Detections) -> None:
        self.name = name
        self.image = image
        self.touched = time.monotonic()
        self._found = Detections(boxes=found.boxes, scores=found.scores, class_ids=found.class_ids,
                                 masks=np.zeros((len(found), 0, 0), bool), class_names=found.class_names)
        everything = (slice(None), slice(None))
        masks = [found.host_mask_window(i, *everything) for i in range(len(found))]  # one at a time off a GPU
        self._areas = [int(mask.sum()) for mask in masks]
        self._rles = [encode_mask(mask) for mask in masks]

    def objects(self, min_score: float, class_ids: Collection[int] | None) -> list[dict[str, Any]]:
        """The page's table rows, as ``objects_table`` takes them from the CLI's record, without unpacking a mask."""
        chosen = np.flatnonzero(wanted(self._found, min_score, class_ids))
        names = self._found.names()
        return [{"class": names[i], "score": round(float(self._found.scores[i]), 4), "area": self._areas[i],
                 "box": [round(float(v), 2) for v in self._found.boxes[i]]} for i in chosen]

    def detections(self, min_score: float, class_ids: Collection[int] | None) -> Detections:
        """The chosen detections with their masks unpacked at full size: the only place a result's masks are."""
        chosen = np.flatnonzero(wanted(self._found, min_score, class_ids))
        height, width = self.image.shape[:2]
        masks = np.zeros((len(chosen), height, width), bool)
        for row, i in enumerate(chosen):
            masks[row] = decode_mask(self._rles[i])
        found = self._found
        return Detections(boxes=found.boxes[chosen], scores=found.scores[chosen], class_ids=found.class_ids[chosen],
                          masks=masks, class_names=found.class_names)

    def frame(self, min_score: float, class_ids: Collection[int] | None) -> Frame:
        """The result as the CLI's record of a still image: frame 0 at time 0, named after the upload."""
        return Frame(index=0, image=self.image, pts=0, time_base=Fraction(1), captured_at=0.0, name=self.name,
                     detections=self.detections(min_score, class_ids))

    @property
    def stored_bytes(self) -> int:
        """What the result holds: its image and its masks' encodings (the bound the README states)."""
        return self.image.nbytes + sum(len(rle["counts"]) for rle in self._rles)


def annotated_png(frame: Frame, config: RenderConfig, scene: SceneState | None = None) -> bytes:
    """Drawn as the CLI draws still images: untracked, so colours follow the detection order; then the zones."""
    assert frame.detections is not None
    drawn = Renderer(config, tracked=False).draw(frame.image, frame.detections)
    if scene is not None:
        SceneAnnotator(config.line_width).annotate(drawn, frame.detections, scene)
    return png_bytes(drawn)


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
