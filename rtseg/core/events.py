"""What scene analytics tells: one ``SceneEvent`` per happening, and the ``SceneState`` a frame is drawn with.

Both ride on the ``Frame`` (``frame.events``, ``frame.scene``) from the analytics
step to the renderer and the sinks, so that an event, the picture it is drawn
on and the line written for it always belong to the same frame.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

import numpy as np

EVENT_KINDS = ("enter", "exit", "cross", "loiter", "occupancy")


@dataclass(frozen=True)
class SceneEvent:
    """One event of one stream.

    ``time`` is the frame's own timestamp in seconds (the source's clock: right for
    variable frame rates and for replays); ``wall_time`` the Unix time at which
    the frame was captured. ``share`` is the part of the object's mask that
    decided the event (inside the zone; on the side it crossed to).
    """

    kind: str
    stream: str
    region: str  # the zone's or the line's name
    region_kind: str  # 'zone' or 'line'
    time: float
    wall_time: float
    frame: int
    track_id: int = -1
    class_name: str | None = None
    share: float | None = None
    direction: str | None = None  # cross: 'in' or 'out'
    dwell: float | None = None  # exit and loiter: seconds inside the zone so far
    entered: float | None = None  # exit and loiter: when the visit began (its share crossed zone_share)
    count: int | None = None  # occupancy: objects inside now
    counts: dict[str, int] | None = None  # occupancy: objects inside now, per class

    def as_dict(self) -> dict[str, Any]:
        """The event as one JSON object (JSON Lines, MQTT payloads, webhooks), absent fields left out."""
        data: dict[str, Any] = {
            "kind": self.kind, "stream": self.stream, self.region_kind: self.region,
            "time": round(self.time, 6),
            "wall_time": datetime.datetime.fromtimestamp(self.wall_time, datetime.timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "frame": self.frame,
        }
        if self.track_id >= 0:
            data["track_id"] = self.track_id
        optional = {"class": self.class_name, "direction": self.direction, "count": self.count, "counts": self.counts,
                    "share": None if self.share is None else round(self.share, 4),
                    "dwell": None if self.dwell is None else round(self.dwell, 3),
                    "entered": None if self.entered is None else round(self.entered, 6)}
        data.update({k: v for k, v in optional.items() if v is not None})
        return data


@dataclass
class ZoneState:
    """A zone as drawn now: its corners in pixels, who is inside, and its totals so far."""

    name: str
    polygon: np.ndarray  # (K, 2) float pixels
    inside: dict[str, int] = field(default_factory=dict)  # class -> objects inside now
    entered: dict[str, int] = field(default_factory=dict)  # class -> entries so far (tracked runs)

    @property
    def occupancy(self) -> int:
        return sum(self.inside.values())


@dataclass
class LineState:
    """A line as drawn now: its points in pixels, its "in" side and its crossings so far per class."""

    name: str
    points: np.ndarray  # (K, 2) float pixels
    in_side: str
    crossed_in: dict[str, int] = field(default_factory=dict)
    crossed_out: dict[str, int] = field(default_factory=dict)


@dataclass
class SceneState:
    """Every zone and line of a stream after one frame, and for each detection the zones it is inside."""

    zones: list[ZoneState] = field(default_factory=list)
    lines: list[LineState] = field(default_factory=list)
    inside: list[tuple[str, ...]] = field(default_factory=list)  # per detection, in the frame's detection order
