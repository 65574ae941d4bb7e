"""One stream's scene analytics: who is in which zone, who crossed which line, for how long — decided by masks.

Rules (docs/analytics.md shows them measured against ground truth and against
the one-point-of-the-box rule of other tools):

- Inside a zone: at least ``zone_share`` of the object's mask area lies in it.
  The decision waits until the share is past ``zone_share`` by half of
  ``zone_margin`` (in at 0.6, out below 0.4 by default), so an object on the
  border, its mask jittering, does not flicker in and out; the visit is then
  dated from the frame its share crossed ``zone_share``, so dwell is unbiased.
  Occupancy (and the mark on an object inside) is the plain rule, frame by
  frame: tracked objects with at least ``zone_share`` inside at their latest
  sighting.
- A line's side: the side holding the larger part of the mask area that lies
  within the line's extent. The side changes (a crossing) only when the new side
  holds at least ``0.5 + line_margin`` of it in two sightings in a row, so an
  object lingering on the line never counts twice, nor when a passer-by hides
  part of it for a frame. An object less than a quarter of which lies within the
  extent is beside the line: its side is forgotten, and walking round an end of
  the line is no crossing.
- Only confirmed tracks (``track_id >= 0``) enter, exit, cross and loiter, each
  under the class most of its detections had. A track that goes unseen keeps
  its zones and sides for ``lost_seconds``; a new id whose box overlaps the lost
  track's predicted box by ``reacquire_iou`` (or, of the same class and size,
  lies within half its diagonal) within that time takes them over (a tracker's
  id switch is no second entry or crossing). A track last seen at the frame's
  edge left the picture and is not taken over. After ``lost_seconds`` unseen,
  the track exits its zones.
- Times are the frames' own timestamps, so dwell is right for variable frame
  rates and live clocks.
- Without tracking (``tracked=False``) only occupancy is counted, per frame, from
  every detection.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rtseg.analytics.shares import RegionMaps, RegionShares
from rtseg.core.config import AnalyticsConfig
from rtseg.core.errors import ConfigError, UsageError
from rtseg.core.events import LineState, SceneEvent, SceneState, ZoneState
from rtseg.core.regions import Line, Region, Zone, check_unique, line_from_dict, zone_from_dict
from rtseg.core.structures import Detections

LINE_EXTENT = 0.25  # least share of a mask within a line's extent for the object to be on one of its sides
VELOCITY_SMOOTHING = 0.5  # weight of the newest box motion in a track's velocity estimate
REACQUIRE_DISTANCE = 0.5  # a lost track's predicted centre within this many of its box diagonals: the same object
CROSSING_SIGHTINGS = 2  # sightings in a row on the new side that make a crossing (a passer-by hiding part of a
# lingering object can tip its share for one frame)
EDGE = 2.0  # pixels: a track last seen this close to the frame's edge left the picture and is not re-acquired


def regions(settings: AnalyticsConfig, where: str = "analytics") -> tuple[list[Zone], list[Line]]:
    """The zones and lines of an ``analytics`` section, checked (one ConfigError line for the first problem)."""
    zones = [zone_from_dict(entry, f"{where}.zones[{i}]") for i, entry in enumerate(settings.zones)]
    lines = [line_from_dict(entry, f"{where}.lines[{i}]") for i, entry in enumerate(settings.lines)]
    check_unique(zones, lines, where)
    return zones, lines


def check_tracking(lines: Sequence[Line], tracked: bool, where: str) -> None:
    """Crossings need identities: lines with tracking off are a usage error (zones still give occupancy)."""
    if lines and not tracked:
        raise UsageError(f"{where}: lines count crossings of tracked objects; turn tracking on (drop --no-track) "
                         "or remove the lines")


def _area(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], 0) * max(box[3] - box[1], 0))


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass
class _Track:
    """What analytics remembers of one confirmed track."""

    class_name: str
    last_time: float
    last_frame: int
    box: np.ndarray
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))  # box corners' motion per second
    zones: dict[str, float] = field(default_factory=dict)  # zone -> time entered
    edges: dict[str, float] = field(default_factory=dict)  # zone -> when its share last crossed zone_share
    shares: dict[str, float] = field(default_factory=dict)  # zone -> its share at its last sighting
    loitered: set[str] = field(default_factory=set)
    sides: dict[str, str] = field(default_factory=dict)  # line -> 'left' | 'right'
    turning: dict[str, int] = field(default_factory=dict)  # line -> sightings in a row on the other side so far
    votes: Counter[str] = field(default_factory=Counter)  # class -> detections of it

    def predicted(self, time: float) -> np.ndarray:
        return self.box + self.velocity * (time - self.last_time)

    def seen(self, box: np.ndarray, time: float, frame: int, class_name: str) -> None:
        """A new sighting; the track's class is the one most of its detections had (a flickering class does
        not split one object's counts)."""
        gap = time - self.last_time
        if gap > 0:
            self.velocity = (1 - VELOCITY_SMOOTHING) * self.velocity + VELOCITY_SMOOTHING * (box - self.box) / gap
        self.box, self.last_time, self.last_frame = box, time, frame
        self.votes[class_name] += 1
        self.class_name = self.votes.most_common(1)[0][0]


