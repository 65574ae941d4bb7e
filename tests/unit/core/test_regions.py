"""Zones and lines: what is accepted, and the one line each bad geometry gets."""

from __future__ import annotations

import numpy as np
import pytest

from rtseg.core.errors import ConfigError
from rtseg.core.regions import Line, Zone, check_unique, line_from_dict, parse_line, parse_zone, zone_from_dict


def test_a_zone_in_fractions_scales_to_the_frame_and_one_in_pixels_stays():
    zone = parse_zone("door=0.1,0.2,0.4,0.2,0.4,0.9:person,car")
    assert zone.name == "door" and zone.fractional and zone.classes == ("person", "car")
    assert np.allclose(zone.pixels(100, 200), [[20, 20], [80, 20], [80, 90]])
    pixels = Zone("bay", [[10, 10], [150, 10], [150, 90]])
    assert not pixels.fractional and np.allclose(pixels.pixels(100, 200), [[10, 10], [150, 10], [150, 90]])


def test_a_line_takes_its_in_side_and_classes_in_any_order():
    line = parse_line("gate=0,0.5,1,0.5:person:right")
    assert (line.in_side, line.classes, line.points) == ("right", ("person",), ((0.0, 0.5), (1.0, 0.5)))
    assert parse_line("gate=0,0.5,1,0.5:right:person,car").classes == ("person", "car")
    assert parse_line("gate=0,0.5,1,0.5").in_side == "left"
    assert line_from_dict({"name": "g", "points": [[0, 0], [5, 5], [9, 0]], "in": "right"}, "x").points[1] == (5.0, 5.0)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: parse_zone("door=0.1,0.2,0.4,0.2"), "zone 'door': needs at least 3 points, got 2"),
    (lambda: parse_zone("bow=0,0,1,1,1,0,0,0.6"), "zone 'bow' crosses itself (its edges 1 and 3 meet)"),
    (lambda: parse_zone("flat=0,0,0.5,0.5,1,1"), "zone 'flat': its points enclose no area"),
    (lambda: parse_zone("door=0.1,0.2,0.4"), "zone 'door': an odd number of coordinates (3): points are x, y pairs"),
    (lambda: parse_zone("door=0.1,a,0.4,0.2,1,1"), "--zone door: coordinates must be numbers, got '0.1,a,0.4,0.2,1,1'"),
    (lambda: parse_zone("0.1,0.2,0.4,0.2,1,1"), "--zone '0.1,0.2,0.4,0.2,1,1': expected NAME=x,y,x,y,... "
                                                "(coordinates in pixels or 0..1)"),
    (lambda: parse_line("gate=0.5,0.5,0.5,0.5"), "line 'gate' is degenerate: the point (0.5, 0.5) is repeated"),
    (lambda: parse_line("gate=0.5,0.5"), "line 'gate': needs at least 2 points, got 1"),
    (lambda: parse_line("gate=0,0,1,1:left:right"), "--line gate: expected at most one side (left or right) and "
                                                     "one ':classes' part"),
    (lambda: zone_from_dict({"name": "d", "points": [[0, 0], [1, 0], [1, float("nan")]]}, "analytics.zones[0]"),
     "zone 'd': the point (1.0, nan) is not finite"),
    (lambda: zone_from_dict({"name": "d", "corners": []}, "analytics.zones[0]"),
     "analytics.zones[0]: unknown key 'corners' (known: name, points, classes)"),
    (lambda: line_from_dict({"name": "g", "points": [[0, 0], [1, 1]], "in": "north"}, "analytics.lines[0]"),
     "line 'g': in must be left or right, got 'north'"),
    (lambda: Zone("a b", [(0, 0), (1, 0), (1, 1)]), "zone name 'a b': use 1-64 letters, digits, '_', '-' or '.', "
                                                    "starting with a letter or digit"),
])
def test_bad_geometry_is_one_line_naming_it(make, message):
    with pytest.raises(ConfigError) as caught:
        make()
    assert str(caught.value) == message


def test_sizes_are_bounded_so_that_a_config_cannot_cost_unbounded_memory_or_time():
    with pytest.raises(ConfigError, match=r"^zone 'z': at most 100 points, got 101$"):
        Zone("z", [(i, i % 2) for i in range(101)])
    zones = [Zone(f"z{i}", [(0, 0), (1, 0), (1, 1)]) for i in range(33)]
    with pytest.raises(ConfigError, match=r"^cam: at most 32 zones and lines per stream, got 33$"):
        check_unique(zones, [], "cam")


def test_a_region_outside_the_frame_is_named_with_the_point_and_the_frame():
    zone = Zone("yard", [(10, 10), (700, 10), (700, 300)])
    with pytest.raises(ConfigError, match=r"^zone 'yard': the point \(700, 10\) lies outside the 640x480 frame$"):
        zone.pixels(480, 640)
    with pytest.raises(ConfigError, match="line 'gate': the point"):
        Line("gate", [(-5, 10), (100, 10)]).pixels(480, 640)
