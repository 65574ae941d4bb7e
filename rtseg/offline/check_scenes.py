"""A second scene generator, kept for checking the tracker only: never used to choose a rule or a constant.

The tuning families (:mod:`rtseg.offline.scenes`) were used to choose the tracker's rules,
so a tracker can fit them. This generator is independent of them: its own frame (640x480),
length (:data:`FRAMES`), motion model and detector, written without reusing theirs.

Motion: piecewise constant velocity. Objects move in straight lines at constant speed;
walkers now and then turn (a new heading, at once) or stop for a while and walk on, and
turn back from the frame's edges. There is no random acceleration (the tuning scenes'
model).

Families (all of one class, :data:`CHECK_SCENES`):

* ``check_head_on``: two objects of the same size meeting head-on at 4 px/frame each,
  with a vertical offset of 1 to 6 px;
* ``check_oblique``: the same, their paths 20 to 60 degrees off head-on, offset by 1 to 6 px
  where they meet;
* ``check_walkers``: a dozen walkers of random sizes, headings and speeds up to 3 px/frame,
  with random stops and turns.

Objects hide nothing (no depth, no occluders): each is ground truth in every frame in
which at least half of its box is inside the frame. The detector (:func:`detect`) adds
plain noise: box coordinates jittered by a 2 px standard deviation, 5 % of objects missed,
true detections scoring 0.6 to 0.95, and in about 3 % of frames one false positive,
person-sized, scoring 0.1 to 0.45 (below the tracker's high score). Its output then goes
through per-class NMS (:func:`rtseg.offline.scenes.class_nms`, as Mask R-CNN's own), so
where two objects overlap by more than IoU 0.5 the detector reports only one of them.
Everything is determined by the seed.
"""

from __future__ import annotations

import numpy as np

from rtseg.offline.scenes import FrameData, Scene, View, class_nms

WIDTH, HEIGHT = 640, 480
FRAMES = 120  # every checking scene is this long
IN_FRAME_MIN = 0.5  # least share of a box inside the frame for an object to be ground truth (and detectable)
CHECK_SCENES = ("check_head_on", "check_oblique", "check_walkers")

# Detector noise (fixed: this generator's one noise model).
JITTER = 2.0  # px, per box coordinate
MISS = 0.05  # chance an object is missed in a frame
TRUE_SCORES = (0.6, 0.95)
FALSE_POSITIVE_FRAMES = 0.03  # chance a frame has one false positive
FALSE_SCORES = (0.1, 0.45)

# Motion.
MEETING_SPEED = 4.0  # px/frame, each object of a crossing pair
OFFSET = (1.0, 6.0)  # px, how far apart the two paths pass
OBLIQUE = (20.0, 60.0)  # degrees off head-on
WALKERS = 12
WALKING_SPEED = (0.3, 3.0)
TURN_CHANCE = 0.02  # per walker and frame: a new heading
TURN = (30.0, 150.0)  # degrees, either way
STOP_CHANCE = 0.01  # per walker and frame: a stop
STOP_FRAMES = (5, 25)


def make_check_scene(name: str, seed: int) -> Scene:
    """One of :data:`CHECK_SCENES`, :data:`FRAMES` frames long, fully determined by its arguments."""
    if name not in CHECK_SCENES:
        raise ValueError(f"unknown checking scene {name!r}: one of {', '.join(CHECK_SCENES)}")
    rng = np.random.default_rng([seed, 7919, CHECK_SCENES.index(name)])
    if name == "check_walkers":
        boxes = _walkers(rng)
    else:
        boxes = _crossing_pair(rng, oblique=name == "check_oblique")
    count = boxes.shape[1]
    scene = Scene(name, boxes, np.zeros(count, np.int64), np.zeros(count), np.zeros((0, 4)))
    scene.views = [_view(frame) for frame in boxes]
    return scene