@dataclass
class Tally:
    """A run's totals for the summary and --save-stats."""

    entered: dict[str, Counter[str]] = field(default_factory=dict)  # zone -> class -> entries
    loiters: dict[str, int] = field(default_factory=dict)
    dwell: dict[str, list[float]] = field(default_factory=dict)  # zone -> dwell of each finished visit
    peak: dict[str, int] = field(default_factory=dict)  # zone -> most objects inside at once
    crossed: dict[str, dict[str, Counter[str]]] = field(default_factory=dict)  # line -> in|out -> class -> count
    reacquired: int = 0  # new track ids that took over a lost track's state

    def as_dict(self) -> dict[str, Any]:
        zones = {}
        for name in self.entered:
            visits = self.dwell[name]
            zones[name] = {"entered": dict(self.entered[name]), "peak_occupancy": self.peak[name],
                           "loiters": self.loiters[name], "visits_ended": len(visits),
                           "dwell_mean_s": round(float(np.mean(visits)), 3) if visits else None,
                           "dwell_max_s": round(max(visits), 3) if visits else None}
        lines = {name: {way: dict(counts) for way, counts in ways.items()} for name, ways in self.crossed.items()}
        return {"zones": zones, "lines": lines, "reacquired_tracks": self.reacquired}

    def lines(self) -> list[str]:
        """One line per zone and per line for the closing summary."""
        def per_class(counts: Counter[str]) -> str:
            total = sum(counts.values())
            detail = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
            return f"{total} ({detail})" if detail else "0"

        out = []
        for name, entered in self.entered.items():
            visits = self.dwell[name]
            dwell = f", mean dwell {np.mean(visits):.1f} s" if visits else ""
            out.append(f"zone {name}: entered {per_class(entered)}, at most {self.peak[name]} inside at once, "
                       f"{self.loiters[name]} loitering{dwell}")
        for name, ways in self.crossed.items():
            out.append(f"line {name}: in {per_class(ways['in'])}, out {per_class(ways['out'])}")
        return out


