"""Helpers for the web page's tests: a stub detector whose objects are known, test images, the expected blend."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from rtseg.core.config import RenderConfig
from rtseg.core.structures import Detections
from rtseg.detect.base import DetectorBase
from rtseg.render.colors import color_for_id
from rtseg.render.scene import ZONE_FILL, zone_color

KNOWN_CLASSES = ("__background__", "square", "disc")
AROUND_SQUARE = [[0.05, 0.05], [0.6, 0.05], [0.6, 0.55], [0.05, 0.55]]  # a zone holding the square, not the disc
SQUARE_SCORE, DISC_SCORE = 0.9, 0.6  # the square is drawn first (index 0), the disc second (index 1)


def square_mask(height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    mask[height // 8: height // 2, width // 8: width // 2] = True
    return mask


def disc_mask(height: int, width: int) -> np.ndarray:
    ys, xs = np.mgrid[:height, :width]
    radius = min(height, width) / 6
    return (ys - 0.7 * height) ** 2 + (xs - 0.72 * width) ** 2 <= radius ** 2


def square_centre(height: int, width: int) -> tuple[int, int]:
    """(y, x) well inside the square, away from its outline and label."""
    return (height // 8 + height // 2) // 2 + 2, (width // 8 + width // 2) // 2


def disc_centre(height: int, width: int) -> tuple[int, int]:
    return round(0.7 * height) + 2, round(0.72 * width)


def known_detections(height: int, width: int) -> Detections:
    masks = np.stack([square_mask(height, width), disc_mask(height, width)])
    boxes = []
    for mask in masks:
        ys, xs = np.nonzero(mask)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return Detections(boxes=np.array(boxes, np.float32), scores=np.array([SQUARE_SCORE, DISC_SCORE], np.float32),
                      class_ids=np.array([1, 2]), masks=masks, class_names=KNOWN_CLASSES)


class KnownObjectsDetector(DetectorBase):
    """Stub detector: a 'square' (0.9) and a 'disc' (0.6) at fixed places in every image; counts its calls.

    With ``hold=True`` every call waits until ``gate`` is set (``entered`` tells that a call has begun),
    so tests can keep the model busy.
    """

    class_names = KNOWN_CLASSES

    def __init__(self, hold: bool = False, torch_masks: bool = False) -> None:
        self.torch_masks = torch_masks  # masks as torch tensors, as the real model returns them on a GPU
        self.calls = 0
        self.shapes: list[tuple[int, ...]] = []  # each call's first image shape, in call order
        self.gate = threading.Event()
        self.entered = threading.Event()
        self._lock = threading.Lock()
        if not hold:
            self.gate.set()

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        with self._lock:
            self.calls += 1
            self.shapes.append(images[0].shape)
        self.entered.set()
        if not self.gate.wait(30):
            raise RuntimeError("the test never released the stub detector")
        results = [known_detections(*image.shape[:2]) for image in images]
        if self.torch_masks:
            for detections in results:
                detections.masks = torch.from_numpy(detections.masks)
        return results


def scene(height: int = 180, width: int = 240) -> np.ndarray:
    """An RGB test picture: a sky-to-ground gradient with a square and a disc where the stub finds them."""
    rows = np.linspace(0, 1, height)[:, None]
    sky, ground = np.array([150, 190, 230]), np.array([90, 120, 70])
    image = np.ascontiguousarray((sky * (1 - rows) + ground * rows)[:, None, :].repeat(width, axis=1).round()
                                 .astype(np.uint8))
    image[square_mask(height, width)] = (200, 120, 60)
    image[disc_mask(height, width)] = (60, 90, 200)
    return image


def encode(rgb: np.ndarray, extension: str = ".png") -> bytes:
    ok, data = cv2.imencode(extension, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None, "not an image"
    code = cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(image, code)


def blended(pixel: np.ndarray, index: int, config: RenderConfig | None = None) -> np.ndarray:
    """The colour the renderer gives a pixel under the mask of detection ``index`` (untracked: colour by index)."""
    alpha = (config or RenderConfig()).alpha
    return np.round(pixel.astype(float) * (1 - alpha) + np.array(color_for_id(index)) * alpha)


def tinted(pixel: np.ndarray, index: int) -> np.ndarray:
    """The colour of a pixel under zone ``index``'s tint, as rtseg.render.scene.SceneAnnotator blends it."""
    return np.round(pixel.astype(float) * (1 - ZONE_FILL) + np.array(zone_color(index)) * ZONE_FILL)


def in_zone_only(height: int, width: int) -> tuple[int, int]:
    """(y, x) inside AROUND_SQUARE but right of the square, away from its outline and every label."""
    return int(0.3 * height), int(0.55 * width)
