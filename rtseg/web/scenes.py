"""Zones and lines drawn on the page: checked once, kept by id, then used by image results, video jobs and the webcam.

The page posts its regions (``POST /api/regions``, JSON ``{"zones": [...],
"lines": [...]}`` in ``rtseg.core.regions``' format) and passes the returned id
to the image, video and webcam endpoints. One id instead of the geometry in
every URL keeps the image's ``<img src>`` and download links short and exact
(16 zones of 64 points do not fit in a URL that every server accepts), and every
endpoint gets regions that were checked the same way, once.

Limits, so that hostile input costs bounded time and memory: the body is at
most ``MAX_BODY`` bytes (nesting depth included), at most ``MAX_REGIONS`` zones
and lines and ``MAX_POINTS`` points each (the self-crossing check is quadratic
in points), and at most ``STORE_SIZE`` region sets are kept (least recently used
dropped first). Points must be fractions of the frame (0..1), as the page sends
them, so a region set fits an image, a video and a webcam of any size and is
fully checked before any frame is seen.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from rtseg.analytics.scene import SceneAnalytics
from rtseg.core.config import AnalyticsConfig
from rtseg.core.errors import ConfigError
from rtseg.core.events import SceneEvent, SceneState
from rtseg.core.regions import Line, Zone, check_unique, line_from_dict, zone_from_dict
from rtseg.core.structures import Detections
from rtseg.render.scene import line_text, zone_text

MAX_BODY = 64 * 1024
MAX_REGIONS = 16
MAX_POINTS = 64
STORE_SIZE = 64
RECENT_EVENTS = 50  # events a video job's status and the page's lists keep (the JSON Lines file keeps all)
STILL_LINES = ("lines count crossings of moving objects, and a still image has no motion: draw zones on an image "
               "(lines work on the Video and Webcam tabs)")


class RegionsError(ValueError):
    """One line for the page: what is wrong with the zones and lines it sent."""


@dataclass(frozen=True)
class Regions:
    """A checked set of zones and lines, in fractions of the frame."""

    zones: tuple[Zone, ...]
    lines: tuple[Line, ...]

    def analytics(self, base: AnalyticsConfig) -> AnalyticsConfig:
        """``base`` (the server's analytics settings) with these zones and lines."""
        return replace(base, zones=[z.as_dict() for z in self.zones], lines=[ln.as_dict() for ln in self.lines])

    def scene(self, settings: AnalyticsConfig, *, stream: str, tracked: bool) -> SceneAnalytics:
        return SceneAnalytics(self.zones, self.lines, settings, stream=stream, tracked=tracked)


def _count_points(entry: Any) -> int:
    """An entry's number of points as the library reads them (pairs, or a flat list of x, y), before parsing."""
    points = entry.get("points") if isinstance(entry, dict) else None
    if not isinstance(points, list):
        return 0
    return len(points) if points and isinstance(points[0], list) else len(points) // 2


def _entries(data: dict[str, Any], key: str) -> list[Any]:
    entries = data.get(key) or []
    if not isinstance(entries, list):
        raise RegionsError(f"{key} must be a list, got {type(entries).__name__}")
    return entries


def parse_regions(body: bytes, class_names: Sequence[str]) -> Regions:
    """The page's JSON as checked regions; every problem is one ``RegionsError`` line in the page's words."""
    if len(body) > MAX_BODY:
        raise RegionsError(f"the zones and lines are {len(body)} bytes of JSON: at most {MAX_BODY} are accepted")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: thousands of nested brackets
        raise RegionsError("the zones and lines are not valid JSON") from None
    if not isinstance(data, dict) or set(data) - {"zones", "lines"}:
        raise RegionsError('expected JSON {"zones": [...], "lines": [...]}')
    zone_entries, line_entries = _entries(data, "zones"), _entries(data, "lines")
    if len(zone_entries) + len(line_entries) > MAX_REGIONS:
        raise RegionsError(f"{len(zone_entries) + len(line_entries)} zones and lines: at most {MAX_REGIONS} at once")
    for kind, entries in (("zone", zone_entries), ("line", line_entries)):
        for i, entry in enumerate(entries):
            if _count_points(entry) > MAX_POINTS:
                raise RegionsError(f"{kind} {i + 1} has {_count_points(entry)} points: at most {MAX_POINTS}")
    try:
        zones = tuple(zone_from_dict(entry, f"zone {i + 1}") for i, entry in enumerate(zone_entries))
        lines = tuple(line_from_dict(entry, f"line {i + 1}") for i, entry in enumerate(line_entries))
        check_unique(zones, lines, "names")
        SceneAnalytics(zones, lines, stream="zones and lines").check_classes(class_names)
    except ConfigError as exc:
        raise RegionsError(str(exc)) from None
    every: tuple[Zone | Line, ...] = (*zones, *lines)
    for region in every:
        if not region.fractional:
            kind = "zone" if isinstance(region, Zone) else "line"
            raise RegionsError(f"{kind} {region.name!r}: points must be fractions of the picture, from 0 to 1")
    return Regions(zones, lines)


def regions_id(regions: Regions) -> str:
    """The same regions always get the same id: posting them again (every refresh does) adds nothing."""
    canonical = json.dumps({"zones": [z.as_dict() for z in regions.zones],
                            "lines": [ln.as_dict() for ln in regions.lines]}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class RegionStore:
    """Region sets by id, at most ``capacity`` (least recently used dropped), each dropped ``keep_seconds`` after use."""

    def __init__(self, capacity: int, keep_seconds: float) -> None:
        self.capacity = capacity
        self.keep_seconds = keep_seconds
        self._sets: OrderedDict[str, tuple[Regions, float]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, regions: Regions) -> str:
        key = regions_id(regions)
        with self._lock:
            self._sets[key] = (regions, time.monotonic())
            self._sets.move_to_end(key)
            while len(self._sets) > self.capacity:
                self._sets.popitem(last=False)
        return key

    def get(self, key: str) -> Regions | None:
        with self._lock:
            found = self._sets.get(key)
            if found is None:
                return None
            self._sets[key] = (found[0], time.monotonic())
            self._sets.move_to_end(key)
            return found[0]

    def expire(self, now: float) -> None:
        with self._lock:
            for key in [k for k, (_, used) in self._sets.items() if now - used > self.keep_seconds]:
                del self._sets[key]

    def __len__(self) -> int:
        return len(self._sets)


def scene_dict(state: SceneState) -> dict[str, Any]:
    """What the page shows of a scene: per zone who is inside, per line the crossings, each with its text line."""
    return {"zones": [{"name": z.name, "inside": dict(z.inside), "occupancy": z.occupancy, "entered": dict(z.entered),
                       "text": zone_text(z)} for z in state.zones],
            "lines": [{"name": ln.name, "in_side": ln.in_side, "crossed_in": dict(ln.crossed_in),
                       "crossed_out": dict(ln.crossed_out), "text": line_text(ln)} for ln in state.lines]}


def shown_events(events: Iterable[SceneEvent]) -> list[dict[str, Any]]:
    """The events the page lists: 'occupancy' ones are left out, since the live counts show the same thing."""
    return [e.as_dict() for e in events if e.kind != "occupancy"]


def still_scene(regions: Regions, settings: AnalyticsConfig, detections: Detections, height: int,
                width: int) -> SceneState:
    """Who is inside each zone of a still image: occupancy only (an image has no tracks, so lines are refused)."""
    if regions.lines:
        raise RegionsError(STILL_LINES)
    scene = regions.scene(settings, stream="image", tracked=False)
    scene.update(detections, time=0.0, frame=0, height=height, width=width)
    return scene.state
