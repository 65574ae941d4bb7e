"""Zones and lines: the places scene analytics decides about, as checked geometry.

A ``Zone`` is a simple polygon, a ``Line`` a polyline of two or more points.
Their points are either pixels or fractions of the frame: when every coordinate
lies in 0..1 they are fractions (a zone drawn on a page or written once for
cameras of several sizes), otherwise pixels. Everything that can be checked
without a frame is checked on construction (too few points, a self-intersecting
polygon, a line of zero length); ``pixels(height, width)`` checks the rest (a
point outside the frame). Every problem is one ``ConfigError`` line naming the
region, so a bad zone stops the run before any work.

Which side of a line is "in": walking the line from its first point to its
last, as seen on the screen, ``in_side`` is the hand that side is on
(``left`` or ``right``). For ``0,0.5 -> 1,0.5`` (left to right across the
middle) ``left`` is the upper half.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from rtseg.core.errors import ConfigError

Point = tuple[float, float]
SIDES = ("left", "right")
MAX_POINTS = 100  # per zone or line: rasterising costs a pass over the frame per segment of a line
MAX_REGIONS = 32  # zones and lines per stream: each costs a bit (a line two) of every pixel's code
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # also an MQTT topic level and a file-name part


def _points(kind: str, name: str, raw: object, least: int) -> tuple[Point, ...]:
    """``raw`` as finite (x, y) pairs: [[x, y], ...] or a flat [x, y, x, y, ...]."""
    where = f"{kind} {name!r}"
    if isinstance(raw, np.ndarray):
        raw = raw.tolist()
    values = list(raw) if isinstance(raw, (list, tuple)) else None
    if values is None:
        raise ConfigError(f"{where}: points must be a list of [x, y] pairs, got {type(raw).__name__}")
    if values and all(isinstance(v, (list, tuple)) for v in values):
        pairs = [tuple(v) for v in values]
    elif len(values) % 2 == 0:
        pairs = [(values[i], values[i + 1]) for i in range(0, len(values), 2)]
    else:
        raise ConfigError(f"{where}: an odd number of coordinates ({len(values)}): points are x, y pairs")
    points = []
    for pair in pairs:
        if len(pair) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair):
            raise ConfigError(f"{where}: {list(pair)!r} is not an [x, y] pair of numbers")
        x, y = float(pair[0]), float(pair[1])
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ConfigError(f"{where}: the point ({x}, {y}) is not finite")
        points.append((x, y))
    if len(points) < least:
        raise ConfigError(f"{where}: needs at least {least} points, got {len(points)}")
    if len(points) > MAX_POINTS:
        raise ConfigError(f"{where}: at most {MAX_POINTS} points, got {len(points)}")
    return tuple(points)


def _check_name(kind: str, name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{kind} name {name!r}: use 1-64 letters, digits, '_', '-' or '.', starting with a letter "
                          "or digit")
    return name


def _classes(kind: str, name: str, raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [c for c in raw.split(",") if c]
    if not isinstance(raw, (list, tuple)) or not all(isinstance(c, str) and c for c in raw):
        raise ConfigError(f"{kind} {name!r}: classes must be a list of class names")
    return tuple(raw)


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _segments_cross(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    """Whether two closed segments share a point (touching and collinear overlap included)."""
    d1, d2 = _cross(q1, q2, p1), _cross(q1, q2, p2)
    d3, d4 = _cross(p1, p2, q1), _cross(p1, p2, q2)
    if ((d1 > 0) != (d2 > 0) and d1 != 0 and d2 != 0) and ((d3 > 0) != (d4 > 0) and d3 != 0 and d4 != 0):
        return True

    def on(a: Point, b: Point, c: Point, d: float) -> bool:
        return d == 0 and min(a[0], b[0]) <= c[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= c[1] <= max(a[1], b[1])

    return on(q1, q2, p1, d1) or on(q1, q2, p2, d2) or on(p1, p2, q1, d3) or on(p1, p2, q2, d4)


def _fractional(points: Iterable[Point]) -> bool:
    return all(0.0 <= v <= 1.0 for point in points for v in point)


def _in_frame(kind: str, name: str, points: Sequence[Point], height: int, width: int) -> np.ndarray:
    """(K, 2) float pixel coordinates; a point outside the frame is a ConfigError."""
    scale = (width, height) if _fractional(points) else (1, 1)
    pixels = np.array(points, np.float64) * np.array(scale, np.float64)
    for (x, y), original in zip(pixels, points):
        if not (0 <= x <= width and 0 <= y <= height):
            raise ConfigError(f"{kind} {name!r}: the point ({original[0]:g}, {original[1]:g}) lies outside the "
                              f"{width}x{height} frame")
    return pixels


@dataclass(frozen=True, init=False)
class Region:
    """What zones and lines share: a checked name, points and classes, and their conversion to pixels."""

    kind: ClassVar[str] = "region"
    name: str
    points: tuple[Point, ...]
    classes: tuple[str, ...]

    @property
    def fractional(self) -> bool:
        return _fractional(self.points)

    def pixels(self, height: int, width: int) -> np.ndarray:
        """The points in pixels of a ``width`` x ``height`` frame: (K, 2) float x, y."""
        return _in_frame(self.kind, self.name, self.points, height, width)

    def as_dict(self) -> dict[str, Any]:
        """The region as a configuration entry (``analytics.zones`` / ``analytics.lines``)."""
        data: dict[str, Any] = {"name": self.name, "points": [list(p) for p in self.points]}
        if self.classes:
            data["classes"] = list(self.classes)
        return data


@dataclass(frozen=True, init=False)
class Zone(Region):
    """A named polygon; ``classes`` limits it to those classes (empty: every class).

    ``points``: [(x, y), ...] or a flat [x, y, x, y, ...], at least three corners.
    """

    kind: ClassVar[str] = "zone"

    def __init__(self, name: str, points: Sequence[Sequence[float]] | Sequence[float],
                 classes: Sequence[str] | str = ()) -> None:
        name = _check_name("zone", name)
        corners = _points("zone", name, points, 3)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "points", corners)
        object.__setattr__(self, "classes", _classes("zone", name, classes))
        area = 0.5 * abs(sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(corners, corners[1:] + corners[:1])))
        if area == 0:
            raise ConfigError(f"zone {name!r}: its points enclose no area")
        edges = list(zip(corners, corners[1:] + corners[:1]))
        for i, (a, b) in enumerate(edges):
            if a == b:
                raise ConfigError(f"zone {name!r}: the point ({a[0]:g}, {a[1]:g}) is repeated")
            for j in range(i + 2, len(edges)):
                if i == 0 and j == len(edges) - 1:
                    continue  # the closing edge meets the first one at their shared corner
                if _segments_cross(a, b, *edges[j]):
                    raise ConfigError(f"zone {name!r} crosses itself (its edges {i + 1} and {j + 1} meet)")



@dataclass(frozen=True, init=False)
class Line(Region):
    """A named polyline that objects cross; ``in_side`` is the side whose arrivals count as "in".

    ``points``: [(x, y), ...] or a flat [x, y, x, y, ...], at least two.
    """

    kind: ClassVar[str] = "line"
    in_side: str

    def __init__(self, name: str, points: Sequence[Sequence[float]] | Sequence[float], in_side: str = "left",
                 classes: Sequence[str] | str = ()) -> None:
        name = _check_name("line", name)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "points", _points("line", name, points, 2))
        object.__setattr__(self, "classes", _classes("line", name, classes))
        if in_side not in SIDES:
            raise ConfigError(f"line {name!r}: in must be left or right, got {in_side!r}")
        object.__setattr__(self, "in_side", in_side)
        for a, b in zip(self.points, self.points[1:]):
            if a == b:
                raise ConfigError(f"line {name!r} is degenerate: the point ({a[0]:g}, {a[1]:g}) is repeated")

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "in": self.in_side}


def zone_from_dict(entry: Any, where: str) -> Zone:
    """A zone from a configuration entry ``{name, points, classes}``."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping with name and points, got {type(entry).__name__}")
    unknown = set(entry) - {"name", "points", "classes"}
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: name, points, classes)")
    if "name" not in entry or "points" not in entry:
        raise ConfigError(f"{where}: a zone needs a name and points")
    return Zone(entry["name"], entry["points"], entry.get("classes") or ())


