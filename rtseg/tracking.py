"""Multi-object tracking: a stable identity for each detected instance across frames.

Interface (plain numpy; usable without the rest of rtseg)::

    tracker = Tracker(TrackingConfig())
    ids = tracker.update(boxes, scores, class_ids, masks)   # once per frame, in frame order
    tracker.reset()                                          # new video, scene cut

``boxes`` is (N, 4) xyxy in pixels, ``scores`` (N,), ``class_ids`` (N,) integers and
``masks`` (N, H, W) bool, needed only with ``match: mask_iou`` (ignored otherwise).
``update`` returns an (N,) int64 array: the id of the confirmed track each detection
belongs to, or -1 where it belongs to none (yet). Ids start at 1, are given in
order of confirmation and never reused, so they are dense and deterministic: the
same sequence of inputs always yields the same ids. Detections scoring below
``low_score`` are ignored (-1). ``track_detections`` does the same for a
:class:`~rtseg.structures.Detections` record, filling its ``track_ids``.
``tracking.enabled`` is for the pipeline to read; a Tracker always tracks.

One ``update``, in the manner of ByteTrack (Zhang et al., 2022):

1. Every track's box is predicted one frame ahead by its motion model.
2. Detections scoring ``>= high_score`` are assigned to confirmed tracks, whether
   seen last frame or lost for up to ``max_age`` frames. With ``low_score_claims``
   (the default) the low-score detections take part in this assignment too, but
   only its high-score pairs are kept: a track whose best fit is a low-score
   detection is held over to step 3 rather than handed to a higher-scoring
   neighbour or fragment. Strict ByteTrack order (``low_score_claims: false``)
   gives such tracks away whenever their own object scores low, which is exactly
   when it is partly hidden behind that neighbour; in the crossing and occlusion
   scenes of ``scripts/eval_tracking.py`` that costs about five times as many
   colour changes and 1.5 times the ID switches.
3. Detections scoring in ``[low_score, high_score)`` are assigned to the confirmed
   tracks still free. Low scores are typical of partly occluded objects, so this
   keeps a track alive through an occlusion without letting clutter start tracks.
4. High-score detections still free are assigned to tentative tracks (not yet
   confirmed). They come last so that a spurious new track can never take a
   detection away from an established identity.
5. High-score detections still free start tentative tracks. A tentative track
   missed once is deleted; one matched in ``min_hits`` consecutive frames is
   confirmed and given the next id, so one-frame false positives never get an id.
   A confirmed track missed for more than ``max_age`` frames in a row is deleted,
   which bounds the state however long the video.

Each assignment is optimal (``scipy.optimize.linear_sum_assignment``, maximising
total overlap) between the predicted track boxes and the detections; pairs of
different classes, or overlapping less than the stage's threshold, never match.
The overlap is box IoU, or with ``match: mask_iou`` the IoU of the detection's
mask with the track's last mask moved along with the predicted box.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import linear_sum_assignment

from rtseg.config import TrackingConfig
from rtseg.errors import ConfigError
from rtseg.structures import Detections

# Kalman noise (standard deviations per frame), as fractions of the box's own width (x)
# or height (y) so that one tuning serves near and far objects. Measurement, centre and
# initial-velocity values are those of SORT/DeepSORT/ByteTrack; the velocity noise is
# half theirs (steadier velocities carry tracks further through occlusions, measured
# with scripts/eval_tracking.py), and the size has no velocity at all (see Tracker).
_STD_MEASUREMENT = 1.0 / 20.0  # detector noise on centre and size
_STD_CENTRE = 1.0 / 20.0  # centre motion the velocity does not explain
_STD_SIZE = 1.0 / 100.0  # size drift: sizes change slowly in video
_STD_VELOCITY = 1.0 / 320.0  # change of the centre velocity
_STD_INIT_VELOCITY = 1.0 / 16.0  # a new track's velocity is unknown: wide prior

# Uncertainty of a track, per axis (x, y), in Tracker._var (T, 4, 2): the covariance of
# (centre, velocity) and the variance of the size. Nothing couples the axes, or centre and
# size, in this model, so the 6-state Kalman filter (cx, cy, w, h, vx, vy) splits exactly
# into these small filters, updated in closed form without matrix algebra.
_CC, _CV, _VV, _SS = range(4)

# A detection this much narrower (or shorter) than its track's prediction shows only part
# of the object; see _untruncate.
_TRUNCATION = 0.15

# Mask-IoU compares crops around each box; Mask R-CNN pastes masks slightly beyond
# the box (torchvision pads the 28x28 mask by one cell), so the crop gets a margin.
_MASK_MARGIN = 0.05


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (M, 4) with every box in ``b`` (N, 4), xyxy: (M, N)."""
    wh = np.maximum(np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2]), 0.0)
    inter = wh[:, :, 0] * wh[:, :, 1]
    size_a, size_b = np.maximum(a[:, 2:] - a[:, :2], 0.0), np.maximum(b[:, 2:] - b[:, :2], 0.0)
    union = (size_a[:, 0] * size_a[:, 1])[:, None] + (size_b[:, 0] * size_b[:, 1])[None, :] - inter
    return np.divide(inter, union, out=np.zeros(inter.shape), where=union > 0)


