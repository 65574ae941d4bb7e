"""Colours from identity: one deterministic function maps an integer key to a colour."""

from __future__ import annotations

import colorsys

_GOLDEN_RATIO = 0.618033988749895
UNASSIGNED = (160, 160, 160)


def color_for_id(key: int) -> tuple[int, int, int]:
    """RGB colour for ``key``: hues stepped by the golden ratio stay far apart for nearby keys."""
    if key < 0:
        return UNASSIGNED
    hue = (key * _GOLDEN_RATIO) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)
