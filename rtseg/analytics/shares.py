"""How much of each object's mask lies in each zone and on each side of each line.

``RegionMaps`` rasterises a stream's zones and lines once per frame size into
boolean planes, one per zone and two per line (the pixels on its left and on
its right, within its extent), packed as one bit each of a per-pixel code. ``shares`` then reads each mask only
inside its own box, at a stride that keeps at most ``SAMPLE_PIXELS`` samples per
object, so the cost is per object, not per frame pixel (docs/analytics.md has the
measured figure and its command).

A line's extent: the pixels whose nearest point on the polyline is not beyond
one of its two ends. An object walking round the end of a line is beside it,
never across it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rtseg.core.regions import Line, Zone
from rtseg.core.structures import Detections

SAMPLE_PIXELS = 4096  # most mask samples read per object: objects up to this many box pixels are read whole
BOX_MARGIN = 0.05  # masks may reach a little past their box (torchvision pastes them with a one-pixel border)


def _polygon_plane(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """The pixels whose centres lie inside ``polygon`` (even-odd rule; a centre on a left edge is in, on a right
    edge out), so that a zone from x = 0 to x = 100 holds exactly the columns 0..99."""
    plane = np.zeros((height, width), bool)
    a, b = polygon, np.roll(polygon, -1, axis=0)
    centres = np.arange(height) + 0.5
    for row, y in enumerate(centres):
        crossing = (a[:, 1] <= y) != (b[:, 1] <= y)
        if not crossing.any():
            continue
        ya, yb, xa, xb = a[crossing, 1], b[crossing, 1], a[crossing, 0], b[crossing, 0]
        xs = np.sort(xa + (y - ya) * (xb - xa) / (yb - ya))
        for start, end in zip(xs[0::2], xs[1::2]):  # pixel x is in when start <= x + 0.5 < end
            first, stop = max(0, math.ceil(start - 0.5)), min(width, math.ceil(end - 0.5))
            plane[row, first:stop] = first < stop
    return plane


def _line_sides(points: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) planes of a polyline: pixel centres within its extent, on each hand of its nearest segment."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    xs += 0.5
    ys += 0.5
    best = np.full((height, width), np.inf, np.float32)
    side = np.zeros((height, width), np.float32)
    beyond = np.zeros((height, width), bool)
    last = len(points) - 2
    for j, (a, b) in enumerate(zip(points[:-1], points[1:])):
        dx, dy = float(b[0] - a[0]), float(b[1] - a[1])
        length2 = dx * dx + dy * dy
        px, py = xs - float(a[0]), ys - float(a[1])
        t = (px * dx + py * dy) / length2
        clamped = np.clip(t, 0.0, 1.0)
        distance = (px - clamped * dx) ** 2 + (py - clamped * dy) ** 2
        nearer = distance < best
        best[nearer] = distance[nearer]
        # Image y points down: on the screen, the left hand of a walk along (dx, dy) has a negative cross product.
        side[nearer] = (dx * py - dy * px)[nearer]
        out = np.zeros_like(nearer)
        if j == 0:
            out |= t < 0
        if j == last:
            out |= t > 1
        beyond[nearer] = out[nearer]
    return (side < 0) & ~beyond, (side > 0) & ~beyond


@dataclass
class RegionShares:
    """Per detection (rows): the share of its mask in each zone, on each side of each line, within each line."""

    zone: np.ndarray  # (N, Z) inside each zone, of the mask's area
    left: np.ndarray  # (N, L) on the line's left, of the mask's area within the line's extent
    extent: np.ndarray  # (N, L) within the line's extent, of the mask's area
    area: np.ndarray  # (N,) mask samples (0: an empty mask, every share 0)


class RegionMaps:
    """The zones and lines of a stream rasterised for one frame size (``ConfigError`` if one leaves the frame)."""

    def __init__(self, zones: Sequence[Zone], lines: Sequence[Line], height: int, width: int) -> None:
        self.height, self.width = height, width
        self.zone_polygons = [zone.pixels(height, width) for zone in zones]
        self.line_points = [line.pixels(height, width) for line in lines]
        planes = []
        for polygon in self.zone_polygons:
            planes.append(_polygon_plane(polygon, height, width))
        for points in self.line_points:
            planes.extend(_line_sides(points, height, width))
        # One bit per plane, eight planes to a byte of a per-pixel code: an object's samples are gathered once per
        # byte, counted per code value (bincount) and the counts per plane read off a code-to-bits table.
        stacked = np.stack(planes, axis=-1) if planes else np.zeros((height, width, 0), bool)
        packed = np.packbits(stacked, axis=-1, bitorder="little")
        self.codes = [np.ascontiguousarray(packed[..., b]) for b in range(packed.shape[-1])]
        self.planes = len(planes)
        self.zones, self.lines = len(zones), len(lines)
        self._bits = ((np.arange(256)[:, None] >> np.arange(8)[None, :]) & 1).astype(np.float64)

    def shares(self, detections: Detections) -> RegionShares:
        """Each detection's shares, read inside its box (widened by ``BOX_MARGIN``) at a bounded stride."""
        n, z, l_ = len(detections), self.zones, self.lines
        counts = np.zeros((n, 8 * len(self.codes)), np.float64)
        area = np.zeros(n, np.float64)
        for i, box in enumerate(detections.boxes):
            x0, y0, x1, y1 = (float(v) for v in box)
            pad_x, pad_y = (x1 - x0) * BOX_MARGIN + 1, (y1 - y0) * BOX_MARGIN + 1
            left, top = max(0, int(x0 - pad_x)), max(0, int(y0 - pad_y))
            right, bottom = min(self.width, math.ceil(x1 + pad_x)), min(self.height, math.ceil(y1 + pad_y))
            if right <= left or bottom <= top:
                continue
            step = max(1, math.ceil(math.sqrt((right - left) * (bottom - top) / SAMPLE_PIXELS)))
            window = (slice(top, bottom, step), slice(left, right, step))
            mask = detections.host_mask_window(i, *window)
            area[i] = np.count_nonzero(mask)
            if area[i]:
                for b, codes in enumerate(self.codes):
                    counts[i, 8 * b: 8 * b + 8] = np.bincount(codes[window][mask], minlength=256) @ self._bits
        counts = counts[:, : self.planes]
        safe = np.maximum(area, 1)[:, None]
        sides = counts[:, z:].reshape(n, l_, 2)
        within = sides.sum(axis=2)
        return RegionShares(zone=counts[:, :z] / safe, left=sides[:, :, 0] / np.maximum(within, 1),
                            extent=within / safe, area=area)