class SceneAnalytics:
    """The analytics of one stream: ``update`` once per frame, in frame order, returns that frame's events.

    Usable on its own with any ``Detections`` that carry track ids:

    >>> scene = SceneAnalytics([Zone("door", [(0.1, 0.2), (0.4, 0.2), (0.4, 0.9)])], [], stream="cam")  # doctest: +SKIP
    >>> events = scene.update(detections, time=frame.timestamp, frame=frame.index)                         # doctest: +SKIP
    """

    def __init__(self, zones: Sequence[Zone], lines: Sequence[Line], settings: AnalyticsConfig | None = None, *,
                 stream: str = "", tracked: bool = True) -> None:
        self.zones, self.lines = list(zones), list(lines)
        check_unique(self.zones, self.lines, stream or "analytics")
        self.settings = settings or AnalyticsConfig()
        check_tracking(self.lines, tracked, stream or "analytics")
        self.stream = stream
        self.tracked = tracked
        self.state = SceneState()
        self.tally = Tally(entered={z.name: Counter() for z in self.zones}, loiters={z.name: 0 for z in self.zones},
                           dwell={z.name: [] for z in self.zones}, peak={z.name: 0 for z in self.zones},
                           crossed={ln.name: {"in": Counter(), "out": Counter()} for ln in self.lines})
        self._maps: RegionMaps | None = None
        self._tracks: dict[int, _Track] = {}
        self._next_occupancy: float | None = None

    @property
    def empty(self) -> bool:
        return not self.zones and not self.lines

    def check_classes(self, class_names: Sequence[str]) -> None:
        """Every class a zone or line names must be one the model knows (before any frame)."""
        known = set(class_names)
        every: list[Region] = [*self.zones, *self.lines]
        for region in every:
            for name in region.classes:
                if name not in known:
                    raise ConfigError(f"{region.kind} {region.name!r}: unknown class {name!r} (the model knows "
                                      f"{', '.join(c for c in class_names if c not in ('__background__', 'N/A'))})")

    def prepare(self, height: int, width: int) -> None:
        """Rasterise the regions for this frame size (a region outside the frame is a ConfigError here)."""
        if self._maps is None or (self._maps.height, self._maps.width) != (height, width):
            self._maps = RegionMaps(self.zones, self.lines, height, width)

    def update(self, detections: Detections, *, time: float, frame: int, wall_time: float | None = None,
               height: int | None = None, width: int | None = None) -> list[SceneEvent]:
        """This frame's events; ``self.state`` is then the frame's scene (counts, who is inside)."""
        height = height or (detections.masks.shape[1] if len(detections) else None)
        width = width or (detections.masks.shape[2] if len(detections) else None)
        if height is None or width is None:
            if self._maps is None:
                raise ValueError("SceneAnalytics.update needs the frame size when the first frame has no detections")
            height, width = self._maps.height, self._maps.width
        self.prepare(int(height), int(width))
        assert self._maps is not None
        wall = time if wall_time is None else wall_time
        shares = self._maps.shares(detections)
        names = detections.names()
        events: list[SceneEvent] = []

        def event(kind: str, region: str, region_kind: str, **extra: Any) -> None:
            events.append(SceneEvent(kind, self.stream, region, region_kind, time, wall, frame, **extra))

        inside: list[list[str]] = [[] for _ in range(len(detections))]
        if self.tracked:
            self._update_tracks(detections, names, shares, time, frame, event, inside)
            occupancy = self._tracked_occupancy()
        else:
            occupancy = self._plain_occupancy(names, shares, inside)
        # A new state each frame: frames further down the pipeline keep the one they were decided with.
        maps = self._maps
        self.state = SceneState(
            zones=[ZoneState(z.name, polygon, occupancy[z.name], dict(self.tally.entered[z.name]))
                   for z, polygon in zip(self.zones, maps.zone_polygons)],
            lines=[LineState(ln.name, points, ln.in_side, dict(self.tally.crossed[ln.name]["in"]),
                             dict(self.tally.crossed[ln.name]["out"])) for ln, points in zip(self.lines, maps.line_points)],
            inside=[tuple(i) for i in inside])
        for zone_state in self.state.zones:
            self.tally.peak[zone_state.name] = max(self.tally.peak[zone_state.name], zone_state.occupancy)
        period = self.settings.occupancy_seconds
        if period > 0 and self.zones and (self._next_occupancy is None or time >= self._next_occupancy):
            self._next_occupancy = time + period
            for zone_state in self.state.zones:
                event("occupancy", zone_state.name, "zone", count=zone_state.occupancy, counts=dict(zone_state.inside))
        return events

    # -- the rules ------------------------------------------------------------------------------

    def _applies(self, region: Region, class_name: str) -> bool:
        return not region.classes or class_name in region.classes

    def _plain_occupancy(self, names: list[str], shares: RegionShares, inside: list[list[str]]) -> dict[str, dict[str, int]]:
        occupancy: dict[str, dict[str, int]] = {z.name: {} for z in self.zones}
        threshold = self.settings.zone_share
        for i, name in enumerate(names):
            for j, zone in enumerate(self.zones):
                if shares.area[i] and shares.zone[i, j] >= threshold and self._applies(zone, name):
                    occupancy[zone.name][name] = occupancy[zone.name].get(name, 0) + 1
                    inside[i].append(zone.name)
        return occupancy

    def _tracked_occupancy(self) -> dict[str, dict[str, int]]:
        """Tracks (seen now, or unseen for less than ``lost_seconds``) with at least ``zone_share`` of their mask
        in the zone at their last sighting: the count as it is now, without the events' hysteresis."""
        occupancy: dict[str, dict[str, int]] = {z.name: {} for z in self.zones}
        threshold = self.settings.zone_share
        for track in self._tracks.values():
            for zone, share in track.shares.items():
                if share >= threshold:
                    counts = occupancy[zone]
                    counts[track.class_name] = counts.get(track.class_name, 0) + 1
        return occupancy

    def _reacquire(self, box: np.ndarray, class_name: str, time: float, frame: int) -> _Track | None:
        """The lost track (unseen this frame, within ``lost_seconds``) this new id most likely is: its predicted box
        overlaps ``box`` by ``reacquire_iou``, or (a small object that moved on during the gap) lies within half its
        own diagonal of it at a similar size and is of the same class. Overlap ranks before distance."""
        threshold = self.settings.reacquire_iou
        best, best_score = None, 0.0
        assert self._maps is not None
        height, width = self._maps.height, self._maps.width
        for track_id, track in self._tracks.items():
            x0, y0, x1, y1 = track.box
            at_edge = x0 <= EDGE or y0 <= EDGE or x1 >= width - EDGE or y1 >= height - EDGE
            if track.last_frame >= frame or at_edge:  # last seen at the frame's edge: it left the picture
                continue
            predicted = track.predicted(time)
            score = _iou(predicted, box)
            if score < threshold:
                size, other = _area(predicted), _area(box)
                diagonal = float(np.hypot(predicted[2] - predicted[0], predicted[3] - predicted[1]))
                distance = float(np.hypot(*(_centre(predicted) - _centre(box))))
                similar = size > 0 and 0.5 <= other / size <= 2.0 and track.class_name == class_name
                score = threshold * (1 - distance / diagonal) if similar and diagonal > 0 and \
                    distance <= REACQUIRE_DISTANCE * diagonal else 0.0
            if score > best_score:
                best, best_score = track_id, score
        if best is None:
            return None
        self.tally.reacquired += 1
        return self._tracks.pop(best)

    def _update_tracks(self, detections: Detections, names: list[str], shares: RegionShares, time: float, frame: int,
                       event: Any, inside: list[list[str]]) -> None:
        settings = self.settings
        half = settings.zone_margin / 2
        enter_at, leave_below = min(settings.zone_share + half, 1.0), settings.zone_share - half
        decided = 0.5 + settings.line_margin
        ids = detections.track_ids
        order = np.argsort(-detections.scores, kind="stable")  # the surest detection takes over a lost track first
        for i in order:
            track_id = int(ids[i])
            if track_id < 0 or not shares.area[i]:
                continue
            box = detections.boxes[i].astype(np.float64)
            track = self._tracks.get(track_id)
            if track is None:
                track = self._reacquire(box, names[i], time, frame) or _Track(names[i], time, frame, box)
                self._tracks[track_id] = track
            track.seen(box, time, frame, names[i])
            name = track.class_name
            for j, zone in enumerate(self.zones):
                if not self._applies(zone, name):
                    continue
                share = float(shares.zone[i, j])
                track.shares[zone.name] = share
                member = zone.name in track.zones
                # The edge: when the share last crossed zone_share, towards where it is now (a visit's true start
                # or end); the decision waits until it is past zone_share by half the margin either way.
                if (share >= settings.zone_share) != member:
                    track.edges.setdefault(zone.name, time)
                else:
                    track.edges.pop(zone.name, None)
                if not member and share >= enter_at:
                    track.zones[zone.name] = track.edges.pop(zone.name, time)
                    self.tally.entered[zone.name][name] += 1
                    event("enter", zone.name, "zone", track_id=track_id, class_name=name, share=share)
                elif member and share < leave_below:
                    self._exit(track, track_id, zone.name, track.edges.pop(zone.name, time), event, share)
                if share >= settings.zone_share:
                    inside[i].append(zone.name)
                if zone.name in track.zones:
                    dwell = time - track.zones[zone.name]
                    if settings.loiter_seconds > 0 and dwell >= settings.loiter_seconds \
                            and zone.name not in track.loitered:
                        track.loitered.add(zone.name)
                        self.tally.loiters[zone.name] += 1
                        event("loiter", zone.name, "zone", track_id=track_id, class_name=name, share=share,
                              dwell=dwell, entered=track.zones[zone.name])
            for j, line in enumerate(self.lines):
                if not self._applies(line, name):
                    continue
                if shares.extent[i, j] < LINE_EXTENT:
                    track.sides.pop(line.name, None)  # beside the line: round its end is no crossing
                    continue
                left = float(shares.left[i, j])
                side = "left" if left >= decided else "right" if 1 - left >= decided else None
                before = track.sides.get(line.name)
                if side is None or side == before:
                    track.turning.pop(line.name, None)
                    continue
                if before is not None:  # a change of side must hold for CROSSING_SIGHTINGS sightings in a row
                    track.turning[line.name] = track.turning.get(line.name, 0) + 1
                    if track.turning[line.name] < CROSSING_SIGHTINGS:
                        continue
                track.turning.pop(line.name, None)
                track.sides[line.name] = side
                if before is not None:
                    direction = "in" if side == line.in_side else "out"
                    self.tally.crossed[line.name][direction][name] += 1
                    event("cross", line.name, "line", track_id=track_id, class_name=name, direction=direction,
                          share=left if side == "left" else 1 - left)
        for track_id in [t for t, track in self._tracks.items() if time - track.last_time > settings.lost_seconds]:
            track = self._tracks.pop(track_id)
            for zone_name in list(track.zones):
                self._exit(track, track_id, zone_name, track.edges.get(zone_name, track.last_time), event, None)

    def _exit(self, track: _Track, track_id: int, zone: str, ended: float, event: Any, share: float | None) -> None:
        """``track`` leaves ``zone``; its visit ended at ``ended`` (when its share fell below zone_share, or its
        last sighting when it was lost)."""
        entered = track.zones.pop(zone)
        track.loitered.discard(zone)
        dwell = ended - entered
        self.tally.dwell[zone].append(dwell)
        event("exit", zone, "zone", track_id=track_id, class_name=track.class_name, share=share, dwell=dwell,
              entered=entered)

