"""rtseg.offline.analytics_scenes and eval_analytics: the truth is right on hand-made walks, the scores add up,
and rtseg counts the plain family without error (supervision's side runs only where supervision is installed)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from rtseg.core.regions import Line, Zone
from rtseg.offline.analytics_scenes import (
    HEIGHT,
    MIN_HITS,
    WIDTH,
    Body,
    Layout,
    Noise,
    Scene,
    Visit,
    crossing,
    make_scene,
    truth,
)
from rtseg.offline.eval_analytics import Measured, run_tools, score, summarise


def _walker(times: list[float], points: list[list[float]], width: float = 30.0) -> Body:
    return Body("person", 0, width, 2.5 * width, np.array(times), np.array(points, float))


def _layout() -> Layout:
    # A vertical gate at x=200 (its left, the "in" side, is the right half: see rtseg.core.regions) and a zone
    # from x=300 to x=500.
    return Layout(zones=[Zone("area", [(300, 40), (500, 40), (500, 320), (300, 320)])],
                  lines=[Line("gate", [(200, 20), (200, 340)], in_side="left")])


def test_a_step_across_a_line_is_one_crossing_in_the_lines_own_direction() -> None:
    across = Line("across", [(0.0, 0.5), (1.0, 0.5)])  # left (the "in" side) is the upper half
    assert crossing(across, np.array([100.0, 200.0]), np.array([100.0, 170.0])) == "in"
    assert crossing(across, np.array([100.0, 170.0]), np.array([100.0, 200.0])) == "out"
    assert crossing(across, np.array([100.0, 170.0]), np.array([110.0, 175.0])) is None  # same side
    short = Line("short", [(100, 180), (200, 180)])
    assert crossing(short, np.array([250.0, 200.0]), np.array([250.0, 160.0])) is None  # beyond its end


def test_one_walk_through_is_one_crossing_one_entry_and_one_visit_in_seconds() -> None:
    layout = _layout()
    body = _walker([0.0, 10.0], [[20.0, 180.0], [620.0, 180.0]])  # 60 px/s, rightward
    times = np.linspace(0.0, 10.0, 201)  # 20 frames a second
    truth_ = truth(layout, [body], times)
    assert truth_.crossings["gate"]["in"] == Counter(person=1)  # rightward: onto the gate's left hand
    assert sum(truth_.crossings["gate"]["out"].values()) == 0
    assert truth_.entries["area"] == Counter(person=1)
    [visit] = truth_.visits
    # Inside while the body's centre is in the zone (the body is symmetric left to right): x in 300..500.
    assert visit.start == pytest.approx((300 - 20) / 60, abs=0.06)
    assert visit.end - visit.start == pytest.approx(200 / 60, abs=0.1)
    inside = np.flatnonzero(truth_.occupancy[:, 0])
    assert times[inside[0]] == visit.start and times[inside[-1] + 1] == visit.end


def test_walking_up_to_the_line_and_back_is_no_crossing_and_a_stay_counts_its_seconds() -> None:
    layout = _layout()
    times = np.concatenate([[0.0], np.cumsum(np.random.default_rng(0).uniform(0.04, 0.1, 400))])
    times = times[times <= 20.0]
    # Up to 6 px short of the gate, 5 s still, and back; then into the zone, 4 s still inside, and back out.
    back = _walker([0.0, 3.0, 8.0, 11.0], [[14.0, 180.0], [194.0, 180.0], [194.0, 180.0], [14.0, 180.0]])
    stay = _walker([0.0, 2.0, 6.0, 8.0], [[620.0, 100.0], [420.0, 100.0], [420.0, 100.0], [620.0, 100.0]])
    truth_ = truth(layout, [back, stay], times)
    assert sum(sum(c.values()) for c in truth_.crossings["gate"].values()) == 0
    [visit] = truth_.visits
    assert visit.body == 1 and visit.end - visit.start == pytest.approx(8.0 - 2 * (620 - 500) / 100, abs=0.25)


def test_the_detector_hides_what_is_behind_an_occluder_and_confirms_tracks_late() -> None:
    layout = _layout()
    layout.occluders = [(0, 200, WIDTH, HEIGHT)]
    body = _walker([0.0, 4.0], [[100.0, 180.0], [500.0, 180.0]])  # 75 px tall: feet at about y=217
    times = np.arange(0.0, 4.0, 0.1)
    scene = Scene("occlusion", 0, layout, [body], times, Noise(jitter=0.0, box_jitter=0.0), truth(layout, [body], times))
    frames = list(scene.frames())
    ids = [int(f.detections.track_ids[0]) for f in frames]
    assert ids[:MIN_HITS] == [-1] * MIN_HITS and len(set(ids[MIN_HITS:])) == 1
    for f in frames:
        d = f.detections
        assert d.masks.shape == (1, HEIGHT, WIDTH) and not d.masks[0, 200:].any()
        assert d.boxes[0, 3] == pytest.approx(200.0)  # the box's bottom is the occluder's top, not the feet


def test_an_id_switch_hides_the_body_for_its_gap_and_gives_it_a_new_id() -> None:
    layout = _layout()
    body = _walker([0.0, 4.0], [[100.0, 180.0], [500.0, 180.0]])
    body.switches = [(1.0, 1.3)]
    times = np.arange(0.0, 4.0, 0.1)
    scene = Scene("reacquire", 0, layout, [body], times, Noise(jitter=0.0, box_jitter=0.0),
                  truth(layout, [body], times))
    seen = {round(f.time, 1): int(f.detections.track_ids[0]) for f in scene.frames() if len(f.detections)}
    assert 1.1 not in seen and 1.2 not in seen
    assert seen[0.5] >= 0 and seen[2.0] >= 0 and seen[0.5] != seen[2.0]


def test_scores_count_each_wrong_event_and_measure_a_split_visit_by_its_parts() -> None:
    layout = _layout()
    body = _walker([0.0, 10.0], [[20.0, 180.0], [620.0, 180.0]])
    times = np.linspace(0.0, 10.0, 201)
    scene = Scene("plain", 0, layout, [body], times, Noise(), truth(layout, [body], times))
    t = scene.truth
    [visit] = t.visits
    exact = Measured({"gate": {w: Counter(c) for w, c in t.crossings["gate"].items()}},
                     {"area": Counter(t.entries["area"])}, t.occupancy.copy(), [visit])
    assert score(scene, exact)["count_errors"] == 0 and score(scene, exact)["dwell_abs"] == 0
    middle = (visit.start + visit.end) / 2
    split = Measured({"gate": {"in": Counter(bicycle=1), "out": Counter(person=1)}},
                     {"area": Counter(person=2)}, t.occupancy.copy(),
                     [Visit(0, "area", visit.start, middle - 0.5), Visit(0, "area", middle, visit.end)])
    scored = score(scene, split)
    # in: the person missing and a bicycle extra (no error in any class); out: 1 extra; area: 1 extra entry.
    assert scored["count_errors"] == 4 and scored["count_errors_any_class"] == 2
    assert scored["dwell_abs"] == pytest.approx(0.5)
    assert summarise([scored])["dwell_mae_s"] == pytest.approx(0.5)


@pytest.mark.parametrize("seed", [0, 1])
def test_rtseg_counts_the_plain_family_without_error(seed: int) -> None:
    scene = make_scene("plain", seed, bodies=4, spread=4.0)
    measured = run_tools(scene, ("rtseg",))["rtseg"]
    scored = score(scene, measured)
    assert scored["events"] >= 8  # every body crosses the gate and enters the zone
    assert scored["count_errors"] == 0
    assert scored["dwell_abs"] / scored["visits"] < 0.2


def test_supervision_counts_the_same_directions_as_rtseg_on_the_same_detections() -> None:
    pytest.importorskip("supervision")
    layout = _layout()
    rightward = _walker([0.0, 8.0], [[20.0, 150.0], [620.0, 150.0]])
    leftward = _walker([0.0, 8.0], [[620.0, 230.0], [20.0, 230.0]])
    times = np.arange(0.0, 10.0, 0.05)
    scene = Scene("plain", 0, layout, [rightward, leftward], times, Noise(jitter=0.0, box_jitter=0.0),
                  truth(layout, [rightward, leftward], times))
    measured = run_tools(scene)
    for tool in ("rtseg", "supervision", "sv-centre"):
        got = measured[tool].crossings["gate"]
        assert (got["in"], got["out"]) == (Counter(person=1), Counter(person=1)), tool
        assert measured[tool].entries["area"] == Counter(person=2), tool
        assert score(scene, measured[tool])["count_errors"] == 0, tool
