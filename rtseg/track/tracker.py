"""Multi-object tracking: a stable identity for each detected instance across frames.

Interface (plain numpy; usable without the rest of rtseg)::

    tracker = Tracker(TrackingConfig())
    ids = tracker.update(boxes, scores, class_ids, masks, looks)   # once per frame, in frame order
    tracker.reset()                                          # new video, scene cut

``boxes`` is (N, 4) xyxy in pixels, ``scores`` (N,), ``class_ids`` (N,) integers and
``masks`` (N, H, W) bool, needed only with ``match: mask_iou`` (ignored otherwise),
``looks`` (N, D) unit vectors, needed only with ``appearance``
(:func:`rtseg.track.appearance.colour_histograms`).
``update`` returns an (N,) int64 array: the id of the confirmed track each detection
belongs to, or -1 where it belongs to none (yet). Ids start at 1, are given in
order of confirmation and never reused, so they are dense and deterministic: the
same sequence of inputs always yields the same ids. Detections scoring below
``low_score`` are ignored (-1). ``tracker.labels()`` then gives the class and score
to show for each detection: its track's (:mod:`rtseg.track.votes`: the class its
recent detections vote for, and a fading mean score), or its own where it has no
confirmed track. ``track_detections`` does all this for a
:class:`~rtseg.core.structures.Detections` record, filling its ``track_ids`` and
replacing the class and score of tracked detections with their track's.
``tracking.enabled`` is for the pipeline to read; a Tracker always tracks.

Classes: with ``class_agnostic`` (the default) steps 2 and 3 below pair detections
with tracks whatever their class, so an object whose detected class flickers keeps
its track (a pair of another class counts a little less, so that of two objects
crossing, the one of the track's class wins a close call); steps 4 to 7 still keep
to the class a track shows: they pair on weaker evidence than a good overlap (or,
for tentative tracks, too little history), and there a class that differs is more
often another object's. Otherwise (``class_agnostic:
false``) a track only ever takes detections of its own class. Either way the fragment
rules compare detections of one class only: a small object of another class in front
of a large one is no fragment of it.

One ``update``, in the manner of ByteTrack (Zhang et al., 2022), with additions for
the two things that cost identities in crowded video, partly hidden objects and
fragment detections (a second, smaller box on part of an object):

1. Every track's box is predicted one frame ahead by its motion model.
2. Detections scoring ``>= high_score`` are assigned to confirmed tracks, whether
   seen last frame or lost for up to ``max_age`` frames. With ``low_score_claims``
   (the default) the low-score detections take part in this assignment too, but
   only its high-score pairs are kept: a track whose best fit is a low-score
   detection is held over to step 3 rather than handed to a higher-scoring
   neighbour or fragment. Strict ByteTrack order (``low_score_claims: false``)
   gives such tracks away whenever their own object scores low, which is exactly
   when it is partly hidden behind that neighbour.
3. Detections scoring in ``[low_score, high_score)`` are assigned to the confirmed
   tracks still free. Low scores are typical of partly occluded objects, so this
   keeps a track alive through an occlusion without letting clutter start tracks.
4. A track matched last frame and still free may take a leftover detection lying
   mostly (``_INSIDE_FALLBACK`` in :mod:`rtseg.track.association`, like the other constants named here) inside its predicted box and keeping the track's
   size along one axis (``_SLIVER_SIZE``): a sliver of an object sliding behind
   something overlaps the whole predicted box too little for IoU.
5. A lost track (missed last frame) still free may take a leftover detection whose
   centre, completed to the track's size where it is cut short, lies within the
   track's own Kalman uncertainty (Mahalanobis distance, ``_REFIND_GATE``) and
   whose uncut side has the track's size. After an occlusion the predicted box
   may be off by more than its width, the IoU is then zero, but the uncertainty
   has grown with the time hidden; this finds the object again where IoU cannot.
   Steps 4 and 5 are one assignment, each pair scored by its own step's measure.
6. Last resort: a track matched last frame and still free may take a leftover
   high-score detection (not a fragment) that overlaps it at all, if no other
   track overlaps that detection and it has the track's size on at least one axis
   (``_LAST_RESORT_SIZE``). An object that turns round, or whose visible part jumps
   as something slides across it, can leave its prediction so far behind that the
   steps above fail; its detection would then start a new track, and the object
   would lose its colour (grey, then a new id) while detected every frame. The
   guards keep a track whose own object was missed this frame from taking clutter,
   a fragment of that object (mostly shorter on both axes) or a neighbour.
7. High-score detections still free are assigned to tentative tracks (not yet
   confirmed). They come last so that a spurious new track can never take a
   detection away from an established identity.
8. High-score detections still free start tentative tracks, except those lying
   inside a higher-scoring detection of the same class (fragments). A tentative
   track missed once is deleted; one matched in ``min_hits`` consecutive frames
   is confirmed and given the next id, so one-frame false positives never get an
   id. A confirmed track missed for more than ``max_age`` frames in a row is
   deleted, which bounds the state however long the video.

Each assignment is optimal (``scipy.optimize.linear_sum_assignment``); those of
steps 2, 3, 6 and 7 maximise the total overlap of predicted track boxes and
detections above the stage's threshold (ByteTrack's cost limit: two pairs that
barely pass never outweigh one good pair; step 6 has no threshold) plus two small
bonuses: ``_SCORE_BONUS`` times the score (of two detections fitting a track about
equally well, the confident one wins) and, in steps 2, 3 and 7, ``_SEEN_BONUS`` for a
track matched last frame against one missed for more than ``_DRIFT_MISSES`` frames (of
two tracks fitting a detection about equally well, the one that has followed it wins
over a lost one whose prediction drifted onto it; one frame missed is no drift; step
6 takes only such tracks, so there it would change nothing); pairs overlapping less
than the stage's threshold (or, unless ``class_agnostic``, of different classes) never match. The
overlap is box IoU, or with ``match: mask_iou`` the IoU of the detection's mask with
the track's last mask moved along with the predicted box. With box IoU, a track
matched last frame also counts the IoU of its last detection moved on by the track's
velocity, whichever is larger: while an object is partly hidden, its detections look
like each other more than like the whole predicted box. With ``appearance``, the
overlap of a pair that overlaps at least ``appearance_min_iou`` and looks alike is
raised as BoT-SORT fuses its re-identification distance (:mod:`rtseg.track.appearance`).

Fragments: where a detection lies inside a larger one of the same class
(``_NESTED``), a track whose size is nearer the larger box's may not take the
smaller one. A fragment then cannot take over the track of the object it is a
piece of, while a small object in front of a large one keeps its own track,
whose size is its own. Sizes are compared side by side (the sum of the width and
height misfits, in ratio), not by area: a box too wide and too short can have the
track's area, and a piece of a neighbour overlapping the object is often such a box.
A side longer than the track's (beyond detector noise) counts ``_GROWTH_MISFIT`` times:
occlusion only shrinks boxes, so when the sliver of a partly hidden object lies inside
a clutter box that dwarfs the track, the sliver is the object.

The parts: :mod:`rtseg.track.motion` (the Kalman state, predict and correct,
completing boxes cut short), :mod:`rtseg.track.association` (the steps above, each a
named ``Step``, and their measures), :mod:`rtseg.track.geometry` (box and mask
overlaps). The tuning behind the constants is in docs/tracking.md.
"""

