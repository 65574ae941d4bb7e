"""The tracker's motion model: a constant-velocity Kalman filter per track, all tracks stacked.

Why a Kalman filter rather than a plain velocity estimate: its gain starts high (a new
track's velocity is unknown, so early detections are trusted) and settles as evidence
accumulates, so velocities are usable after a few frames yet smooth out box jitter; that
prediction is what lets a track be found again after a gap of up to ``max_age`` frames
and keeps crossing objects apart. The state is the box centre with its velocity, and the
box size as a slow random walk: a size velocity mostly learns the shrinking of boxes as
objects slide behind something and then extrapolates it through the occlusion, so it is
left out. Boxes cut short by occlusion are completed (:func:`untruncate`) and move the
track and its velocity much less than whole boxes do (``_CUT_NOISE``).
"""

from __future__ import annotations

import numpy as np

from rtseg.track.geometry import cxcywh_to_xyxy, xyxy_to_cxcywh

# Kalman noise (standard deviations per frame), as fractions of the box's own width (x)
# or height (y) so that one tuning serves near and far objects. Measurement, centre and
# initial-velocity values are those of SORT/DeepSORT/ByteTrack; the velocity noise is
# half theirs (steadier velocities carry tracks further through occlusions), and the
# size has no velocity at all.
_STD_MEASUREMENT = 1.0 / 20.0  # detector noise on centre and size
_STD_CENTRE = 1.0 / 20.0  # centre motion the velocity does not explain
_STD_SIZE = 1.0 / 100.0  # size drift: sizes change slowly in video
_STD_VELOCITY = 1.0 / 320.0  # change of the centre velocity
_STD_INIT_VELOCITY = 1.0 / 16.0  # a new track's velocity is unknown: wide prior
# A fast object turns by more pixels per frame than a box-relative velocity noise allows, and
# its track then loses it (the fast family of scripts/eval_tracking.py: 10-25 px/frame). A track
# seen last frame gets extra velocity noise of _STD_MANOEUVRE * speed * (speed / size) ** 2 per
# axis: the cube keeps it negligible at walking speeds, where steady velocities carry tracks
# through occlusions; a track not seen coasts on its velocity as before.
_STD_MANOEUVRE = 1.0

# Uncertainty of a track, per axis (x, y), in Motion.var (T, 4, 2): the covariance of
# (centre, velocity) and the variance of the size. Nothing couples the axes, or centre and
# size, in this model, so the 6-state Kalman filter (cx, cy, w, h, vx, vy) splits exactly
# into these small filters, updated in closed form without matrix algebra.
_CC, _CV, _VV, _SS = range(4)
_FLOATS = 18  # floats per track: box 4, velocity 2, uncertainty 8, last detection 4

# A detection this much narrower (or shorter) than its track's prediction shows only part
# of the object; see untruncate.
_TRUNCATION = 0.15
# Along an axis where the detection is cut short, which side is the object's own edge is a
# guess (see untruncate); a wrong guess drags the track, and above all its velocity, after
# the occluder's edge, which loses the object for good once it is fully hidden. So there
# the measurement counts as this many times noisier (variance) and moves the velocity
# this fraction as much: the track coasts on its velocity while partly hidden.
_CUT_NOISE = 25.0
_CUT_VELOCITY_GAIN = 0.2