def _nonzero(mask: np.ndarray) -> np.ndarray:
    """Indices where a 1-d boolean array is true (np.flatnonzero without its wrapper cost)."""
    return mask.nonzero()[0]


def _xyxy_to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    wh = boxes[:, 2:] - boxes[:, :2]
    return np.concatenate([boxes[:, :2] + wh / 2, wh], axis=1)


def _cxcywh_to_xyxy(state: np.ndarray) -> np.ndarray:
    half = state[:, 2:4] / 2
    return np.concatenate([state[:, :2] - half, state[:, :2] + half], axis=1)


class _MaskCrop:
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


def _crop_iou(track: _MaskCrop, dy: int, dx: int, det: _MaskCrop) -> float:
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


def _untruncate(predicted: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Measured boxes with truncated sides restored to the predicted extent.

    A detector boxes only the visible part of an object, so an object sliding behind
    an occluder or out of the frame yields boxes that shrink from one side while the
    other side keeps moving. Fed as they are, those boxes drag the estimated centre
    velocity to about half its value and the size towards zero, so the prediction
    is far behind and too small by the time the object reappears. Where a box is
    markedly smaller than predicted along an axis, the side that agrees better with
    the prediction is kept and the predicted size is laid off from it.
    """
    lo, hi = measured[:, :2], measured[:, 2:]  # (left, top), (right, bottom)
    size = predicted[:, 2:] - predicted[:, :2]
    cut = hi - lo < (1.0 - _TRUNCATION) * size
    if not cut.any():
        return measured
    keep_lo = np.abs(lo - predicted[:, :2]) <= np.abs(hi - predicted[:, 2:])
    return np.concatenate([np.where(cut & ~keep_lo, hi - size, lo), np.where(cut & keep_lo, lo + size, hi)], axis=1)


def _assign(overlap: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one pairs (rows, cols) of ``overlap`` maximising the total, each >= threshold."""
    # Pairs below the threshold count as zero so that they cannot steer the assignment;
    # boxes that do not overlap at all never match, even with a threshold of 0.
    usable = np.where(overlap >= threshold, overlap, 0.0)
    rows, cols = linear_sum_assignment(usable, maximize=True)
    keep = usable[rows, cols] > 0
    return rows[keep], cols[keep]


class Tracker:
    """ByteTrack-style tracker with a constant-velocity Kalman filter per track.

    Why a Kalman filter rather than a plain velocity estimate: its gain starts high
    (a new track's velocity is unknown, so early detections are trusted) and settles
    as evidence accumulates, so velocities are usable after a few frames yet smooth
    out box jitter; that prediction is what lets a track be found again after a gap
    of up to ``max_age`` frames and keeps crossing objects apart. The state is the
    box centre with its velocity, and the box size as a slow random walk: a size
    velocity mostly learns the shrinking of boxes as objects slide behind something
    and then extrapolates it through the occlusion, so it is left out (and boxes cut
    short by occlusion are completed, see ``_untruncate``). All tracks live in
    stacked arrays, so one frame costs a few numpy calls whatever the number of objects.
    """

    def __init__(self, config: TrackingConfig) -> None:
        if config.low_score > config.high_score:
            raise ConfigError(f"tracking.low_score ({config.low_score}) is above tracking.high_score ({config.high_score})")
        self.config = config
        self.reset()

    def reset(self) -> None:
        """Forget every track and restart ids at 1 (a new video or a scene cut)."""
        self._box = np.zeros((0, 4))  # cx, cy, w, h
        self._velocity = np.zeros((0, 2))  # of the centre, pixels per frame
        self._var = np.zeros((0, 4, 2))
        self._class = np.zeros(0, np.int64)
        self._id = np.zeros(0, np.int64)  # -1 while tentative
        self._hits = np.zeros(0, np.int64)  # frames matched in a row (read only while tentative)
        self._misses = np.zeros(0, np.int64)  # consecutive frames missed
        self._crops: list[_MaskCrop] = []  # last mask of each track, with match: mask_iou only
        self._next_id = 1

    def __len__(self) -> int:
        """Number of tracks held, tentative and lost ones included."""
        return len(self._id)

    def update(self, boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray,
               masks: np.ndarray | None = None) -> np.ndarray:
        """Advance one frame; return each detection's confirmed track id, -1 where none."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        class_ids = np.asarray(class_ids, dtype=np.int64).reshape(-1)
        n = len(boxes)
        if not (len(scores) == len(class_ids) == n):
            raise ValueError(f"boxes, scores and class_ids differ in length: {n}, {len(scores)}, {len(class_ids)}")
        use_masks = self.config.match == "mask_iou"
        if use_masks and (masks is None or len(masks) != n):
            raise ValueError("match 'mask_iou' needs one mask per detection")

        cfg = self.config
        self._predict()
        high = scores >= cfg.high_score
        low = (scores >= cfg.low_score) & ~high
        crops = [_MaskCrop(masks[i], boxes[i]) if high[i] or low[i] else None for i in range(n)] if use_masks else []
        predicted = _cxcywh_to_xyxy(self._box)
        overlap = self._overlap(predicted, boxes, class_ids, crops)

        track_of = np.full(n, -1, np.int64)  # index of the track each detection joined
        free_track = np.ones(len(self), bool)
        confirmed = self._id >= 0
        # (tracks, detections competing for them, detections whose pairs are kept, threshold)
        stages = (
            (confirmed, high | low if cfg.low_score_claims else high, high, cfg.iou_threshold),
            (confirmed, low, low, cfg.low_iou_threshold),
            (~confirmed, high, high, cfg.iou_threshold),
        )
        for tracks, competing, kept, threshold in stages:
            t_idx = _nonzero(tracks & free_track)
            d_idx = _nonzero(competing & (track_of < 0))
            if not (len(t_idx) and len(d_idx)):
                continue
            rows, cols = _assign(overlap[t_idx[:, None], d_idx], threshold)
            keep = kept[d_idx[cols]]
            track_of[d_idx[cols[keep]]] = t_idx[rows[keep]]
            free_track[t_idx[rows[keep]]] = False

        matched_dets = _nonzero(track_of >= 0)
        matched_tracks = track_of[matched_dets]
        self._correct(matched_tracks, predicted[matched_tracks], boxes[matched_dets])
        if use_masks:
            for t, d in zip(matched_tracks, matched_dets):
                self._crops[t] = crops[d]
        self._hits[matched_tracks] += 1
        self._misses[matched_tracks] = 0
        self._misses[free_track] += 1
        self._confirm()

        ids = np.full(n, -1, np.int64)
        ids[matched_dets] = self._id[matched_tracks]

        keep = np.where(self._id >= 0, self._misses <= cfg.max_age, self._misses == 0)
        if not keep.all():
            self._select(keep)
        new = _nonzero(high & (track_of < 0))
        if len(new):
            first = len(self)
            self._start(boxes[new], class_ids[new], [crops[d] for d in new] if use_masks else [])
            self._confirm()  # with min_hits == 1 a new track is confirmed at once
            ids[new] = self._id[first:]
        return ids

    def _predict(self) -> None:
        """Move every track one frame ahead: centre by its velocity, uncertainty grown."""
        wh, var = self._box[:, 2:], self._var
        self._box[:, :2] += self._velocity
        var[:, _CC] += 2 * var[:, _CV] + var[:, _VV] + (_STD_CENTRE * wh) ** 2
        var[:, _CV] += var[:, _VV]
        var[:, _VV] += (_STD_VELOCITY * wh) ** 2
        var[:, _SS] += (_STD_SIZE * wh) ** 2

    def _correct(self, tracks: np.ndarray, predicted: np.ndarray, boxes: np.ndarray) -> None:
        """Kalman measurement update of ``tracks`` (predicted xyxy boxes) with their matched ``boxes``."""
        box, velocity, var = self._box[tracks], self._velocity[tracks], self._var[tracks]
        z = _xyxy_to_cxcywh(_untruncate(predicted, boxes))
        noise = (_STD_MEASUREMENT * box[:, 2:]) ** 2  # measurement variance, centre and size alike
        gain_centre = var[:, _CC] / (var[:, _CC] + noise)
        gain_velocity = var[:, _CV] / (var[:, _CC] + noise)
        gain_size = var[:, _SS] / (var[:, _SS] + noise)
        innovation = z[:, :2] - box[:, :2]
        box[:, :2] += gain_centre * innovation
        velocity += gain_velocity * innovation
        box[:, 2:] += gain_size * (z[:, 2:] - box[:, 2:])
        var[:, _VV] -= gain_velocity * var[:, _CV]
        var[:, _CV] *= 1 - gain_centre
        var[:, _CC] *= 1 - gain_centre
        var[:, _SS] *= 1 - gain_size
        self._box[tracks], self._velocity[tracks], self._var[tracks] = box, velocity, var

    def _confirm(self) -> None:
        """Give ids, in track order, to tentative tracks that reached ``min_hits``."""
        ready = _nonzero((self._id < 0) & (self._hits >= self.config.min_hits))
        if len(ready):
            self._id[ready] = np.arange(self._next_id, self._next_id + len(ready))
            self._next_id += len(ready)

    def _start(self, boxes: np.ndarray, class_ids: np.ndarray, crops: list[_MaskCrop]) -> None:
        """Open one tentative track per box."""
        z = _xyxy_to_cxcywh(boxes)
        var = np.zeros((len(z), 4, 2))
        var[:, _CC] = var[:, _SS] = (2 * _STD_MEASUREMENT * z[:, 2:]) ** 2
        var[:, _VV] = (_STD_INIT_VELOCITY * z[:, 2:]) ** 2
        self._box = np.concatenate([self._box, z])
        self._velocity = np.concatenate([self._velocity, np.zeros((len(z), 2))])
        self._var = np.concatenate([self._var, var])
        self._class = np.concatenate([self._class, class_ids])
        self._id = np.concatenate([self._id, np.full(len(z), -1, np.int64)])
        self._hits = np.concatenate([self._hits, np.ones(len(z), np.int64)])
        self._misses = np.concatenate([self._misses, np.zeros(len(z), np.int64)])
        self._crops.extend(crops)

    def _select(self, keep: np.ndarray) -> None:
        """Keep only the tracks where ``keep`` is true."""
        self._box, self._velocity, self._var = self._box[keep], self._velocity[keep], self._var[keep]
        self._class = self._class[keep]
        self._id, self._hits, self._misses = self._id[keep], self._hits[keep], self._misses[keep]
        self._crops = [c for c, k in zip(self._crops, keep) if k] if self._crops else []

    def _overlap(self, predicted: np.ndarray, boxes: np.ndarray, class_ids: np.ndarray,
                 crops: list[_MaskCrop | None]) -> np.ndarray:
        """(tracks, detections) overlap of the predicted track boxes with detections; 0 across classes."""
        overlap = box_iou(predicted, boxes)
        overlap[self._class[:, None] != class_ids[None, :]] = 0.0
        if crops:
            for t, d in zip(*np.nonzero(overlap)):
                track, det = self._crops[t], crops[d]
                if det is None:  # scores below low_score: never used
                    continue
                if track.area and det.area:
                    dy = round(self._box[t, 1] - track.cy)
                    dx = round(self._box[t, 0] - track.cx)
                    overlap[t, d] = _crop_iou(track, dy, dx, det)
                # else: an empty mask (tiny object) says nothing; the box IoU stands in for it
        return overlap


def track_detections(tracker: Tracker, detections: Detections) -> None:
    """Fill ``detections.track_ids`` for one frame (call once per frame, in frame order)."""
    masks = detections.host_masks() if tracker.config.match == "mask_iou" else None  # boxes need no download
    detections.track_ids = tracker.update(detections.boxes, detections.scores, detections.class_ids, masks)
