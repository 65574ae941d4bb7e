"""Box and mask geometry for tracking: overlaps, areas, sizes, box formats, mask crops.

Boxes are xyxy rows of float arrays; every function works on whole stacks of them
at once, so one frame costs a few numpy calls whatever the number of objects.
"""

from __future__ import annotations

import math

import numpy as np

# Mask-IoU compares crops around each box; Mask R-CNN pastes masks slightly beyond
# the box (torchvision pads the 28x28 mask by one cell), so the crop gets a margin.
_MASK_MARGIN = 0.05


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (M, 4) with every box in ``b`` (N, 4), xyxy: (M, N)."""
    inter = intersection(a, b)
    union = area(a)[:, None] + area(b) - inter
    # Empty boxes (union 0) overlap nothing: 0 / huge = 0.
    return inter / np.where(union > 0, union, np.inf)


def intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(M, N) area shared by every box in ``a`` (M, 4) and every box in ``b`` (N, 4), xyxy."""
    w: np.ndarray = np.minimum(a[:, 2, None], b[:, 2]) - np.maximum(a[:, 0, None], b[:, 0])
    h = np.minimum(a[:, 3, None], b[:, 3]) - np.maximum(a[:, 1, None], b[:, 1])
    np.maximum(w, 0.0, out=w)
    np.maximum(h, 0.0, out=h)
    w *= h
    return w


def area(boxes: np.ndarray) -> np.ndarray:
    """(N,) area of each xyxy box, 0 for empty ones."""
    sizes: np.ndarray = np.maximum(boxes[:, 2] - boxes[:, 0], 0.0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0.0)
    return sizes


def share_inside(outer: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(T, D) share of each of ``boxes``' area inside each box of ``outer``."""
    box_area = area(boxes)
    return intersection(outer, boxes) / np.where(box_area > 0, box_area, np.inf)


def log_size(boxes: np.ndarray) -> np.ndarray:
    """(N, 2) log of each xyxy box's width and height (empty sides count as tiny)."""
    sides: np.ndarray = np.log(np.maximum(boxes[:, 2:] - boxes[:, :2], 1e-9))
    return sides


def size_misfit(reference: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(T, D) |log(size ratio)| of each box with each reference box on the axis where they agree best."""
    misfit: np.ndarray = np.abs(log_size(reference)[:, None, :] - log_size(boxes)[None]).min(axis=-1)
    return misfit


def nonzero(mask: np.ndarray) -> np.ndarray:
    """Indices where a 1-d boolean array is true (np.flatnonzero without its wrapper cost)."""
    return mask.nonzero()[0]


def xyxy_to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    wh = boxes[:, 2:] - boxes[:, :2]
    return np.concatenate([boxes[:, :2] + wh / 2, wh], axis=1)


def cxcywh_to_xyxy(state: np.ndarray) -> np.ndarray:
    half = state[:, 2:4] / 2
    return np.concatenate([state[:, :2] - half, state[:, :2] + half], axis=1)


class MaskCrop:
    """A mask cut out around its box, remembered with where the cut was and the box centre.

    Crops keep the per-track memory proportional to object size, not frame size,
    and hold no reference to the frame's full (N, H, W) mask array.
    """

    __slots__ = ("y", "x", "pixels", "area", "cx", "cy")

    def __init__(self, mask: np.ndarray, box: np.ndarray) -> None:
        height, width = mask.shape
        left, top, right, bottom = (float(v) for v in box)
        mx, my = _MASK_MARGIN * (right - left) + 1, _MASK_MARGIN * (bottom - top) + 1
        x0 = min(max(math.floor(left - mx), 0), width)
        y0 = min(max(math.floor(top - my), 0), height)
        x1 = min(max(math.ceil(right + mx), x0), width)
        y1 = min(max(math.ceil(bottom + my), y0), height)
        self.y, self.x = y0, x0
        self.pixels = np.array(mask[y0:y1, x0:x1], dtype=bool, copy=True)
        self.area = int(np.count_nonzero(self.pixels))
        self.cx, self.cy = (left + right) / 2, (top + bottom) / 2


def crop_iou(track: MaskCrop, dy: int, dx: int, det: MaskCrop) -> float:
    """IoU of ``track``'s mask shifted by (dy, dx) pixels with ``det``'s mask."""
    ty, tx = track.y + dy, track.x + dx
    th, tw = track.pixels.shape
    dh, dw = det.pixels.shape
    y0, y1 = max(ty, det.y), min(ty + th, det.y + dh)
    x0, x1 = max(tx, det.x), min(tx + tw, det.x + dw)
    inter = 0
    if y1 > y0 and x1 > x0:
        inter = int(np.count_nonzero(track.pixels[y0 - ty:y1 - ty, x0 - tx:x1 - tx]
                                     & det.pixels[y0 - det.y:y1 - det.y, x0 - det.x:x1 - det.x]))
    union = track.area + det.area - inter
    return inter / union if union > 0 else 0.0