def untruncate(predicted: np.ndarray, measured: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Measured boxes with truncated sides restored to the predicted extent, and where (M, 2) they were cut.

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
        return measured, cut
    keep_lo = np.abs(lo - predicted[:, :2]) <= np.abs(hi - predicted[:, 2:])
    return np.concatenate([np.where(cut & ~keep_lo, hi - size, lo), np.where(cut & keep_lo, lo + size, hi)], axis=1), cut


class Motion:
    """Kalman state of every track, one row each in one array, so that adding and dropping tracks is one step.

    Row order is the tracker's track order; the properties name the columns (views,
    valid until tracks are added or dropped).
    """

    def __init__(self) -> None:
        self.rows = np.zeros((0, _FLOATS))

    box = property(lambda self: self.rows[:, 0:4], doc="cx, cy, w, h")
    velocity = property(lambda self: self.rows[:, 4:6], doc="of the centre, pixels per frame")
    var = property(lambda self: self.rows[:, 6:14].reshape(-1, 4, 2), doc="see _CC, _CV, _VV, _SS")
    last = property(lambda self: self.rows[:, 14:18], doc="last matched detection box, xyxy")

    def __len__(self) -> int:
        return len(self.rows)

    def predicted_boxes(self) -> np.ndarray:
        """(T, 4) xyxy boxes of the current (predicted) state."""
        return cxcywh_to_xyxy(self.rows[:, 0:4])

    def predict(self, seen: np.ndarray) -> None:
        """Move every track one frame ahead: centre by its velocity, uncertainty grown (more for
        the fast tracks among those ``seen`` last frame, see _STD_MANOEUVRE)."""
        wh, var, velocity = self.box[:, 2:], self.var, self.velocity
        manoeuvre = _STD_MANOEUVRE * velocity * (velocity / np.maximum(wh, 1.0)) ** 2 * seen[:, None]
        self.box[:, :2] += velocity
        var[:, _CC] += 2 * var[:, _CV] + var[:, _VV] + (_STD_CENTRE * wh) ** 2
        var[:, _CV] += var[:, _VV]
        var[:, _VV] += (_STD_VELOCITY * wh) ** 2 + manoeuvre ** 2
        var[:, _SS] += (_STD_SIZE * wh) ** 2

    def correct(self, tracks: np.ndarray, predicted: np.ndarray, boxes: np.ndarray) -> None:
        """Kalman measurement update of ``tracks`` (predicted xyxy boxes) with their matched ``boxes``."""
        rows = self.rows[tracks]
        box, velocity, var = rows[:, 0:4], rows[:, 4:6], rows[:, 6:14].reshape(-1, 4, 2)
        completed, cut = untruncate(predicted, boxes)
        z = xyxy_to_cxcywh(completed)
        noise = (_STD_MEASUREMENT * box[:, 2:]) ** 2  # measurement variance, centre and size alike
        centre_noise = np.where(cut, _CUT_NOISE * noise, noise)
        gain_centre = var[:, _CC] / (var[:, _CC] + centre_noise)
        gain_velocity = var[:, _CV] / (var[:, _CC] + centre_noise) * np.where(cut, _CUT_VELOCITY_GAIN, 1.0)
        gain_size = var[:, _SS] / (var[:, _SS] + noise)
        innovation = z[:, :2] - box[:, :2]
        box[:, :2] += gain_centre * innovation
        velocity += gain_velocity * innovation
        box[:, 2:] += gain_size * (z[:, 2:] - box[:, 2:])
        var[:, _VV] -= gain_velocity * var[:, _CV]
        var[:, _CV] *= 1 - gain_centre
        var[:, _CC] *= 1 - gain_centre
        var[:, _SS] *= 1 - gain_size
        rows[:, 14:18] = boxes
        self.rows[tracks] = rows

    def add(self, boxes: np.ndarray) -> None:
        """Append one new track per xyxy box: at the box, velocity unknown."""
        rows = np.zeros((len(boxes), _FLOATS))
        rows[:, 0:4] = z = xyxy_to_cxcywh(boxes)
        var = rows[:, 6:14].reshape(-1, 4, 2)
        var[:, _CC] = var[:, _SS] = (2 * _STD_MEASUREMENT * z[:, 2:]) ** 2
        var[:, _VV] = (_STD_INIT_VELOCITY * z[:, 2:]) ** 2
        rows[:, 14:18] = boxes
        self.rows = np.concatenate([self.rows, rows])

    def select(self, keep: np.ndarray) -> None:
        """Keep only the tracks where ``keep`` is true."""
        self.rows = self.rows[keep]

    def centre_distance(self, t_idx: np.ndarray, predicted: np.ndarray,
                        boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(T, D) squared Mahalanobis distance of each detection's centre from each track's
        (``t_idx``, predicted xyxy boxes), and (T, D, 2) where the detection is cut short.

        Along an axis where the detection is cut short, its centre is taken as it would be
        completed to the predicted size from either side, whichever is nearer.
        """
        half = (predicted[:, 2:] - predicted[:, :2])[:, None, :] / 2  # (T, 1, 2)
        centre = (predicted[:, 2:] + predicted[:, :2])[:, None, :] / 2
        det_half = (boxes[:, 2:] - boxes[:, :2]) / 2  # (D, 2)
        offset = np.abs((boxes[:, 2:] + boxes[:, :2]) / 2 - centre)  # (T, D, 2)
        shortfall = half - det_half  # completing from one side moves the centre by this
        cut = shortfall > _TRUNCATION * half
        offset = np.where(cut, np.abs(offset - shortfall), offset)
        var = self.var[t_idx, _CC] + (_STD_MEASUREMENT * self.box[t_idx, 2:]) ** 2
        return (offset ** 2 / var[:, None, :]).sum(axis=-1), cut
