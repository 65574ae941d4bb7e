"""Hand-made object motion shared by the tracker's tests."""

from __future__ import annotations

MEETING_FRAMES = 40


def box(cx: float, cy: float, w: float = 40.0, h: float = 80.0) -> list[float]:
    """An xyxy box around a centre."""
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def meeting_boxes(t: int) -> list[list[float]]:
    """Frame ``t`` of two objects of one size that approach, meet at frame 18 and go back the way they came:
    at the turn, motion points each track at the other object."""
    shift = 8 * t if t < 18 else 8 * (36 - t)
    return [box(100 + shift, 200), box(400 - shift, 200)]
