"""Multi-object tracking scores: CLEAR-MOT (MOTA, ID switches) and IDF1, plus colour stability.

Written here rather than taken from ``motmetrics``: motmetrics 1.4.0 calls
``np.asfarray``, removed in NumPy 2, and pulls in pandas; the definitions are short.
On 60 random sequences (some 500 switches) these counts matched motmetrics 1.4.0's
MOTA, IDF1, switches, false positives and misses exactly (a one-off check in a
scratch environment, feeding it IoU distances computed here).

Per frame, ground-truth objects and tracker hypotheses (each with an id and an
xyxy box) are matched one-to-one where box IoU >= ``iou_threshold`` (0.5 by
convention). As in CLEAR-MOT (Bernardin & Stiefelhagen, 2008), a ground-truth
object keeps last frame's hypothesis while they still overlap enough; the rest
are paired by optimal assignment (minimum total 1 - IoU). An ID switch is a
ground-truth object matched to a different hypothesis id than the one it was
last matched to (after any gap). MOTA = 1 - (FN + FP + IDSW) / GT.

IDF1 (Ristani et al., 2016) matches whole trajectories instead: each ground-truth
id is paired with at most one hypothesis id, globally, maximising IDTP, the number
of frames in which the paired boxes overlap enough. IDF1 = 2 IDTP / (GT + HYP).

Colour changes (:func:`count_colour_changes`, each listed by :func:`colour_changes`) score what a viewer sees: objects are
drawn in their track id's colour, so every change of the id shown for an object
that stays in view is a visible flicker, and a change after it was hidden is a
new identity.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
from scipy.optimize import linear_sum_assignment

from rtseg.track.geometry import box_iou

K = TypeVar("K", bound=Hashable)  # what identifies an object across frames
C = TypeVar("C", bound=Hashable)  # the colour drawn for an object (or the track id it is a function of)


@dataclass(frozen=True)
class MotCounts:
    """Event counts over some frames; add them up across sequences before taking ratios."""

    num_gt: int = 0  # ground-truth boxes
    num_hyp: int = 0  # hypothesis (tracker output) boxes
    fp: int = 0
    fn: int = 0
    idsw: int = 0
    idtp: int = 0  # frames matched under the global trajectory pairing

    def __add__(self, other: MotCounts) -> MotCounts:
        return MotCounts(*(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__))

    @property
    def mota(self) -> float:
        return 1.0 - (self.fn + self.fp + self.idsw) / self.num_gt if self.num_gt else float("nan")

    @property
    def idf1(self) -> float:
        total = self.num_gt + self.num_hyp
        return 2.0 * self.idtp / total if total else float("nan")


class MotAccumulator:
    """Collects one sequence frame by frame; ``counts()`` gives the totals."""

    def __init__(self, iou_threshold: float = 0.5) -> None:
        self.iou_threshold = iou_threshold
        self._last_match: dict[Hashable, Hashable] = {}  # gt id -> hypothesis id it was last matched to
        self._pair_frames: Counter[tuple[Hashable, Hashable]] = Counter()  # (gt, hyp) -> frames overlapping
        self._gt_frames: Counter[Hashable] = Counter()
        self._hyp_frames: Counter[Hashable] = Counter()
        self._num_gt = self._num_hyp = self._fp = self._fn = self._idsw = 0
        self._frames: list[tuple[list[Hashable], list[Hashable], np.ndarray]] = []  # for hota()

    def update(self, gt_ids: Iterable[Hashable], gt_boxes: np.ndarray,
               hyp_ids: Iterable[Hashable], hyp_boxes: np.ndarray) -> None:
        """Add one frame: ids (unique within the frame) with their (K, 4) xyxy boxes."""
        iou = box_iou(np.asarray(gt_boxes, np.float64).reshape(-1, 4), np.asarray(hyp_boxes, np.float64).reshape(-1, 4))
        self.update_iou(gt_ids, hyp_ids, iou)

    def update_iou(self, gt_ids: Iterable[Hashable], hyp_ids: Iterable[Hashable], iou: np.ndarray) -> None:
        """Add one frame given the (G, H) overlap of its objects and hypotheses (mask IoU, say)."""
        gt_ids, hyp_ids = list(gt_ids), list(hyp_ids)
        iou = np.asarray(iou, np.float64).reshape(len(gt_ids), len(hyp_ids))
        self._frames.append((gt_ids, hyp_ids, iou))
        ok = iou >= self.iou_threshold
        for g, h in zip(*np.nonzero(ok)):
            self._pair_frames[gt_ids[g], hyp_ids[h]] += 1
        self._gt_frames.update(gt_ids)
        self._hyp_frames.update(hyp_ids)

        hyp_index = {h: j for j, h in enumerate(hyp_ids)}
        gt_free = np.ones(len(gt_ids), bool)
        hyp_free = np.ones(len(hyp_ids), bool)
        for g, gid in enumerate(gt_ids):  # keep last frame's correspondences that still hold
            j = hyp_index.get(self._last_match.get(gid))
            if j is not None and hyp_free[j] and ok[g, j]:
                gt_free[g] = hyp_free[j] = False
        g_idx, h_idx = np.flatnonzero(gt_free), np.flatnonzero(hyp_free)
        cost = np.where(ok[np.ix_(g_idx, h_idx)], 1.0 - iou[np.ix_(g_idx, h_idx)], 1e6)
        rows, cols = linear_sum_assignment(cost)
        for r, c in zip(rows, cols):
            if cost[r, c] >= 1e6:
                continue
            gid, hid = gt_ids[g_idx[r]], hyp_ids[h_idx[c]]
            if gid in self._last_match and self._last_match[gid] != hid:
                self._idsw += 1
            self._last_match[gid] = hid
            gt_free[g_idx[r]] = hyp_free[h_idx[c]] = False
        self._num_gt += len(gt_ids)
        self._num_hyp += len(hyp_ids)
        self._fn += int(gt_free.sum())
        self._fp += int(hyp_free.sum())

    def counts(self) -> MotCounts:
        """Totals so far, IDTP from the best one-to-one pairing of whole trajectories."""
        gts, hyps = list(self._gt_frames), list(self._hyp_frames)
        idtp = 0
        if gts and hyps:
            gt_row = {g: i for i, g in enumerate(gts)}
            hyp_col = {h: j for j, h in enumerate(hyps)}
            shared = np.zeros((len(gts), len(hyps)))
            for (g, h), n in self._pair_frames.items():
                shared[gt_row[g], hyp_col[h]] = n
            rows, cols = linear_sum_assignment(shared, maximize=True)
            idtp = int(shared[rows, cols].sum())
        return MotCounts(self._num_gt, self._num_hyp, self._fp, self._fn, self._idsw, idtp)


    def hota(self) -> dict[str, float]:
        """HOTA, DetA and AssA (Luiten et al., 2021) of the frames so far, by TrackEval's own code
        (``pip install trackeval``): the mean over its 19 localisation thresholds, 0.05 to 0.95."""
        from trackeval.metrics import HOTA  # a development extra: only evaluations need it

        gt_index: dict[Hashable, int] = {}
        hyp_index: dict[Hashable, int] = {}
        data: dict[str, Any] = {"gt_ids": [], "tracker_ids": [], "similarity_scores": [],
                                "num_timesteps": len(self._frames)}
        for gt_ids, hyp_ids, iou in self._frames:
            data["gt_ids"].append(np.array([gt_index.setdefault(g, len(gt_index)) for g in gt_ids], int))
            data["tracker_ids"].append(np.array([hyp_index.setdefault(h, len(hyp_index)) for h in hyp_ids], int))
            data["similarity_scores"].append(iou)
        data.update(num_gt_dets=self._num_gt, num_tracker_dets=self._num_hyp, num_gt_ids=len(gt_index),
                    num_tracker_ids=len(hyp_index))
        result = HOTA().eval_sequence(data)
        return {key.lower(): float(np.mean(result[key])) for key in ("HOTA", "DetA", "AssA")}


@dataclass(frozen=True)
class ColourChanges:
    """How often objects change colour (track id), counted two ways; see :func:`count_colour_changes`."""

    continuous: int = 0  # within runs of frames in which the object is detected every frame
    lifetime: int = 0  # over each object's whole life: ``continuous`` plus changes across gaps

    def __add__(self, other: ColourChanges) -> ColourChanges:
        return ColourChanges(self.continuous + other.continuous, self.lifetime + other.lifetime)

    @classmethod
    def tally(cls, changes: Iterable[ColourChange[K, C]]) -> ColourChanges:
        """Count listed changes (from :func:`colour_changes`): all of them over whole lives."""
        continuous = lifetime = 0
        for change in changes:
            continuous += change.continuous
            lifetime += 1
        return cls(continuous, lifetime)


@dataclass(frozen=True)
class ColourChange(Generic[K, C]):
    """One change of the colour drawn for an object: in ``frame``, from ``before`` to ``after``.

    ``continuous``: within a run of frames in which the object is detected every frame
    (``before`` is its colour in the previous frame); otherwise it came back from a gap
    in a colour other than its last id colour (``before``).
    """

    frame: int
    key: K
    before: C
    after: C
    continuous: bool


def colour_changes(frames: Iterable[Mapping[K, C]], neutral: C) -> Iterator[ColourChange[K, C]]:
    """Every colour change of every object, in frame order; :func:`count_colour_changes` counts them.

    ``frames`` gives, per frame, the colour (or just the track id: colours are a
    function of the id) drawn for each object detected in that frame; ``neutral``
    is what a detection without a confirmed track gets (grey, or id -1). Objects
    missing from a frame were not detected in it.
    """
    last_frame: dict[K, int] = {}  # object -> last frame it was detected in
    previous: dict[K, C] = {}  # object -> colour in that frame, once its current run has started
    last_id_colour: dict[K, C] = {}  # object -> last id colour it showed, any run
    for t, current in enumerate(frames):
        for key, colour in current.items():
            if last_frame.get(key) != t - 1:  # first frame of a new run
                previous.pop(key, None)
            last_frame[key] = t
            if key in previous:  # the run has started: every change counts
                if colour != previous[key]:
                    yield ColourChange(t, key, previous[key], colour, continuous=True)
            elif colour != neutral:  # the run starts here
                before = last_id_colour.get(key)
                if before is not None and colour != before:
                    yield ColourChange(t, key, before, colour, continuous=False)
            else:  # still waiting for an id colour
                continue
            previous[key] = colour
            if colour != neutral:
                last_id_colour[key] = colour


def count_colour_changes(frames: Iterable[Mapping[K, C]], neutral: C) -> ColourChanges:
    """Colour changes of objects, while continuously detected and over their whole life.

    ``frames`` and ``neutral`` as for :func:`colour_changes`.

    * ``continuous``: an object's frames split into *runs* of consecutive frames in
      which it is detected every frame. A run starts at its first frame drawn in an
      id colour (the neutral frames before it are a new track waiting for
      confirmation, ``min_hits``). From there every frame whose colour differs from
      the previous frame's counts as one change: id A to id B counts 1; A to neutral
      and back to A counts 2 (the object lost its colour while in view).
    * ``lifetime``: ``continuous`` plus one change for each run whose first id
      colour differs from the last id colour the object showed in earlier runs,
      i.e. it came back from a miss or an occlusion in another colour.
    """
    return ColourChanges.tally(colour_changes(frames, neutral))
