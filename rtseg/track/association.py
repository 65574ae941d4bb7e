"""The tracker's association: which detection continues which track, one named step after another.

A frame's tracks and detections are paired by a fixed sequence of :class:`Step` members,
numbered as in :mod:`rtseg.track.tracker`'s docstring, which gives the rules. Each
step is one optimal assignment (``scipy.optimize.linear_sum_assignment``) between the
tracks and detections still free, scored by that step's own measure:

* :attr:`Step.HIGH_SCORE`, :attr:`Step.LOW_SCORE`, :attr:`Step.TENTATIVE`: overlap of
  predicted track boxes and detections above the step's least overlap (``threshold``);
* :attr:`Step.SLIVER_OR_REFIND`: steps 4 and 5 in one assignment, each pair scored by
  its own step's measure (share inside the prediction for tracks matched last frame,
  the Mahalanobis gate for lost ones);
* :attr:`Step.LAST_RESORT`: any overlap, with the guards of step 6.

A stage pairs a track only with detections of the class it shows, unless it runs
``across_classes`` (steps 2 and 3 with ``tracking.class_agnostic``): there a pair of
another class counts ``_OTHER_CLASS`` of its overlap.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from rtseg.track.geometry import (
    MaskCrop,
    area,
    box_iou,
    crop_iou,
    intersection,
    log_size,
    nonzero,
    share_inside,
    size_misfit,
)
from rtseg.track.motion import Motion

# Assignment gain of a pair = overlap above the step's threshold + _SCORE_BONUS * detection
# score (+ _SEEN_BONUS for a track matched last frame): tie-breakers in favour of the confident
# detection, and of continuity. A lost track's prediction can sit right on top of the object in
# front of it (it is hidden there), and without the second bonus it takes that object's
# detection whenever it fits a little better than the track that has followed it every frame.
_SCORE_BONUS = 0.2
_SEEN_BONUS = 0.1
# The continuity bonus goes only against tracks missed for more than _DRIFT_MISSES frames: a track
# missed for one frame (its object suppressed by the detector's NMS under a neighbour, or simply
# missed) has not drifted, and giving its detection to the neighbour's track swaps two objects
# that cross (the checking scenes of rtseg.offline.check_scenes; docs/tracking.md).
_DRIFT_MISSES = 1
# Step 4: least share of a leftover detection's area inside the predicted box of a track
# matched last frame, and largest |log(size ratio)| of the two on the axis where they agree
# best: an object sliding behind something keeps its size along the other axis, while a
# sliver short on both axes is more often a piece of a neighbour hidden behind the track's
# object (whose own lost track should find it in step 5).
_INSIDE_FALLBACK = 0.6
_SLIVER_SIZE = 0.25
# Step 5 (finding lost tracks again): largest squared Mahalanobis distance of the centre
# (9.2: the 99% quantile of chi-square with 2 degrees of freedom), and largest
# |log(size ratio)| on the axes where the detection is not cut short.
_REFIND_GATE = 9.2
_REFIND_SIZE = 0.15
_REFIND_RATIO = (math.exp(-_REFIND_SIZE), math.exp(_REFIND_SIZE))
# Fragments: a detection with at least _NESTED of its area inside another of the same class
# at least 1 / _NESTED_AREA times its area is nested in it. Deciding which of the two is a
# track's object, a box larger than the track by more than detector noise (_GROWTH_TOLERANCE,
# in log size) counts _GROWTH_MISFIT times as far off as one as much smaller: occlusion only
# ever shrinks an object's box, so a box that contains the prediction with room to spare is
# clutter or a neighbour more often than the object.
_NESTED = 0.8
_NESTED_AREA = 0.9
_GROWTH_TOLERANCE = 0.1
_GROWTH_MISFIT = 3.0
# Step 6 (last resort): largest |log(size ratio)| of a detection and a track's predicted box
# on the axis where they agree best. Occlusion cuts an object's box mostly from one side,
# so one axis keeps the object's size; a fragment is usually shorter on both.
_LAST_RESORT_SIZE = 0.1
# Steps 2 and 3 with tracking.class_agnostic: a pair of different classes counts this share of its
# overlap. A flickering class then never costs a track its object, but of two objects crossing, the
# one of the track's class wins a close call (with the trained model of scripts/eval_pipeline.py,
# IDF1 0.763 at 1.0 against 0.835 at 0.8 on seeds 0-2; docs/tracking.md).
_OTHER_CLASS = 0.8


class Step(enum.Enum):
    """The assignments of one update, in the order they run (value: the step's number)."""

    HIGH_SCORE = 2  # confirmed tracks take high-score detections (low ones compete, with low_score_claims)
    LOW_SCORE = 3  # confirmed tracks still free take low-score detections
    SLIVER_OR_REFIND = 4  # steps 4 and 5: slivers inside a track's prediction; lost tracks found again
    LAST_RESORT = 6  # a track seen last frame takes a lone high-score detection it overlaps at all
    TENTATIVE = 7  # tentative tracks take high-score detections still free


@dataclass(frozen=True)
class Stage:
    """One step as run on one frame: who takes part, and whose pairs are kept."""

    step: Step
    tracks: np.ndarray  # (T,) bool: tracks taking part
    competing: np.ndarray  # (N,) bool: detections taking part in the assignment
    kept: np.ndarray  # (N,) bool: detections whose pairs are kept (the rest only compete)
    threshold: float = 0.0  # least overlap, for the overlap steps
    across_classes: bool = False  # whether a track may take a detection of another class


@dataclass(frozen=True)
class Pairing:
    """Everything the steps score pairs with, for one frame."""

    motion: Motion
    overlap: np.ndarray  # (T, N) track-detection overlap, see frame_overlap
    predicted: np.ndarray  # (T, 4) predicted xyxy track boxes
    boxes: np.ndarray  # (N, 4) xyxy detections
    bonus: np.ndarray  # (N,) _SCORE_BONUS * score
    seen: np.ndarray  # (T,) bool: matched last frame
    misses: np.ndarray  # (T,) frames missed in a row until last frame (0: seen)
    fragment: np.ndarray  # (N,) bool: nested in a more confident detection
    same_class: np.ndarray  # (T, N) bool: the detection has the class the track shows


def score_bonus(scores: np.ndarray) -> np.ndarray:
    """Per-detection assignment bonus: of two detections fitting a track equally, the confident one wins."""
    return _SCORE_BONUS * scores


def associate(pairing: Pairing, stages: Sequence[Stage]) -> tuple[np.ndarray, np.ndarray]:
    """Run ``stages`` in order; return the track index each detection joined (-1: none) and the free tracks."""
    tracks, n = len(pairing.predicted), len(pairing.boxes)
    track_of = np.full(n, -1, np.int64)
    free_track = np.ones(tracks, bool)
    free_det = np.ones(n, bool)
    for stage in stages:
        t_idx = (stage.tracks & free_track).nonzero()[0]
        d_idx = (stage.competing & free_det).nonzero()[0]
        if not (len(t_idx) and len(d_idx)):
            continue
        rows, cols = _pairs(pairing, stage, t_idx, d_idx)
        keep = stage.kept[d_idx[cols]]
        dets, trks = d_idx[cols[keep]], t_idx[rows[keep]]
        track_of[dets] = trks
        free_det[dets] = False
        free_track[trks] = False
    return track_of, free_track


def _pairs(pairing: Pairing, stage: Stage, t_idx: np.ndarray, d_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns (into ``t_idx``, ``d_idx``) of the pairs ``stage`` makes."""
    bonus: np.ndarray | None = None
    if stage.step is Step.SLIVER_OR_REFIND:
        sub, threshold = _sliver_or_refind(pairing, t_idx, d_idx), 0.0
    elif stage.step is Step.LAST_RESORT:
        sub, threshold = _last_resort(pairing.overlap, t_idx, pairing.predicted[t_idx], pairing.boxes[d_idx], d_idx), 0.0
        bonus = pairing.bonus[d_idx]
    else:
        sub, threshold = pairing.overlap[t_idx[:, None], d_idx], stage.threshold  # a copy: the frame's stays
        bonus = pairing.bonus[d_idx][None, :] + _SEEN_BONUS * (pairing.misses[t_idx, None] <= _DRIFT_MISSES)
    other_class = ~pairing.same_class[t_idx[:, None], d_idx]
    sub[other_class] *= _OTHER_CLASS if stage.across_classes else 0.0
    return assign(sub, threshold, bonus)


def assign(overlap: np.ndarray, threshold: float, bonus: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one pairs (rows, cols) of ``overlap`` maximising the total gain.

    Only pairs with ``overlap >= threshold`` (and > 0) can be made. A pair gains its
    overlap above the threshold, plus ``bonus`` (per column, or per pair), as with
    ByteTrack's cost limit: a pair that barely passes gains almost nothing, so two weak
    pairs never outweigh one good one (maximising the plain overlap would hand a
    track's own detection to a lost neighbour whenever the track can take some other
    box at the threshold).
    """
    # Pairs below the threshold count as zero so that they cannot steer the assignment;
    # boxes that do not overlap at all never match, even with a threshold of 0.
    ok = overlap >= threshold if threshold > 0 else overlap > 0
    gain = overlap - max(threshold, 0.0)
    usable = np.where(ok, gain if bonus is None else gain + bonus, 0.0)
    rows, cols = linear_sum_assignment(usable, maximize=True)
    keep = ok[rows, cols]
    return rows[keep], cols[keep]


def _sliver_or_refind(pairing: Pairing, t_idx: np.ndarray, d_idx: np.ndarray) -> np.ndarray:
    """(T, D) scores in [0, 1] for steps 4 (tracks matched last frame) and 5 (lost tracks), 0: no pair."""
    seen, predicted, boxes = pairing.seen[t_idx], pairing.predicted[t_idx], pairing.boxes[d_idx]
    sub = np.zeros((len(t_idx), len(d_idx)))
    if seen.any():
        share = share_inside(predicted[seen], boxes)
        sliver = size_misfit(predicted[seen], boxes) < _SLIVER_SIZE
        sub[seen] = np.where((share >= _INSIDE_FALLBACK) & sliver, share, 0.0)
    if not seen.all():
        lost = ~seen
        refind = _refind_score(pairing.motion, t_idx[lost], predicted[lost], boxes)
        sub[lost] = refind * (~pairing.fragment[d_idx] / _REFIND_GATE)
    return sub


def _refind_score(motion: Motion, t_idx: np.ndarray, predicted: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(T, D) _REFIND_GATE minus the squared Mahalanobis distance of each detection from each
    track (``t_idx``, predicted xyxy boxes), or 0 where out of the gate or of another size."""
    distance, cut = motion.centre_distance(t_idx, predicted, boxes)
    half = (predicted[:, 2:] - predicted[:, :2])[:, None, :] / 2  # (T, 1, 2)
    det_half = (boxes[:, 2:] - boxes[:, :2]) / 2  # (D, 2)
    ratio = det_half / half
    same_size = (ratio > _REFIND_RATIO[0]) & (ratio < _REFIND_RATIO[1])
    # every axis not cut short has the track's size, and at least one axis is not cut short
    fits = (cut | same_size).all(axis=-1) & same_size.any(axis=-1) & (distance < _REFIND_GATE)
    return np.where(fits, _REFIND_GATE - distance, 0.0)


def _last_resort(overlap: np.ndarray, t_idx: np.ndarray, predicted: np.ndarray, boxes: np.ndarray,
                 d_idx: np.ndarray) -> np.ndarray:
    """(T, D) overlap of tracks ``t_idx`` (predicted xyxy boxes) and detections ``d_idx`` kept for
    step 6, 0 elsewhere: the detection overlaps no other track and has the track's size on some axis.

    ``overlap`` is the full (tracks, detections) overlap matrix of the frame.
    """
    sub = overlap[t_idx[:, None], d_idx]
    alone = np.count_nonzero(overlap[:, d_idx], axis=0) == 1
    return np.where(alone & (size_misfit(predicted, boxes) < _LAST_RESORT_SIZE), sub, 0.0)


def nested(boxes: np.ndarray, class_ids: np.ndarray, used: np.ndarray) -> np.ndarray:
    """(N, N) bool: detection i is nested in detection j (see _NESTED), both used, same class."""
    box_area = area(boxes)
    inside = ((intersection(boxes, boxes) >= _NESTED * box_area[:, None])
              & (box_area[:, None] < _NESTED_AREA * box_area[None, :]))
    pairs: np.ndarray = inside & (class_ids[:, None] == class_ids[None, :]) & used[:, None] & used[None, :]
    return pairs


def prefer_containers(overlap: np.ndarray, predicted: np.ndarray, boxes: np.ndarray, nested: np.ndarray) -> None:
    """Zero ``overlap[t, i]`` where detection i is nested in a detection j that track t also
    overlaps and whose width and height are nearer the track's (in ratio, larger counting
    ``_GROWTH_MISFIT`` times): a piece of the object the track follows, not the object."""
    inner, outer = nested.nonzero()
    if not len(inner):
        return
    size, track_size = log_size(boxes), log_size(predicted)[:, None, :]

    def misfit(detections: np.ndarray) -> np.ndarray:
        ratio = size[detections] - track_size  # (T, pairs, 2) log size ratios
        growth = np.maximum(ratio - _GROWTH_TOLERANCE, 0.0) * (_GROWTH_MISFIT - 1.0)
        total: np.ndarray = (np.abs(ratio) + growth).sum(axis=-1)
        return total

    misfit_outer, misfit_inner = misfit(outer), misfit(inner)  # (T, pairs)
    blocked = (misfit_outer < misfit_inner) & (overlap[:, outer] > 0)
    for k in nonzero(blocked.any(axis=0)):  # type: ignore[arg-type]  # numpy stub: any(axis=) may be 0-d; 2-d here
        overlap[blocked[:, k], inner[k]] = 0.0


def frame_overlap(motion: Motion, track_crops: list[MaskCrop], predicted: np.ndarray, boxes: np.ndarray,
                  same_class: np.ndarray, crops: list[MaskCrop | None], seen: np.ndarray) -> np.ndarray:
    """(tracks, detections) overlap of the predicted track boxes with detections; 0 across classes.

    ``seen``: indices of the tracks matched last frame. With ``crops`` (``match: mask_iou``)
    the overlap is that of the detection's mask with the track's last mask (``track_crops``)
    moved along with the predicted box; otherwise box IoU, where a track matched last frame
    also counts the IoU of its last detection moved on by its velocity, whichever is larger.
    """
    if crops or not len(seen):
        overlap = box_iou(predicted, boxes)
    else:
        velocity = motion.velocity[seen]
        moved = motion.last[seen] + np.concatenate([velocity, velocity], axis=1)
        both = box_iou(np.concatenate([predicted, moved]), boxes)
        overlap = both[:len(predicted)]
        overlap[seen] = np.maximum(overlap[seen], both[len(predicted):])
    overlap[~same_class] = 0.0
    if crops:
        for t, d in zip(*np.nonzero(overlap)):
            track, det = track_crops[t], crops[d]
            if det is None:  # scores below low_score: never used
                continue
            if track.area and det.area:
                dy = round(motion.box[t, 1] - track.cy)
                dx = round(motion.box[t, 0] - track.cx)
                overlap[t, d] = crop_iou(track, dy, dx, det)
            # else: an empty mask (tiny object) says nothing; the box IoU stands in for it
    return overlap