def line_from_dict(entry: Any, where: str) -> Line:
    """A line from a configuration entry ``{name, points, in, classes}``."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping with name and points, got {type(entry).__name__}")
    unknown = set(entry) - {"name", "points", "in", "classes"}
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: name, points, in, classes)")
    if "name" not in entry or "points" not in entry:
        raise ConfigError(f"{where}: a line needs a name and points")
    return Line(entry["name"], entry["points"], entry.get("in", "left"), entry.get("classes") or ())


def _split_spec(kind: str, text: str) -> tuple[str, list[float], list[str]]:
    """``NAME=x,y,x,y[:extra[:extra]]`` as the name, the numbers and the extras."""
    name, sep, rest = text.partition("=")
    if not sep or not name:
        raise ConfigError(f"--{kind} {text!r}: expected NAME=x,y,x,y,... (coordinates in pixels or 0..1)")
    coordinates, *extras = rest.split(":")
    try:
        numbers = [float(v) for v in coordinates.split(",")]
    except ValueError:
        raise ConfigError(f"--{kind} {name}: coordinates must be numbers, got {coordinates!r}") from None
    return name, numbers, extras


def parse_zone(text: str) -> Zone:
    """``--zone NAME=x,y,x,y,x,y[:class,class]``."""
    name, numbers, extras = _split_spec("zone", text)
    if len(extras) > 1:
        raise ConfigError(f"--zone {name}: expected at most one ':classes' part, got {len(extras)}")
    return Zone(name, numbers, extras[0] if extras else ())


def parse_line(text: str) -> Line:
    """``--line NAME=x,y,x,y[:left|right][:class,class]``."""
    name, numbers, extras = _split_spec("line", text)
    side = [e for e in extras if e in SIDES]
    classes = [e for e in extras if e not in SIDES]
    if len(side) > 1 or len(classes) > 1:
        raise ConfigError(f"--line {name}: expected at most one side (left or right) and one ':classes' part")
    return Line(name, numbers, side[0] if side else "left", classes[0] if classes else ())


def check_unique(zones: Sequence[Zone], lines: Sequence[Line], where: str) -> None:
    """Region names are how events, counts and topics tell them apart: each may be used once."""
    names = [z.name for z in zones] + [ln.name for ln in lines]
    if len(names) > MAX_REGIONS:
        raise ConfigError(f"{where}: at most {MAX_REGIONS} zones and lines per stream, got {len(names)}")
    for name in sorted({n for n in names if names.count(n) > 1}):
        raise ConfigError(f"{where}: the name {name!r} is given to several zones or lines")
