"""Synthetic tracking scenes with known ground truth, and a simulated detector that sees them imperfectly.

Each scene simulates objects moving through a 1280x720 frame (speeds of 0.5 to 6
px/frame with a little random acceleration). Scenes: steady (20 objects bouncing
around, 3 classes), crossing (two-way traffic on shared lanes plus diagonal
crossers: objects pass in front of each other), occlusion (objects walk behind
full-height pillars), crowd (both at once), exit_reenter (objects roam beyond the
frame edges and come back elsewhere). Except in exit_reenter, an object that would
stay hidden for more than ``max_gap`` frames in a row is left out of the scene, so
every occlusion is one the tracker is meant to bridge.

Ground truth per frame: every object at least 40% visible (not hidden by nearer
objects, pillars or the frame edge), with the box of its visible part. The detector
(:func:`detect`) sees only those: the box of the visible part plus jitter, a score
that grows with the visible fraction (about 0.25 at 40%, 0.95 when whole, +-0.1),
some frames with an unexplained low score, missed detections, and false positives
(random clutter, and fragments of real objects). Like Mask R-CNN's output, all of
them have then been through per-class NMS at IoU 0.5, so a fragment nearly as large
as its object either replaces the object's detection (which then counts as missed)
or is dropped. Everything is determined by the seed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from rtseg.track.geometry import box_iou

WIDTH, HEIGHT = 1280, 720
VISIBLE_MIN = 0.4  # least visible fraction for an object to be ground truth (and detectable)
GRID = 12  # visibility is sampled on GRID x GRID points per box
# Mask R-CNN's own per-class NMS (torchvision's box_nms_thresh): the tracker never sees two detections
# of one class overlapping more than this, so neither do the simulated ones.
NMS_IOU = 0.5


@dataclass(frozen=True)
class Noise:
    """How the simulated detector errs, and its NMS (defaults: a decent detector on real video)."""

    jitter: float = 3.0  # standard deviation, pixels, of noise added to each box coordinate
    miss: float = 0.08  # chance a detectable object is missed in a frame
    low_score: float = 0.1  # chance a detection scores low (0.2-0.6) whatever its visibility
    false_positives: float = 3.0  # mean false detections per frame (Poisson)
    fragments: float = 0.33  # share of false positives that are fragments of real objects
    class_flip: float = 0.0  # chance a detection of an object has another class (class flicker)
    duplicates: float = 0.0  # chance an object is detected twice, the second time under another class
    agnostic_nms: float = 0.0  # the detector's class-agnostic NMS IoU after per-class NMS (0: off)


@dataclass
class Scene:
    """Simulated ground truth: amodal boxes per frame (NaN where the object does not exist)."""

    name: str
    boxes: np.ndarray  # (frames, objects, 4) xyxy, may extend beyond the frame
    classes: np.ndarray  # (objects,)
    depth: np.ndarray  # (objects,) larger = nearer the camera
    pillars: np.ndarray  # (P, 4) xyxy static occluders in front of everything
    views: list[View] = dataclasses.field(default_factory=list)  # per frame, filled by _observe


@dataclass
class View:
    """What can be seen of the objects alive in one frame."""

    alive: np.ndarray  # (A,) object indices
    fraction: np.ndarray  # (A,) visible fraction of each
    visible: np.ndarray  # (A, 4) box of the visible part (NaN when nothing is visible)

    @property
    def ground_truth(self) -> np.ndarray:
        """Positions in ``alive`` of the objects visible enough to be ground truth."""
        return np.flatnonzero(self.fraction >= VISIBLE_MIN)


def _simulate(rng: np.random.Generator, frames: int, start: np.ndarray, centre: np.ndarray,
              velocity: np.ndarray, size: np.ndarray, bounds: np.ndarray | None, wobble: float = 0.03) -> np.ndarray:
    """Move objects frame by frame; returns (frames, objects, 4) boxes, NaN outside each life.

    Velocities drift by a random acceleration (``wobble`` px/frame^2 standard deviation,
    speed kept within 30% of its start). With ``bounds`` (x0, y0, x1, y1) objects bounce off them; without,
    they live until they have crossed out of the frame.
    """
    n = len(start)
    out = np.full((frames, n, 4), np.nan)
    centre, velocity = centre.astype(float).copy(), velocity.astype(float).copy()
    speed0 = np.linalg.norm(velocity, axis=1)
    entered = np.zeros(n, bool)
    gone = np.zeros(n, bool)
    for t in range(frames):
        alive = (start <= t) & ~gone
        velocity[alive] += rng.normal(0.0, wobble, (alive.sum(), 2))
        speed = np.linalg.norm(velocity, axis=1)
        factor = np.clip(speed, 0.7 * speed0, 1.3 * speed0) / np.maximum(speed, 1e-9)
        velocity *= factor[:, None]
        centre[alive] += velocity[alive]
        half = size / 2
        if bounds is not None:
            for axis, (lo, hi) in enumerate(((bounds[0], bounds[2]), (bounds[1], bounds[3]))):
                low, high = centre[:, axis] - half[:, axis] < lo, centre[:, axis] + half[:, axis] > hi
                velocity[low, axis] = np.abs(velocity[low, axis])
                velocity[high, axis] = -np.abs(velocity[high, axis])
        else:
            inside = ((centre[:, 0] + half[:, 0] > 0) & (centre[:, 0] - half[:, 0] < WIDTH)
                      & (centre[:, 1] + half[:, 1] > 0) & (centre[:, 1] - half[:, 1] < HEIGHT))
            gone |= alive & entered & ~inside
            entered |= alive & inside
            alive &= ~gone
        out[t, alive, :2] = centre[alive] - half[alive]
        out[t, alive, 2:] = centre[alive] + half[alive]
    return out


def _sizes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Person-like boxes, 30-90 px wide, taller than wide."""
    w = rng.uniform(30, 90, n)
    return np.stack([w, w * rng.uniform(1.2, 2.5, n)], axis=1)