def _person(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 2) widths and heights of upright objects: 20-40 px wide, 2 to 2.5 times as tall."""
    w = rng.uniform(20, 40, n)
    return np.stack([w, w * rng.uniform(2.0, 2.5, n)], axis=1)


def _crossing_pair(rng: np.random.Generator, oblique: bool) -> np.ndarray:
    """(FRAMES, 2, 4) two objects of one size on straight paths meeting near the frame's middle."""
    size = _person(rng, 1)[0]
    meet_t = rng.uniform(50, 70)
    meet = np.array([WIDTH / 2 + rng.uniform(-40, 40), HEIGHT / 2 + rng.uniform(-60, 60)])
    first = rng.uniform(-np.pi / 9, np.pi / 9)  # mostly left to right
    off_head_on = np.radians(rng.uniform(*OBLIQUE)) * rng.choice([-1, 1]) if oblique else 0.0
    headings = np.array([first, first + np.pi + off_head_on])
    velocity = MEETING_SPEED * np.stack([np.cos(headings), np.sin(headings)], axis=1)
    # The paths pass OFFSET apart: each is shifted half of it across the first one's heading.
    across = np.array([-np.sin(first), np.cos(first)]) * rng.uniform(*OFFSET) * rng.choice([-1, 1]) / 2
    at_meeting = meet + np.stack([across, -across])
    t = np.arange(FRAMES, dtype=float)[:, None, None]
    centre = at_meeting[None] + (t - meet_t) * velocity[None]
    return np.concatenate([centre - size / 2, centre + size / 2], axis=2)


def _walkers(rng: np.random.Generator) -> np.ndarray:
    """(FRAMES, WALKERS, 4) walkers at constant velocity between random turns and stops, turning back at the edges."""
    size = _person(rng, WALKERS)
    half = size / 2
    lo, hi = half, np.array([WIDTH, HEIGHT]) - half
    centre = rng.uniform(lo, hi)
    speed = rng.uniform(*WALKING_SPEED, WALKERS)
    heading = rng.uniform(0, 2 * np.pi, WALKERS)
    stopped = np.zeros(WALKERS, int)  # frames left standing
    out = np.empty((FRAMES, WALKERS, 4))
    for t in range(FRAMES):
        turn = rng.random(WALKERS) < TURN_CHANCE
        heading[turn] += np.radians(rng.uniform(*TURN, turn.sum())) * rng.choice([-1, 1], turn.sum())
        stop = (stopped == 0) & (rng.random(WALKERS) < STOP_CHANCE)
        stopped[stop] = rng.integers(*STOP_FRAMES, stop.sum())
        moving = stopped == 0
        step = speed[:, None] * np.stack([np.cos(heading), np.sin(heading)], axis=1) * moving[:, None]
        centre += step
        stopped[~moving] -= 1
        # At an edge the walker turns back along that axis (its heading is mirrored).
        for axis in (0, 1):
            outside = (centre[:, axis] < lo[:, axis]) | (centre[:, axis] > hi[:, axis])
            centre[outside, axis] = np.clip(centre[outside, axis], lo[outside, axis], hi[outside, axis])
            heading[outside] = np.pi - heading[outside] if axis == 0 else -heading[outside]
        out[t, :, :2], out[t, :, 2:] = centre - half, centre + half
    return out


def _view(boxes: np.ndarray) -> View:
    """What can be seen of one frame's objects: the part of each box inside the frame."""
    inside = np.clip(boxes, 0, [WIDTH, HEIGHT, WIDTH, HEIGHT])
    share = (np.prod(inside[:, 2:] - inside[:, :2], axis=1).clip(0)
             / np.prod(boxes[:, 2:] - boxes[:, :2], axis=1))
    alive = np.flatnonzero(share > 0)
    fraction = np.where(share[alive] >= IN_FRAME_MIN, 1.0, 0.0)  # ground truth (View.ground_truth) or not
    return View(alive, fraction, inside[alive])


def detect(scene: Scene, t: int, rng: np.random.Generator) -> FrameData:
    """Ground truth and simulated detections of frame ``t`` of a checking scene (see the module docstring)."""
    view = scene.views[t]
    truth = view.ground_truth
    gt_objects, gt_boxes = view.alive[truth], view.visible[truth]
    found = rng.random(len(gt_objects)) >= MISS
    objects = gt_objects[found]
    boxes = gt_boxes[found] + rng.normal(0.0, JITTER, (len(objects), 4))
    scores = rng.uniform(*TRUE_SCORES, len(objects))
    if rng.random() < FALSE_POSITIVE_FRAMES:
        wh = _person(rng, 1)
        lt = rng.uniform(0, 1, (1, 2)) * ([WIDTH, HEIGHT] - wh)
        boxes = np.concatenate([boxes, np.concatenate([lt, lt + wh], axis=1)])
        scores = np.append(scores, rng.uniform(*FALSE_SCORES))
        objects = np.append(objects, -1)
    boxes = np.clip(boxes, 0, [WIDTH, HEIGHT, WIDTH, HEIGHT])
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    classes = np.zeros(len(boxes), np.int64)
    keep = class_nms(boxes, scores, classes)
    return FrameData(gt_objects, gt_boxes, boxes[keep].astype(np.float32), scores[keep].astype(np.float32),
                     classes[keep], objects[keep], None)
