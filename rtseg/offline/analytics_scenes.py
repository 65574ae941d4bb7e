"""Synthetic scenes for scene analytics: tracked detections with masks, and the true counts, occupancy and dwell.

No model and no video: each scene is a set of simulated bodies moving along known
paths through one zone and across one line of a 640x360 frame, and a simulated
detector-and-tracker that reports them frame by frame as ``Detections`` with
masks and track ids, the way the pipeline hands them to ``SceneAnalytics``. Frame
timestamps are irregular in every family (10 to 25 frames a second, drawn per
frame), so a dwell counted in frames instead of seconds is wrong.

Families (:data:`FAMILIES`):

- ``plain``: people walk across the frame on straight paths, through the zone and
  across the line; masks and boxes jitter by about a pixel; nothing else goes wrong.
- ``occlusion``: the same walkers, and two static occluders (parked cars, a
  counter) low in the frame. Whoever walks behind one shows only the part above
  its top edge: the detected mask is the visible part and the detected box is
  that part's box, so the box's bottom is the occluder's top edge, not the feet.
- ``large``: buses and lorries (160-260 px long) drive slowly across a stop line
  drawn across their lane, shorter than they are tall, and some stop a few
  seconds in the bay zone. Their mask is a vehicle's outline, so the box's
  bottom centre lies far below the mask's mass.
- ``linger``: people walk up to the line or the zone's border, stand there 2 to
  6 seconds swaying (masks shifted by 2 px, standard deviation, every frame),
  then go on across or turn back.
  Standing, the true body centre is 4 to 12 px from the line, so the truth is
  never in doubt while the detections straddle it.
- ``flicker``: the plain walkers seen by a poor detector: a quarter of the
  detections have a confusable class (person/bicycle, bus/car), 12 % are
  missed, with occasional bursts of 2 to 4 missed frames, 1.5 px jitter of masks
  and boxes (the tracking scenes' 3 px at half their resolution), and masks a
  pixel too thin or too fat.
- ``reacquire``: the plain walkers, each lost by the tracker once or twice for
  2 to 8 frames and found again under a new track id (an id switch).

Ground truth is taken from the true, whole bodies (occluders and detector noise
do not touch it):

- in a zone: at least half of the whole body's area lies in the zone
  (:data:`ZONE_SHARE`); an entry is a step from outside to inside; a visit lasts
  from the timestamp of its first frame inside to that of the first frame
  outside again; occupancy is the number of bodies inside in each frame;
- a line crossing: the path of the body's centre (of area, the whole body's
  centroid) between two consecutive frames meets the line's segment; its direction is the side the centre arrives
  on (``in`` when that is the line's ``in_side``, as rtseg's lines define it).

Every scene ends 2 seconds after its last body has left the frame, so every
visit has ended and every lost track has timed out. Everything is determined
by the family and the seed.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from rtseg.core.regions import Line, Zone
from rtseg.core.structures import Detections

WIDTH, HEIGHT = 640, 360
FAMILIES = ("plain", "occlusion", "large", "linger", "flicker", "reacquire")
CLASS_NAMES = ("person", "bicycle", "car", "bus")
CONFUSED = {0: 1, 1: 0, 2: 3, 3: 2}  # the class a flickering detection of each class shows instead
ZONE_SHARE = 0.5  # least share of the whole body in a zone for the body to be inside it (ground truth)
VISIBLE_MIN = 0.15  # least visible share of a body for the simulated detector to see it at all
MIN_HITS = 2  # a track id is reported as -1 (unconfirmed) for its first MIN_HITS detections, as trackers do
FRAME_SECONDS = (0.04, 0.1)  # each frame interval is drawn from this range: a variable frame rate
TAIL_SECONDS = 2.0  # the scene runs on this long after its last body has gone


@dataclass(frozen=True)
class Noise:
    """How the simulated detector and tracker err in one family."""

    jitter: float = 1.0  # standard deviation, pixels, of the shift of each detected mask (and its box)
    box_jitter: float = 0.5  # standard deviation, pixels, of extra noise on each box coordinate
    miss: float = 0.0  # chance a visible body is missed in a frame
    burst: float = 0.0  # chance per frame that a body starts a burst of 2-4 missed frames
    class_flip: float = 0.0  # chance a detection shows the confusable class (CONFUSED)
    morph: float = 0.0  # chance a detected mask is eroded or dilated by one pixel
    id_switches: int = 0  # times each body is lost for 2-8 frames and found again under a new track id


@dataclass
class Body:
    """One simulated object: its kind, size and path (its whole body's centre at given times)."""

    kind: str  # "person" or "vehicle"
    class_id: int
    width: float  # at the reference height (people scale with their depth in the frame)
    height: float
    times: np.ndarray  # (K,) increasing seconds
    points: np.ndarray  # (K, 2) centre at each of times
    switches: list[tuple[float, float]] = field(default_factory=list)  # (gap start, gap end) in seconds

    @property
    def start(self) -> float:
        return float(self.times[0])

    @property
    def end(self) -> float:
        return float(self.times[-1])

    def centre(self, time: float) -> np.ndarray:
        return np.array([np.interp(time, self.times, self.points[:, 0]), np.interp(time, self.times, self.points[:, 1])])

    def size(self, centre: np.ndarray) -> tuple[float, float]:
        """(width, height) at ``centre``: people nearer the camera (lower in the frame) are larger."""
        if self.kind == "vehicle":
            return self.width, self.height
        scale = 0.6 + 0.8 * float(centre[1]) / HEIGHT
        return self.width * scale, self.height * scale

    def shape(self, time: float) -> tuple[np.ndarray, int, int]:
        """The whole body's mask at ``time`` in its own crop: (mask, x offset, y offset) in frame pixels."""
        centre = self.centre(time)
        w, h = self.size(centre)
        x0, y0 = int(math.floor(centre[0] - w / 2)), int(math.floor(centre[1] - h / 2))
        cw, ch = int(math.ceil(w)) + 2, int(math.ceil(h)) + 2
        canvas = np.zeros((ch, cw), np.uint8)
        cx, cy = centre[0] - x0, centre[1] - y0  # the centre in crop coordinates
        if self.kind == "person":
            # A head on a rounded body: an ellipse for the body and legs, a circle above it.
            head = 0.12 * h
            body_h = h - 2 * head
            cv2.ellipse(canvas, (_fix(cx), _fix(cy + head)), (_fix(w / 2), _fix(body_h / 2)), 0, 0, 360, 1, -1,
                        cv2.LINE_8, 8)
            cv2.circle(canvas, (_fix(cx), _fix(cy - h / 2 + head)), _fix(head), 1, -1, cv2.LINE_8, 8)
        else:
            # A vehicle's outline: a windscreen sloping back at the front, wheels' arches below.
            left, right, top, bottom = cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2
            front = right if self.points[-1, 0] >= self.points[0, 0] else left
            back = left if front == right else right
            lean = 0.18 * w * (1 if front == right else -1)
            outline = np.array([[back, bottom - 0.12 * h], [back, top + 0.08 * h], [front - lean, top],
                                [front, top + 0.45 * h], [front, bottom - 0.12 * h]])
            cv2.fillPoly(canvas, [np.round(outline * 256).astype(np.int32)], 1, cv2.LINE_8, 8)
            for wheel in (0.2, 0.8):
                wx = left + wheel * w
                cv2.circle(canvas, (_fix(wx), _fix(bottom - 0.12 * h)), _fix(0.11 * h), 1, -1, cv2.LINE_8, 8)
        return canvas.astype(bool), x0, y0


def _fix(value: float) -> int:
    """A coordinate in OpenCV's 1/256-pixel fixed point (``shift=8``)."""
    return int(round(value * 256))


@dataclass
class Layout:
    """The regions analytics decides about, and the static occluders in front of the bodies."""

    zones: list[Zone]
    lines: list[Line]
    occluders: list[tuple[int, int, int, int]] = field(default_factory=list)  # x0, y0, x1, y1 pixels

    def occluded(self) -> np.ndarray:
        """(HEIGHT, WIDTH) bool: the pixels an occluder hides."""
        plane = np.zeros((HEIGHT, WIDTH), bool)
        for x0, y0, x1, y1 in self.occluders:
            plane[y0:y1, x0:x1] = True
        return plane


@dataclass(frozen=True)
class Visit:
    """One body's stay in one zone: ``start`` is its first frame inside, ``end`` its first frame outside."""

    body: int
    zone: str
    start: float
    end: float


@dataclass
class Truth:
    """What really happened in a scene, from the whole bodies."""

    crossings: dict[str, dict[str, Counter[str]]]  # line -> in|out -> class -> crossings
    entries: dict[str, Counter[str]]  # zone -> class -> entries
    occupancy: np.ndarray  # (frames, zones) bodies inside
    visits: list[Visit]


@dataclass
class SimFrame:
    """One frame as the detector and tracker report it."""

    index: int
    time: float
    detections: Detections
    bodies: np.ndarray  # (N,) the body each detection is of


@dataclass
class Scene:
    """One family's scene for one seed: its regions, bodies, frame times and truth; ``frames()`` makes the frames."""

    family: str
    seed: int
    layout: Layout
    bodies: list[Body]
    times: np.ndarray  # (frames,) timestamps, seconds
    noise: Noise
    truth: Truth

    def frames(self) -> Iterator[SimFrame]:
        """The detections of every frame, made afresh on each call (the same each time)."""
        rng = np.random.default_rng([self.seed, FAMILIES.index(self.family), 1])
        hidden = self.layout.occluded()
        noise = self.noise
        seen: Counter[int] = Counter()  # detections so far per track id (for the unconfirmed first ones)
        burst_until = np.full(len(self.bodies), -1.0)
        for index, time in enumerate(self.times):
            boxes, scores, classes, masks, ids, owners = [], [], [], [], [], []
            for b, body in enumerate(self.bodies):
                if not body.start <= time <= body.end:
                    continue
                whole, x0, y0 = body.shape(float(time))
                visible = _place(whole, x0, y0) & ~hidden
                area = int(whole.sum())
                if not area or visible.sum() < VISIBLE_MIN * area:
                    continue
                if noise.burst and time > burst_until[b] and rng.random() < noise.burst:
                    burst_until[b] = time + float(rng.integers(2, 5)) * FRAME_SECONDS[1]
                missed = time <= burst_until[b] or rng.random() < noise.miss
                track = _track_id(b, body, float(time))
                if missed or track is None:
                    continue
                mask = _disturb(visible, rng, noise)
                if not mask.any():
                    continue
                ys, xs = np.nonzero(mask)
                box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)
                box += rng.normal(0.0, noise.box_jitter, 4)
                class_id = body.class_id
                if noise.class_flip and rng.random() < noise.class_flip:
                    class_id = CONFUSED[class_id]
                seen[track] += 1
                boxes.append(box)
                scores.append(min(0.99, 0.55 + 0.4 * visible.sum() / area + rng.normal(0, 0.03)))
                classes.append(class_id)
                masks.append(mask)
                ids.append(track if seen[track] > MIN_HITS else -1)
                owners.append(b)
            detections = Detections(
                boxes=np.array(boxes, np.float32).reshape(-1, 4), scores=np.array(scores, np.float32),
                class_ids=np.array(classes, np.int64),
                masks=np.array(masks, bool).reshape(-1, HEIGHT, WIDTH), class_names=CLASS_NAMES,
                track_ids=np.array(ids, np.int64))
            yield SimFrame(index, float(time), detections, np.array(owners, np.int64))