# What ``_simulate`` moves: each object's first frame, centre there, velocity and (width, height).
_Movers = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _lane_walkers(rng: np.random.Generator, n: int, frames: int, speed: tuple[float, float],
                  lanes: int) -> _Movers:
    """Objects entering from the left or right on a few shared lanes, so that they cross and overtake."""
    size = _sizes(rng, n)
    lane_y = rng.uniform(150, HEIGHT - 150, lanes)
    y = lane_y[rng.integers(0, lanes, n)] + rng.normal(0, 15, n)
    leftward = rng.random(n) < 0.5
    x = np.where(leftward, WIDTH + size[:, 0], -size[:, 0])
    v = rng.uniform(*speed, n) * np.where(leftward, -1, 1)
    start = np.sort(rng.integers(0, max(1, frames - WIDTH // int(speed[0] + 1)), n))
    return start, np.stack([x, y], axis=1), np.stack([v, rng.normal(0, 0.2, n)], axis=1), size


def _diagonal_walkers(rng: np.random.Generator, n: int, frames: int, speed: tuple[float, float]) -> _Movers:
    """Objects entering from the top or bottom at an angle, crossing the lanes."""
    size = _sizes(rng, n)
    downward = rng.random(n) < 0.5
    x = rng.uniform(200, WIDTH - 200, n)
    y = np.where(downward, -size[:, 1], HEIGHT + size[:, 1])
    angle = rng.uniform(-0.6, 0.6, n)
    s = rng.uniform(*speed, n)
    v = np.stack([s * np.sin(angle), s * np.cos(angle) * np.where(downward, 1, -1)], axis=1)
    start = np.sort(rng.integers(0, max(1, frames - 300), n))
    return start, np.stack([x, y], axis=1), v, size


def _meeting_pairs(rng: np.random.Generator, pairs: int, frames: int, oblique: bool,
                   unequal: bool) -> _Movers:
    """Pairs of person-like objects that meet: head-on, or with paths 30-60 degrees off head-on
    (``oblique``), at one speed or one 1.5-2.5 times the other's (``unequal``); one pair every
    ``frames / pairs`` frames or so, each pair meeting near the frame's middle."""
    n = 2 * pairs
    size = np.repeat(_sizes(rng, pairs), 2, axis=0) * rng.uniform(0.9, 1.1, (n, 2))  # look-alikes
    meet_t = np.repeat(np.linspace(120, max(frames - 60, 121), pairs) + rng.uniform(-20, 20, pairs), 2)
    meet = np.repeat(rng.uniform([400, 200], [WIDTH - 400, HEIGHT - 200], (pairs, 2)), 2, axis=0)
    heading = np.repeat(rng.uniform(0, 2 * np.pi, pairs), 2)
    turn = rng.uniform(np.pi / 6, np.pi / 3, pairs) * rng.choice([-1, 1], pairs) if oblique else np.zeros(pairs)
    heading[1::2] += np.pi + turn
    speed = np.repeat(rng.uniform(2.0, 5.0, pairs), 2)
    if unequal:
        speed[1::2] *= rng.uniform(1.5, 2.5, pairs)
    velocity = speed[:, None] * np.stack([np.cos(heading), np.sin(heading)], axis=1)
    lead = np.minimum(meet_t, 700.0 / speed)  # frames from entering to meeting
    start = np.floor(meet_t - lead).astype(int)
    return start, meet - velocity * (meet_t - start)[:, None], velocity, size


def _pillars(rng: np.random.Generator, count: int) -> np.ndarray:
    """Full-height occluders 30-70 px wide, spread across the frame."""
    xs = (np.arange(count) + 0.5) * WIDTH / count + rng.normal(0, 40, count)
    w = rng.uniform(30, 70, count)
    return np.stack([xs - w / 2, np.zeros(count), xs + w / 2, np.full(count, HEIGHT)], axis=1)


def make_scene(name: str, seed: int, frames: int, max_gap: int) -> Scene:
    """One of SCENES, fully determined by its arguments.

    Except in exit_reenter (whose point is leaving for longer), objects that would
    stay hidden for more than ``max_gap`` frames in a row are taken out, so that
    every occlusion is one the tracker is specified to bridge (``max_age``).
    """
    rng = np.random.default_rng([seed, SCENES.index(name)])
    pillars = np.zeros((0, 4))
    if name in ("steady", "plain"):  # 20 objects bouncing around, 3 classes, no pillars (plain: see below)
        n = 20
        size = _sizes(rng, n)
        centre = rng.uniform([100, 100], [WIDTH - 100, HEIGHT - 100], (n, 2))
        angle = rng.uniform(0, 2 * np.pi, n)
        velocity = rng.uniform(0.5, 6, n)[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        boxes = _simulate(rng, frames, np.zeros(n, int), centre, velocity, size, np.array([0, 0, WIDTH, HEIGHT]))
        classes = rng.integers(0, 3, n)
    elif name == "crossing":  # two-way traffic on shared lanes plus diagonal crossers, one class mostly
        parts = [_lane_walkers(rng, 16, frames, (1.5, 6.0), lanes=4), _diagonal_walkers(rng, 6, frames, (2.0, 5.0))]
        boxes = np.concatenate([_simulate(rng, frames, *p, bounds=None) for p in parts], axis=1)
        classes = (rng.random((boxes.shape[1],)) < 0.15).astype(int)
    elif name == "occlusion":  # objects walk behind pillars (hidden for up to ~max_age frames)
        pillars = _pillars(rng, 4)
        start, centre, velocity, size = _lane_walkers(rng, 16, frames, (2.5, 6.0), lanes=8)
        boxes = _simulate(rng, frames, start, centre, velocity, size, bounds=None)
        classes = (rng.random((boxes.shape[1],)) < 0.15).astype(int)
    elif name == "crowd":  # crossing traffic behind pillars: both kinds of occlusion at once
        pillars = _pillars(rng, 3)
        parts = [_lane_walkers(rng, 18, frames, (2.0, 6.0), lanes=4), _diagonal_walkers(rng, 6, frames, (2.0, 5.0))]
        boxes = np.concatenate([_simulate(rng, frames, *p, bounds=None) for p in parts], axis=1)
        classes = (rng.random((boxes.shape[1],)) < 0.15).astype(int)
    elif name == "exit_reenter":  # objects roam beyond the frame edges and come back elsewhere
        n = 10
        size = _sizes(rng, n)
        centre = rng.uniform([100, 100], [WIDTH - 100, HEIGHT - 100], (n, 2))
        angle = rng.uniform(0, 2 * np.pi, n)
        velocity = rng.uniform(2, 6, n)[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        bounds = np.array([-250, -250, WIDTH + 250, HEIGHT + 250])
        boxes = _simulate(rng, frames, np.zeros(n, int), centre, velocity, size, bounds)
        classes = rng.integers(0, 2, n)
    elif name in ("head_on", "head_on_unequal", "oblique", "oblique_unequal"):  # pairs of one class meeting
        oblique, unequal = name.startswith("oblique"), name.endswith("unequal")
        boxes = _simulate(rng, frames, *_meeting_pairs(rng, 8, frames, oblique, unequal), bounds=None, wobble=0.005)
        classes = np.zeros(boxes.shape[1], int)
    elif name in ("walkers", "fast"):  # a crowd of one class, random headings and speeds, bouncing off the edges
        n = int(rng.integers(10, 21)) if name == "walkers" else 10
        size = _sizes(rng, n)
        centre = rng.uniform([100, 100], [WIDTH - 100, HEIGHT - 100], (n, 2))
        angle = rng.uniform(0, 2 * np.pi, n)
        speed = rng.uniform(0.5, 4.0, n) if name == "walkers" else rng.uniform(10.0, 25.0, n)
        velocity = speed[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        boxes = _simulate(rng, frames, np.zeros(n, int), centre, velocity, size, np.array([0, 0, WIDTH, HEIGHT]))
        classes = np.zeros(n, int)
    elif name == "hide":  # objects pass behind a wide static object, fully hidden for 10-20 frames
        start, centre, velocity, size = _lane_walkers(rng, 16, frames, (2.0, 6.0), lanes=6)
        wall = 160.0
        pillars = np.array([[WIDTH / 2 - wall / 2, 0, WIDTH / 2 + wall / 2, HEIGHT]])
        hidden_for = rng.uniform(10, 20, len(start))  # frames fully behind: (wall - width) / speed
        velocity[:, 0] = np.sign(velocity[:, 0]) * (wall - size[:, 0]) / hidden_for
        boxes = _simulate(rng, frames, start, centre, velocity, size, bounds=None)
        classes = np.zeros(len(start), int)
    else:
        raise ValueError(f"unknown scene {name!r}")
    depth = rng.permutation(boxes.shape[1]).astype(float)
    if name == "plain":  # as steady, but no object is nearer than another, so none hides another: box noise only
        depth[:] = 0.0
    scene = Scene(name, boxes, classes, depth, pillars)
    _observe(scene)
    while name != "exit_reenter":  # removing one object can expose another: repeat until none is left
        hidden_long = [o for o, object_gaps in gaps(scene).items() if max(object_gaps, default=0) > max_gap]
        if not hidden_long:
            break
        scene.boxes[:, hidden_long] = np.nan
        _observe(scene)
    return scene


def _observe(scene: Scene) -> None:
    """Fill ``scene.views``: visibility of every object in every frame."""
    scene.views = []
    for t in range(len(scene.boxes)):
        alive = np.flatnonzero(~np.isnan(scene.boxes[t, :, 0]))
        fraction, visible = _visible_parts(scene.boxes[t, alive], scene.depth[alive], scene.pillars)
        scene.views.append(View(alive, fraction, visible))


def gaps(scene: Scene) -> dict[int, list[int]]:
    """For each object, the lengths (frames) of the gaps between its ground-truth appearances."""
    seen: dict[int, list[int]] = {}
    for t, view in enumerate(scene.views):
        for o in view.alive[view.ground_truth]:
            seen.setdefault(int(o), []).append(t)
    return {o: [b - a - 1 for a, b in zip(ts, ts[1:]) if b - a > 1] for o, ts in seen.items()}


SCENES = ("steady", "crossing", "occlusion", "crowd", "exit_reenter",
          "head_on", "head_on_unequal", "oblique", "oblique_unequal", "walkers", "fast", "hide", "plain")


@dataclass
class FrameData:
    """One frame: ground truth (object index, visible box) and the simulated detections."""

    gt_objects: np.ndarray  # (G,) object indices
    gt_boxes: np.ndarray  # (G, 4)
    boxes: np.ndarray  # (N, 4) detections
    scores: np.ndarray
    class_ids: np.ndarray
    det_object: np.ndarray  # (N,) object index each detection came from, -1 for false positives
    masks: np.ndarray | None  # (N, H, W) when masks are simulated


def _visible_parts(boxes: np.ndarray, depth: np.ndarray, pillars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Visible fraction and visible-part box of each box, sampling a GRID x GRID lattice."""
    steps = (np.arange(GRID) + 0.5) / GRID
    xs = boxes[:, 0, None] + steps[None] * (boxes[:, 2] - boxes[:, 0])[:, None]  # (n, GRID)
    ys = boxes[:, 1, None] + steps[None] * (boxes[:, 3] - boxes[:, 1])[:, None]
    px = np.broadcast_to(xs[:, None, :], (len(boxes), GRID, GRID))
    py = np.broadcast_to(ys[:, :, None], (len(boxes), GRID, GRID))
    hidden = (px < 0) | (px >= WIDTH) | (py < 0) | (py >= HEIGHT)
    for occluder in pillars:
        hidden |= (px >= occluder[0]) & (px < occluder[2]) & (py >= occluder[1]) & (py < occluder[3])
    for i, box in enumerate(boxes):
        for j in np.flatnonzero(depth > depth[i]):
            o = boxes[j]
            if o[0] < box[2] and o[2] > box[0] and o[1] < box[3] and o[3] > box[1]:
                hidden[i] |= (px[i] >= o[0]) & (px[i] < o[2]) & (py[i] >= o[1]) & (py[i] < o[3])
    seen = ~hidden
    fraction = seen.mean(axis=(1, 2))
    visible = np.full((len(boxes), 4), np.nan)
    cell_w = (boxes[:, 2] - boxes[:, 0]) / GRID
    cell_h = (boxes[:, 3] - boxes[:, 1]) / GRID
    for k in np.flatnonzero(fraction > 0):
        cols, rows = np.flatnonzero(seen[k].any(axis=0)), np.flatnonzero(seen[k].any(axis=1))
        visible[k] = [boxes[k, 0] + cols[0] * cell_w[k], boxes[k, 1] + rows[0] * cell_h[k],
                      boxes[k, 0] + (cols[-1] + 1) * cell_w[k], boxes[k, 1] + (rows[-1] + 1) * cell_h[k]]
    return fraction, np.clip(visible, 0, [WIDTH, HEIGHT, WIDTH, HEIGHT])


def _ellipse_masks(boxes: np.ndarray, hidden_by: list[np.ndarray]) -> np.ndarray:
    """(N, H, W) masks: the ellipse inscribed in each box, minus the boxes in front of it."""
    masks = np.zeros((len(boxes), HEIGHT, WIDTH), bool)
    for i, box in enumerate(boxes):
        x0, y0 = int(max(box[0], 0)), int(max(box[1], 0))
        x1, y1 = int(min(np.ceil(box[2]), WIDTH)), int(min(np.ceil(box[3]), HEIGHT))
        if x1 <= x0 or y1 <= y0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        rx, ry = max((box[2] - box[0]) / 2, 0.5), max((box[3] - box[1]) / 2, 0.5)
        inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        for o in hidden_by[i]:
            inside &= ~((xx >= o[0]) & (xx < o[2]) & (yy >= o[1]) & (yy < o[3]))
        masks[i, y0:y1, x0:x1] = inside
    return masks


def detect(scene: Scene, t: int, noise: Noise, rng: np.random.Generator, with_masks: bool) -> FrameData:
    """Ground truth and simulated detections of frame ``t``."""
    alive, fraction, visible = scene.views[t].alive, scene.views[t].fraction, scene.views[t].visible
    is_gt = fraction >= VISIBLE_MIN
    gt_objects, gt_boxes = alive[is_gt], visible[is_gt]

    detected = is_gt & (rng.random(len(alive)) >= noise.miss)
    objects = alive[detected]
    boxes = visible[detected] + rng.normal(0, noise.jitter, (len(objects), 4))
    # Confidence grows with the visible fraction: about 0.25 at 40% visible, 0.95 when whole.
    scores = 0.25 + 0.7 * (fraction[detected] - VISIBLE_MIN) / (1 - VISIBLE_MIN) + rng.normal(0, 0.1, len(objects))
    hard = rng.random(len(objects)) < noise.low_score  # blur, odd pose: a low score despite being in view
    scores = np.clip(np.where(hard, rng.uniform(0.2, 0.6, len(objects)), scores), 0.05, 0.99)
    classes = scene.classes[objects]

    n_fp = rng.poisson(noise.false_positives)
    fragment = rng.random(n_fp) < noise.fragments
    fp_boxes = np.empty((n_fp, 4))
    fp_classes = rng.integers(0, scene.classes.max() + 1, n_fp)
    for k in range(n_fp):
        if fragment[k] and len(gt_boxes):  # a piece of a real object, detected as its own instance
            g = rng.integers(len(gt_boxes))
            b = gt_boxes[g]
            wh = (b[2:] - b[:2]) * rng.uniform(0.4, 0.9, 2)
            lt = b[:2] + rng.uniform(0, 1, 2) * (b[2:] - b[:2] - wh)
            fp_boxes[k] = [*lt, *(lt + wh)]
            fp_classes[k] = scene.classes[gt_objects[g]]
        else:
            wh = rng.uniform(20, 120, 2)
            lt = rng.uniform(0, 1, 2) * ([WIDTH, HEIGHT] - wh)
            fp_boxes[k] = [*lt, *(lt + wh)]
    fp_scores = rng.uniform(0.1, 0.8, n_fp)

    boxes = np.clip(np.concatenate([boxes, fp_boxes]), 0, [WIDTH, HEIGHT, WIDTH, HEIGHT])
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    scores, classes = np.concatenate([scores, fp_scores]), np.concatenate([classes, fp_classes])
    det_object = np.concatenate([objects, np.full(n_fp, -1)])
    if noise.class_flip or noise.duplicates:  # drawn last, so that the rest is as without them
        boxes, scores, classes, det_object = _confuse_classes(boxes, scores, classes, det_object, noise, rng,
                                                              max(int(scene.classes.max()) + 1, 2))
    keep = class_nms(boxes, scores, classes)
    if noise.agnostic_nms:
        keep = keep[class_nms(boxes[keep], scores[keep], np.zeros(len(keep), np.int64), noise.agnostic_nms)]
    boxes, scores, classes, det_object = boxes[keep], scores[keep], classes[keep], det_object[keep]
    masks = None
    if with_masks:
        behind = [scene.pillars if o < 0 else np.concatenate(
            [scene.boxes[t, alive[scene.depth[alive] > scene.depth[o]]], scene.pillars]) for o in det_object]
        masks = _ellipse_masks(boxes, behind)
    return FrameData(gt_objects, gt_boxes, boxes.astype(np.float32), scores.astype(np.float32),
                     classes.astype(np.int64), det_object, masks)


def _confuse_classes(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, det_object: np.ndarray, noise: Noise,
                     rng: np.random.Generator, n_classes: int) -> tuple[np.ndarray, ...]:
    """Detections of objects with their class flipped (``noise.class_flip``), plus duplicates under another
    class (``noise.duplicates``: the box again within a pixel, a lower score; false detections, object -1)."""
    real = det_object >= 0
    flip = real & (rng.random(len(classes)) < noise.class_flip)
    classes = np.where(flip, (classes + rng.integers(1, n_classes, len(classes))) % n_classes, classes)
    twin = np.flatnonzero(real & (rng.random(len(classes)) < noise.duplicates))
    twin_boxes = np.clip(boxes[twin] + rng.uniform(-1.0, 1.0, (len(twin), 4)), 0, [WIDTH, HEIGHT, WIDTH, HEIGHT])
    twin_scores = scores[twin] * rng.uniform(0.5, 1.0, len(twin))
    twin_classes = (classes[twin] + rng.integers(1, n_classes, len(twin))) % n_classes
    return (np.concatenate([boxes, twin_boxes]), np.concatenate([scores, twin_scores]),
            np.concatenate([classes, twin_classes]), np.concatenate([det_object, np.full(len(twin), -1)]))


def class_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float = NMS_IOU) -> np.ndarray:
    """Indices (in input order) kept by greedy per-class NMS, as Mask R-CNN's output has been."""
    overlap = box_iou(boxes, boxes) * (classes[:, None] == classes[None, :])
    keep = np.zeros(len(boxes), bool)
    for i in np.argsort(-scores, kind="stable"):
        keep[i] = not (overlap[i, keep] > iou).any()
    return np.flatnonzero(keep)
