"""Identity colours: a fixed function of the id, with neighbouring ids easy to tell apart."""

from __future__ import annotations

import itertools

import numpy as np

from rtseg.render.colors import NEUTRAL, color_for_id


def _lab(rgb: tuple[int, int, int]) -> np.ndarray:
    """CIE L*a*b* (D65) of an sRGB colour, to measure differences as people see them."""
    c = np.array(rgb, float) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ c
    t = xyz / [0.95047, 1.0, 1.08883]  # relative to the D65 white point
    f = np.where(t > 0.008856, np.cbrt(t), 7.787 * t + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def _delta_e(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    return float(np.linalg.norm(_lab(a) - _lab(b)))


def test_rgb_triples_of_ints() -> None:
    for key in [-1, 0, 1, 2, 17, 12345, np.int64(3)]:
        colour = color_for_id(key)
        assert len(colour) == 3 and all(type(v) is int and 0 <= v <= 255 for v in colour)


def test_same_id_same_colour_in_every_run() -> None:
    # Fixed values: a change here recolours every id in every saved video.
    assert color_for_id(1) == (31, 81, 204)
    assert color_for_id(2) == (99, 153, 23)
    assert color_for_id(3) == (255, 38, 228)
    assert [color_for_id(k) for k in range(50)] == [color_for_id(k) for k in range(50)]
    assert color_for_id(np.int64(7)) == color_for_id(7)


def test_unconfirmed_is_neutral_and_unlike_any_id() -> None:
    assert color_for_id(-1) == NEUTRAL
    assert min(_delta_e(NEUTRAL, color_for_id(k)) for k in range(1, 200)) > 30


def test_first_twenty_ids_are_distinct() -> None:
    colours = [color_for_id(k) for k in range(1, 21)]
    assert len(set(colours)) == 20
    # CIE76 difference: ~2.3 is just noticeable; 15+ is an obviously different colour.
    assert min(_delta_e(a, b) for a, b in itertools.combinations(colours, 2)) > 15
    assert min(_delta_e(a, b) for a, b in zip(colours, colours[1:])) > 40