def _track_id(b: int, body: Body, time: float) -> int | None:
    """The tracker's id for body ``b`` at ``time`` (a new one after each switch); None inside a switch's gap."""
    part = 0
    for start, end in body.switches:
        if start <= time <= end:
            return None
        part += time > end
    return 1000 * (part + 1) + b


def _place(crop: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """A crop's pixels in a (HEIGHT, WIDTH) frame (what lies outside the frame is cut off)."""
    frame = np.zeros((HEIGHT, WIDTH), bool)
    h, w = crop.shape
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + w, WIDTH), min(y0 + h, HEIGHT)
    if fx1 > fx0 and fy1 > fy0:
        frame[fy0:fy1, fx0:fx1] = crop[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
    return frame


def _disturb(mask: np.ndarray, rng: np.random.Generator, noise: Noise) -> np.ndarray:
    """The detector's mask: shifted by the jitter, sometimes a pixel thinner or fatter."""
    dx, dy = (int(v) for v in np.round(rng.normal(0.0, noise.jitter, 2)))
    out = np.zeros_like(mask)
    src = mask[max(0, -dy):HEIGHT - max(0, dy), max(0, -dx):WIDTH - max(0, dx)]
    out[max(0, dy):max(0, dy) + src.shape[0], max(0, dx):max(0, dx) + src.shape[1]] = src
    if noise.morph and rng.random() < noise.morph:
        kernel = np.ones((3, 3), np.uint8)
        op = cv2.erode if rng.random() < 0.5 else cv2.dilate
        out = op(out.astype(np.uint8), kernel).astype(bool)
    return out


# -- layouts and paths --------------------------------------------------------------------------

def _street() -> Layout:
    """People's layout: a gate line leaning a little, and a zone to its right."""
    return Layout(zones=[Zone("area", [(400, 70), (590, 55), (605, 300), (420, 320)])],
                  lines=[Line("gate", [(330, 40), (270, 330)], in_side="left")])


def _road() -> Layout:
    """Vehicles' layout: a stop line across one lane (shorter than a bus is tall) and a bay beyond it."""
    return Layout(zones=[Zone("bay", [(300, 95), (520, 95), (520, 285), (300, 285)])],
                  lines=[Line("stop", [(220, 125), (220, 255)], in_side="left")])


def _walk(rng: np.random.Generator, start: float) -> tuple[np.ndarray, np.ndarray]:
    """A straight walk across the frame, left to right or back, that crosses the gate and the zone."""
    rightward = rng.random() < 0.5
    y0, y1 = rng.uniform(110, 270, 2)
    xs = (-40.0, WIDTH + 40.0) if rightward else (WIDTH + 40.0, -40.0)
    speed = rng.uniform(40, 90)
    duration = math.hypot(xs[1] - xs[0], y1 - y0) / speed
    return np.array([start, start + duration]), np.array([[xs[0], y0], [xs[1], y1]])


def _person(rng: np.random.Generator, times: np.ndarray, points: np.ndarray) -> Body:
    width = rng.uniform(24, 36)
    return Body("person", 0 if rng.random() < 0.85 else 1, width, width * rng.uniform(2.4, 3.0), times, points)


def _side_offset(line: Line, point: np.ndarray) -> float:
    """Signed distance (pixels) of ``point`` from ``line``'s first segment: negative on its left."""
    (ax, ay), (bx, by) = line.points[0], line.points[1]
    dx, dy = bx - ax, by - ay
    return float((dx * (point[1] - ay) - dy * (point[0] - ax)) / math.hypot(dx, dy))


def _line_point(line: Line, y: float, offset: float) -> np.ndarray:
    """The point at height ``y`` that lies ``offset`` pixels from ``line`` (negative: on its left)."""
    (ax, ay), (bx, by) = line.points[0], line.points[1]
    x = ax + (bx - ax) * (y - ay) / (by - ay)
    length = math.hypot(bx - ax, by - ay)
    normal = np.array([-(by - ay), bx - ax]) / length  # points to the line's right
    return np.array([x, y]) + offset * normal


def _lingerer(rng: np.random.Generator, start: float, layout: Layout) -> Body:
    """A walker that stops 2-6 s on the gate or on the zone's left border, then walks on or turns back."""
    speed = rng.uniform(40, 80)
    y = rng.uniform(120, 260)
    if rng.random() < 0.6:  # on the gate: the centre stands 4-12 px to one side of it
        offset = rng.uniform(4, 12) * rng.choice([-1, 1])
        stop = _line_point(layout.lines[0], y, offset)
    else:  # on the zone's border: a third to two thirds of the body inside, clear of the half
        share = rng.choice([rng.uniform(0.2, 0.35), rng.uniform(0.65, 0.8)])
        stop = np.array([_zone_left(layout.zones[0], y) + (share - 0.5) * 30.0, y])
    rightward = rng.random() < 0.5
    enter = np.array([-40.0 if rightward else WIDTH + 40.0, y + rng.uniform(-30, 30)])
    on = rng.random() < 0.6  # walks on across (else turns back the way it came)
    leave = np.array([WIDTH + 40.0 if rightward == on else -40.0, y + rng.uniform(-30, 30)])
    t1 = start + float(np.linalg.norm(stop - enter)) / speed
    t2 = t1 + rng.uniform(2, 6)
    t3 = t2 + float(np.linalg.norm(leave - stop)) / speed
    width = 30.0 / (0.6 + 0.8 * y / HEIGHT)  # 30 px wide where it stands (see Body.size)
    return Body("person", 0, width, width * rng.uniform(2.4, 3.0), np.array([start, t1, t2, t3]),
                np.array([enter, stop, stop, leave]))


def _zone_left(zone: Zone, y: float) -> float:
    """x of the zone's left border (its first and last corners) at height ``y``."""
    (ax, ay), (bx, by) = zone.points[0], zone.points[-1]
    return ax + (bx - ax) * (y - ay) / (by - ay)


def _vehicle(rng: np.random.Generator, start: float, layout: Layout) -> Body:
    """A bus or lorry driving slowly across the stop line along its lane; half of them stop in the bay."""
    rightward = rng.random() < 0.5
    w, h = rng.uniform(160, 260), rng.uniform(120, 150)
    y = rng.uniform(180, 200)
    xs = (-w / 2 - 5, WIDTH + w / 2 + 5) if rightward else (WIDTH + w / 2 + 5, -w / 2 - 5)
    speed = rng.uniform(25, 60)
    times, points = [start], [[xs[0], y]]
    if rng.random() < 0.5:
        bay = layout.zones[0].points
        stop_x = rng.uniform(bay[0][0] + 0.3 * w, bay[1][0] - 0.3 * w)
        t = start + abs(stop_x - xs[0]) / speed
        times += [t, t + rng.uniform(2, 6)]
        points += [[stop_x, y], [stop_x, y]]
    times.append(times[-1] + abs(xs[1] - points[-1][0]) / speed)
    points.append([xs[1], y])
    return Body("vehicle", 3 if rng.random() < 0.7 else 2, w, h, np.array(times), np.array(points, float))


FAMILY_NOISE = {
    "plain": Noise(),
    "occlusion": Noise(),
    "large": Noise(),
    "linger": Noise(jitter=2.0, box_jitter=1.0),
    "flicker": Noise(jitter=1.5, box_jitter=1.5, miss=0.12, burst=0.02, class_flip=0.25, morph=0.3),
    "reacquire": Noise(id_switches=2),
}


def make_scene(family: str, seed: int, bodies: int = 10, spread: float = 20.0) -> Scene:
    """Family ``family``'s scene for ``seed``: ``bodies`` objects starting within the first ``spread`` seconds."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}: one of {', '.join(FAMILIES)}")
    rng = np.random.default_rng([seed, FAMILIES.index(family)])
    noise = FAMILY_NOISE[family]
    layout = _road() if family == "large" else _street()
    if family == "occlusion":
        # A parked car in front of the gate's lower half, and a counter in front of the zone's lower half.
        layout.occluders = [(180, 255, 340, HEIGHT), (430, 245, 600, HEIGHT)]
    starts = np.sort(rng.uniform(0, spread, bodies))
    made: list[Body] = []
    for start in starts:
        if family == "large":
            made.append(_vehicle(rng, float(start), layout))
        elif family == "linger":
            made.append(_lingerer(rng, float(start), layout))
        else:
            made.append(_person(rng, *_walk(rng, float(start))))
    for body in made:
        for _ in range(noise.id_switches):
            # A gap of 2-8 frames somewhere in the middle 80 % of the body's life (mostly on the frame).
            at = body.start + rng.uniform(0.1, 0.9) * (body.end - body.start)
            body.switches.append((at, at + rng.integers(2, 9) * float(np.mean(FRAME_SECONDS))))
        body.switches.sort()
    end = max(b.end for b in made) + TAIL_SECONDS
    steps = rng.uniform(*FRAME_SECONDS, int(end / FRAME_SECONDS[0]) + 2)
    times = np.concatenate([[0.0], np.cumsum(steps)])
    times = times[times <= end]
    return Scene(family, seed, layout, made, times, noise, truth(layout, made, times))


def truth(layout: Layout, bodies: list[Body], times: np.ndarray) -> Truth:
    """The true crossings, entries, occupancy and visits of ``bodies`` at ``times`` (see the module doc)."""
    zone_names = [z.name for z in layout.zones]
    crossings = {ln.name: {"in": Counter[str](), "out": Counter[str]()} for ln in layout.lines}
    entries = {z: Counter[str]() for z in zone_names}
    occupancy = np.zeros((len(times), len(zone_names)), np.int64)
    visits: list[Visit] = []
    for b, body in enumerate(bodies):
        name = CLASS_NAMES[body.class_id]
        inside_since: list[float | None] = [None] * len(zone_names)
        previous: np.ndarray | None = None
        for f, time in enumerate(times):
            if not body.start <= time <= body.end:
                continue
            whole, x0, y0 = body.shape(float(time))
            ys, xs = np.nonzero(whole)
            centre = np.array([x0 + xs.mean() + 0.5, y0 + ys.mean() + 0.5])  # the whole body's centre of area
            for j, zone in enumerate(layout.zones):
                inside = zone_share(zone, whole, x0, y0) >= ZONE_SHARE
                occupancy[f, j] += inside
                if inside and inside_since[j] is None:
                    inside_since[j] = float(time)
                    entries[zone.name][name] += 1
                elif not inside and inside_since[j] is not None:
                    visits.append(Visit(b, zone.name, inside_since[j], float(time)))  # type: ignore[arg-type]
                    inside_since[j] = None
            if previous is not None:
                for line in layout.lines:
                    way = crossing(line, previous, centre)
                    if way:
                        crossings[line.name][way][name] += 1
            previous = centre
        for j, since in enumerate(inside_since):
            if since is not None:  # still inside at the end of its path (never, in these layouts): ends there
                visits.append(Visit(b, zone_names[j], since, body.end))
    return Truth(crossings, entries, occupancy, visits)


def zone_share(zone: Zone, mask: np.ndarray, x0: int, y0: int) -> float:
    """Share of a crop mask (placed at x0, y0) whose pixel centres lie inside ``zone`` (whole frame or not)."""
    plane = np.zeros(mask.shape, np.uint8)
    polygon = (zone.pixels(HEIGHT, WIDTH) - np.array([x0, y0]) - 0.5) * 256
    cv2.fillPoly(plane, [np.round(polygon).astype(np.int32)], 1, cv2.LINE_8, 8)
    area = int(mask.sum())
    return float(np.count_nonzero(plane.astype(bool) & mask)) / area if area else 0.0


def crossing(line: Line, before: np.ndarray, after: np.ndarray) -> str | None:
    """'in' or 'out' when the step ``before`` -> ``after`` crosses one of ``line``'s segments, else None."""
    points = line.pixels(HEIGHT, WIDTH)
    for a, b in zip(points[:-1], points[1:]):
        d = b - a

        def side(p: np.ndarray, d: np.ndarray = d, a: np.ndarray = a) -> float:
            return float(d[0] * (p[1] - a[1]) - d[1] * (p[0] - a[0]))  # negative: the line's left

        s0, s1 = side(before), side(after)
        if s0 == s1 or (s0 < 0) == (s1 < 0) or s1 == 0:
            continue
        step = after - before
        t0 = float(step[0] * (a[1] - before[1]) - step[1] * (a[0] - before[0]))
        t1 = float(step[0] * (b[1] - before[1]) - step[1] * (b[0] - before[0]))
        if (t0 < 0) == (t1 < 0) and t0 != 0 and t1 != 0:
            continue  # the step passes the line beyond one of its ends
        arrived = "left" if s1 < 0 else "right"
        return "in" if arrived == line.in_side else "out"
    return None