from __future__ import annotations

from typing import SupportsIndex

import numpy as np

from rtseg.core.config import TrackingConfig
from rtseg.core.errors import ConfigError
from rtseg.core.structures import Detections
from rtseg.track import appearance
from rtseg.track.association import (
    Pairing,
    Stage,
    Step,
    associate,
    frame_overlap,
    nested,
    prefer_containers,
    score_bonus,
)
from rtseg.track.geometry import MaskCrop, nonzero
from rtseg.track.motion import Motion
from rtseg.track.votes import ClassVotes


class Tracker:
    """ByteTrack-style tracker with a constant-velocity Kalman filter per track (see the module docstring).

    All tracks live in stacked arrays (the motion state in :class:`Motion`, the
    bookkeeping in one integer array), so one frame costs a few numpy calls whatever
    the number of objects.
    """

    def __init__(self, config: TrackingConfig) -> None:
        if config.low_score > config.high_score:
            raise ConfigError(f"tracking.low_score ({config.low_score}) is above tracking.high_score ({config.high_score})")
        self.config = config
        self.reset()

    def reset(self) -> None:
        """Forget every track and restart ids at 1 (a new video or a scene cut)."""
        # One row per track in each, in the same order; the properties below name the columns.
        self._motion = Motion()
        self._votes = ClassVotes(self.config.vote_half_life)
        self._ints = np.zeros((0, 4), np.int64)
        self._crops: list[MaskCrop] = []  # last mask of each track, with match: mask_iou only
        self._looks = np.zeros((0, appearance.SIZE), np.float32)  # appearance of each track, with appearance only
        self._next_id = 1
        self._shown = (np.zeros(0, np.int64), np.zeros(0))  # see labels()

    # Views of the track arrays (valid until tracks are added or dropped).
    _box = property(lambda self: self._motion.box, doc="cx, cy, w, h")
    _velocity = property(lambda self: self._motion.velocity, doc="of the centre, pixels per frame")
    _var = property(lambda self: self._motion.var, doc="Kalman uncertainty, see rtseg.track.motion")
    _class = property(lambda self: self._ints[:, 0], doc="the class the track shows (its vote)")
    _id = property(lambda self: self._ints[:, 1], doc="-1 while tentative")
    _hits = property(lambda self: self._ints[:, 2], doc="frames matched in a row (read only while tentative)")
    _misses = property(lambda self: self._ints[:, 3], doc="consecutive frames missed")

    def __len__(self) -> int:
        """Number of tracks held, tentative and lost ones included."""
        return len(self._ints)

    @property
    def ids_issued(self) -> int:
        """Track ids given out since the last ``reset`` (confirmed tracks only get one)."""
        return self._next_id - 1

    def state(self) -> dict[str, np.ndarray]:
        """Every per-track array by name, one row per track held (for memory checks and diagnostics)."""
        return {"box": self._box, "velocity": self._velocity, "var": self._var, "class": self._class,
                "id": self._id, "hits": self._hits, "misses": self._misses, "looks": self._looks}

    def predicted_centres(self) -> np.ndarray:
        """(N, 2) centre of each track one frame on, as the motion model predicts it."""
        centres: np.ndarray = self._box[:, :2] + self._velocity
        return centres

    def labels(self) -> tuple[np.ndarray, np.ndarray]:
        """(class_ids, scores) to show for each detection of the last ``update``: its confirmed
        track's voted class and fading mean score, or the detection's own where it has none."""
        return self._shown

    def update(self, boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray,
               masks: np.ndarray | None = None, looks: np.ndarray | None = None) -> np.ndarray:
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
        use_looks = self.config.appearance
        if use_looks and (looks is None or len(looks) != n):
            raise ValueError("appearance needs one appearance vector per detection")
        if not use_looks:
            looks = None  # unused without appearance; from here ``looks is not None`` is ``use_looks``

        cfg = self.config
        seen = self._misses == 0  # matched last frame
        self._motion.predict(seen)
        high = scores >= cfg.high_score
        low = (scores >= cfg.low_score) & ~high
        used = high | low
        crops: list[MaskCrop | None] = []
        if use_masks and masks is not None:  # masks is never None with use_masks (checked above)
            crops = [MaskCrop(masks[i], boxes[i]) if used[i] else None for i in range(n)]
        tracks = len(self._ints)
        track_class, track_id, track_misses = self._ints[:, 0], self._ints[:, 1], self._ints[:, 3]
        fragment = np.zeros(n, bool)
        if n > 1:
            nest = nested(boxes, class_ids, used)
            # A piece of a more confident detection of the same class never starts a track.
            (nest & (scores[None, :] > scores[:, None])).any(axis=1, out=fragment)
        starts = high & ~fragment

        if tracks and n:
            predicted = self._motion.predicted_boxes()
            same_class = track_class[:, None] == class_ids[None, :]
            overlap = frame_overlap(self._motion, self._crops, predicted, boxes,
                                    np.ones((tracks, n), bool) if cfg.class_agnostic else same_class,
                                    crops, seen.nonzero()[0])
            if n > 1:
                prefer_containers(overlap, predicted, boxes, nest)
            if looks is not None:
                appearance.fuse(overlap, self._looks, looks, cfg.appearance_min_iou, cfg.appearance_distance)
            confirmed = track_id >= 0
            last_resort = high & ~fragment
            stages = (
                Stage(Step.HIGH_SCORE, confirmed, used if cfg.low_score_claims else high, high, cfg.iou_threshold,
                      across_classes=cfg.class_agnostic),
                Stage(Step.LOW_SCORE, confirmed, low, low, cfg.low_iou_threshold, across_classes=cfg.class_agnostic),
                Stage(Step.SLIVER_OR_REFIND, confirmed, used, used),
                Stage(Step.LAST_RESORT, confirmed & seen, last_resort, last_resort),
                Stage(Step.TENTATIVE, ~confirmed, starts, starts, cfg.iou_threshold),
            )
            pairing = Pairing(self._motion, overlap, predicted, boxes, score_bonus(scores), seen, track_misses, fragment,
                              same_class)
            track_of, free_track = associate(pairing, stages)

            matched_dets = (track_of >= 0).nonzero()[0]
            matched_tracks = track_of[matched_dets]
            if len(matched_dets):
                self._motion.correct(matched_tracks, predicted[matched_tracks], boxes[matched_dets])
                self._ints[matched_tracks, 2] += 1
                track_class[matched_tracks] = self._votes.record(
                    matched_tracks, class_ids[matched_dets], scores[matched_dets], track_class[matched_tracks])
                track_misses[matched_tracks] = 0
                if use_masks:
                    for t, d in zip(matched_tracks, matched_dets):
                        self._crops[t] = _used_crop(crops, d)
                if looks is not None:
                    self._looks[matched_tracks] = appearance.blend(self._looks[matched_tracks], looks[matched_dets])
        else:
            track_of = np.full(n, -1, np.int64)
            free_track = np.ones(tracks, bool)
            matched_dets = matched_tracks = np.zeros(0, np.int64)
        track_misses[free_track] += 1
        self._confirm()

        ids = np.full(n, -1, np.int64)
        ids[matched_dets] = track_id[matched_tracks]
        shown_class, shown_score = class_ids.copy(), scores.copy()
        labelled = track_id[matched_tracks] >= 0
        shown_class[matched_dets[labelled]] = track_class[matched_tracks[labelled]]
        shown_score[matched_dets[labelled]] = self._votes.score(matched_tracks[labelled])
        self._shown = (shown_class, shown_score)

        keep = np.where(track_id >= 0, track_misses <= cfg.max_age, track_misses == 0)
        if not keep.all():
            self._select(keep)
        new = (starts & (track_of < 0)).nonzero()[0]
        if len(new):
            first = len(self._ints)
            self._start(boxes[new], class_ids[new], scores[new],
                        [_used_crop(crops, d) for d in new] if use_masks else [],
                        looks[new] if looks is not None else None)
            self._confirm()  # with min_hits == 1 a new track is confirmed at once
            ids[new] = self._ints[first:, 1]
        return ids

    def _confirm(self) -> None:
        """Give ids, in track order, to tentative tracks that reached ``min_hits``."""
        ready = nonzero((self._id < 0) & (self._hits >= self.config.min_hits))
        if len(ready):
            self._id[ready] = np.arange(self._next_id, self._next_id + len(ready))
            self._next_id += len(ready)

    def _start(self, boxes: np.ndarray, class_ids: np.ndarray, scores: np.ndarray, crops: list[MaskCrop],
               looks: np.ndarray | None) -> None:
        """Open one tentative track per detection."""
        self._motion.add(boxes)
        self._votes.add(class_ids, scores)
        ints = np.zeros((len(boxes), 4), np.int64)
        ints[:, 0], ints[:, 1], ints[:, 2] = class_ids, -1, 1
        self._ints = np.concatenate([self._ints, ints])
        self._crops.extend(crops)
        if looks is not None:  # with appearance, where every update brings looks
            self._looks = np.concatenate([self._looks, looks.astype(np.float32)])

    def _select(self, keep: np.ndarray) -> None:
        """Keep only the tracks where ``keep`` is true."""
        self._motion.select(keep)
        self._votes.select(keep)
        self._ints = self._ints[keep]
        if self.config.appearance:
            self._looks = self._looks[keep]
        self._crops = [c for c, k in zip(self._crops, keep) if k] if self._crops else []


def _used_crop(crops: list[MaskCrop | None], d: SupportsIndex) -> MaskCrop:
    """Detection ``d``'s crop: every detection a track takes or starts from is used, so has one."""
    crop = crops[d]
    assert crop is not None, "an unused detection was matched"
    return crop


def track_detections(tracker: Tracker, detections: Detections, image: np.ndarray | None = None) -> None:
    """Fill ``detections.track_ids`` for one frame (call once per frame, in frame order).

    Detections with a confirmed track take its class and score (:meth:`Tracker.labels`),
    so that labels, class colours and exports follow the track, not one frame's detection.
    ``image`` (the frame the detections were found in) is needed with ``tracking.appearance``.
    """
    cfg = tracker.config
    # Boxes need no download; masks come to the host only for a measure that reads them.
    masks = detections.host_masks() if cfg.match == "mask_iou" or cfg.appearance else None
    looks = None
    if masks is not None and cfg.appearance and image is not None:
        looks = appearance.colour_histograms(image, detections.boxes, masks)
    detections.track_ids = tracker.update(detections.boxes, detections.scores, detections.class_ids, masks, looks)
    shown_class, shown_score = tracker.labels()
    detections.class_ids = shown_class
    detections.scores = shown_score.astype(detections.scores.dtype)
