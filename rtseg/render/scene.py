"""Drawing zones and lines with their live counts, and marking the objects inside a zone.

``SceneAnnotator.annotate(scene, detections, state)`` draws onto an already
rendered frame, after the masks, so the regions and their counts stay readable
over busy scenes. Zone colours come from a fixed palette by the zone's place in
the stream's list (not by name hash), so the first zone is always the same
colour in the video, on the page and in the README.
"""

from __future__ import annotations

import cv2
import numpy as np

from rtseg.core.events import LineState, SceneState, ZoneState
from rtseg.core.structures import Detections
from rtseg.render.renderer import draw_label

ZONE_COLORS: tuple[tuple[int, int, int], ...] = ((255, 196, 0), (0, 200, 255), (255, 64, 160), (120, 255, 80),
                                                 (200, 120, 255), (255, 120, 40))
LINE_COLOR = (255, 255, 255)
IN_COLOR = (60, 220, 90)
ZONE_FILL = 0.18  # opacity of a zone's tint: the scene must stay visible through it


def zone_color(index: int) -> tuple[int, int, int]:
    return ZONE_COLORS[index % len(ZONE_COLORS)]


def _per_class(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items()) if n)


def zone_text(zone: ZoneState) -> str:
    """'door: 2 inside (person 2), 7 entered'."""
    inside = _per_class(zone.inside)
    text = f"{zone.name}: {zone.occupancy} inside" + (f" ({inside})" if inside else "")
    entered = sum(zone.entered.values())
    return text + (f", {entered} entered" if entered else "")


def line_text(line: LineState) -> str:
    """'gate: in 3, out 1'."""
    return f"{line.name}: in {sum(line.crossed_in.values())}, out {sum(line.crossed_out.values())}"


class SceneAnnotator:
    """Draws a stream's ``SceneState``: tinted zones, lines with an arrow to their "in" side, counts, members."""

    def __init__(self, line_width: int = 2) -> None:
        self.line_width = line_width

    def annotate(self, scene: np.ndarray, detections: Detections, state: SceneState) -> np.ndarray:
        """Draws in place on ``scene`` (an RGB frame) and returns it."""
        width = max(1, self.line_width)
        for index, zone in enumerate(state.zones):
            self._zone(scene, zone, zone_color(index), width)
        for line in state.lines:
            self._line(scene, line, width)
        colors = {zone.name: zone_color(index) for index, zone in enumerate(state.zones)}
        for i, zones in enumerate(state.inside[: len(detections)]):
            if zones:
                x1, y1, x2, y2 = (int(round(v)) for v in detections.boxes[i])
                gap = 2 * width + 1  # the frame goes round the object's own box, leaving the object visible
                cv2.rectangle(scene, (x1 - gap, y1 - gap), (x2 + gap, y2 + gap), colors[zones[0]], width)
                draw_label(scene, "in " + ", ".join(zones), (x1 - gap, y2 + gap + 1), colors[zones[0]])
        return scene

    @staticmethod
    def _zone(scene: np.ndarray, zone: ZoneState, color: tuple[int, int, int], width: int) -> None:
        corners = np.round(zone.polygon).astype(np.int32)
        x, y, w, h = cv2.boundingRect(corners)
        x, y = max(x, 0), max(y, 0)
        w, h = min(w, scene.shape[1] - x), min(h, scene.shape[0] - y)
        if w > 0 and h > 0:
            region = scene[y:y + h, x:x + w]
            tint = region.copy()
            cv2.fillPoly(tint, [corners - (x, y)], color)
            cv2.addWeighted(tint, ZONE_FILL, region, 1 - ZONE_FILL, 0, dst=region)
        cv2.polylines(scene, [corners], True, color, width, cv2.LINE_AA)
        top = corners[np.argmin(corners[:, 1] * 100000 + corners[:, 0])]
        draw_label(scene, zone_text(zone), (int(top[0]), int(top[1])), color)

    @staticmethod
    def _line(scene: np.ndarray, line: LineState, width: int) -> None:
        points = np.round(line.points).astype(np.int32)
        cv2.polylines(scene, [points], False, LINE_COLOR, width + 1, cv2.LINE_AA)
        a, b = line.points[0], line.points[1]
        middle = (a + b) / 2
        direction = (b - a) / max(float(np.hypot(*(b - a))), 1e-9)
        # On the screen (y down) the left hand of a walk along (dx, dy) points to (dy, -dx).
        left = np.array([direction[1], -direction[0]])
        towards = left if line.in_side == "left" else -left
        length = max(12.0, min(scene.shape[:2]) / 20)
        tip = middle + towards * length
        cv2.arrowedLine(scene, tuple(int(v) for v in np.round(middle)), tuple(int(v) for v in np.round(tip)),
                        IN_COLOR, width + 1, cv2.LINE_AA, tipLength=0.35)
        draw_label(scene, line_text(line), (int(points[0][0]), int(points[0][1])), LINE_COLOR)
