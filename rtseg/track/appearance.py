"""Appearance for association: a colour histogram of each detection's mask, fused with motion.

No extra model: the mask the detector already computes selects the object's own pixels
(only its visible part when something hides it, so a neighbour in front does not leak
into the description), and their colours are counted in ``BINS`` x ``BINS`` x ``BINS``
bins. A histogram is stored as the square root of its shares: a unit vector whose dot
product with another is their Bhattacharyya coefficient, so ``1 - a @ b`` is a distance
in [0, 1] (0: the same colours).

Fusion follows BoT-SORT (Aharon et al., 2022): a pair's appearance counts only where the
boxes overlap enough to be the same object at all (``tracking.appearance_min_iou``, the
proximity gate) and the colours are near (``tracking.appearance_distance``); there its
overlap is raised to ``1 - distance`` when that is larger. Appearance so never pairs what
motion forbids; it settles which of two overlapping objects a detection is, as when two
shapes of different colours cross.
"""

from __future__ import annotations

import numpy as np

BINS = 4
SIZE = BINS ** 3
_SHIFT = 8 - int(np.log2(BINS))  # 8-bit channel value >> _SHIFT = its bin
_MAX_PIXELS = 1024  # larger crops are subsampled on a regular grid: a histogram needs no more
# A track's appearance is a moving average of its detections' (BoT-SORT's feature EMA).
_MOMENTUM = 0.9


def colour_histograms(image: np.ndarray, boxes: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(N, SIZE) float32 unit vectors: the square-rooted colour shares of each detection's mask pixels.

    ``image`` (H, W, 3) uint8, ``boxes`` (N, 4) xyxy, ``masks`` (N, H, W) bool. A detection
    whose mask is empty inside its box is described by the whole box; one whose box lies
    outside the image gets a zero vector, near nothing.
    """
    height, width = image.shape[:2]
    looks = np.zeros((len(boxes), SIZE), np.float32)
    for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, np.float64)):
        left, top = max(int(x0), 0), max(int(y0), 0)
        right, bottom = min(int(np.ceil(x1)), width), min(int(np.ceil(y1)), height)
        if right <= left or bottom <= top:
            continue
        stride = max(1, int(np.sqrt((right - left) * (bottom - top) / _MAX_PIXELS)))
        crop = image[top:bottom:stride, left:right:stride]
        inside = masks[i, top:bottom:stride, left:right:stride]
        bins = crop >> _SHIFT  # uint8 throughout: SIZE codes fit in a byte
        codes = (bins[..., 0] * BINS + bins[..., 1]) * BINS + bins[..., 2]
        counts = np.bincount((codes[inside] if inside.any() else codes).ravel(), minlength=SIZE)
        looks[i] = np.sqrt(counts / counts.sum())
    return looks


def fuse(overlap: np.ndarray, track_looks: np.ndarray, looks: np.ndarray, min_iou: float,
         max_distance: float) -> None:
    """Raise ``overlap`` (T, N) in place to ``1 - appearance distance`` where the pair overlaps at
    least ``min_iou`` and its distance is at most ``max_distance`` (BoT-SORT's gated minimum)."""
    distance = 1.0 - track_looks @ looks.T
    near = (overlap >= min_iou) & (distance <= max_distance)
    np.maximum(overlap, np.where(near, 1.0 - distance, 0.0), out=overlap)


def blend(track_looks: np.ndarray, looks: np.ndarray) -> np.ndarray:
    """Tracks' appearance moved towards their new detections' (rows paired), back to unit length."""
    mixed = _MOMENTUM * track_looks + (1.0 - _MOMENTUM) * looks
    norm = np.linalg.norm(mixed, axis=1, keepdims=True)
    unit: np.ndarray = np.divide(mixed, norm, out=np.zeros_like(mixed), where=norm > 0)
    return unit
