"""Drawing colours derived from identity, so an object keeps its colour for as long as its id.

``color_for_id(track_id)`` is a pure function of the integer: the same id gets the
same colour in every frame, every run and every process, with no palette state
to carry between frames. Hues step by the golden ratio of a turn, which spreads
any run of consecutive ids evenly around the colour wheel (each new hue falls
into the largest gap left by the previous ones); brightness cycles over three
levels so that the few ids whose hues do land close together (those 13 or 21
apart) still differ in lightness. Saturation stays high enough to read over
video. Negative keys (-1: detection without a confirmed track) get one neutral
grey, which no id colour resembles since they are all strongly saturated.
"""

from __future__ import annotations

import colorsys

NEUTRAL: tuple[int, int, int] = (190, 190, 190)
_GOLDEN_TURN = (5 ** 0.5 - 1) / 2  # 0.618... of a full hue turn per id
_SATURATION = 0.85
_VALUES = (1.0, 0.8, 0.6)


def color_for_id(key: int) -> tuple[int, int, int]:
    """RGB colour (0-255 each) of track id ``key``; the neutral grey for ``key < 0``."""
    key = int(key)  # numpy integers from a track_ids array alike
    if key < 0:
        return NEUTRAL
    hue = (key * _GOLDEN_TURN) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, _SATURATION, _VALUES[key % len(_VALUES)])
    return round(r * 255), round(g * 255), round(b * 255)
