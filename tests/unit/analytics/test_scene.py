"""Scene analytics on hand-made sequences whose answers are known: every rule of rtseg/analytics/scene.py."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from rtseg.analytics import Line, SceneAnalytics, Zone
from rtseg.analytics.shares import RegionMaps
from rtseg.core.config import AnalyticsConfig
from rtseg.core.errors import ConfigError, UsageError
from rtseg.core.structures import Detections

H, W = 100, 200
CLASSES = ("__background__", "person", "car")


def rect(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[max(y0, 0):y1, max(x0, 0):x1] = True
    return mask


def objects(*items: tuple[int, np.ndarray] | tuple[int, np.ndarray, int]) -> Detections:
    """Detections of (track id, mask[, class id]); each box is its mask's bounds."""
    boxes, masks, ids, classes = [], [], [], []
    for item in items:
        track_id, mask = item[0], item[1]
        ys, xs = np.nonzero(mask)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        masks.append(mask)
        ids.append(track_id)
        classes.append(item[2] if len(item) == 3 else 1)
    if not items:
        return Detections.empty(H, W, CLASSES)
    return Detections(np.array(boxes, np.float32), np.full(len(items), 0.9, np.float32), np.array(classes),
                      np.stack(masks), CLASSES, np.array(ids))


def run(scene: SceneAnalytics, frames: list[Detections], times: list[float] | None = None) -> list:
    events = []
    for i, detections in enumerate(frames):
        t = times[i] if times is not None else i * 0.1
        events += scene.update(detections, time=t, frame=i, height=H, width=W)
    return [e for e in events if e.kind != "occupancy"]


LEFT_HALF = Zone("left", [(0, 0), (100, 0), (100, 100), (0, 100)])
MIDDLE = Line("gate", [(100, 0), (100, 100)])  # walking down the screen, its left hand is the right half


def test_an_object_is_inside_while_most_of_its_mask_is_whatever_its_box_bottom_says():
    """An L-shaped object (a post with a wide foot) whose box's bottom centre lies below the zone: 77 % of its
    mask is inside, so it is inside."""
    zone = Zone("upper", [(0, 0), (200, 0), (200, 50), (0, 50)])
    shape = rect(40, 10, 60, 45) | rect(40, 45, 100, 55)  # 700 + 600 pixels; rows 45..49 of the foot inside
    detections = objects((1, shape))
    x0, _, x1, y1 = detections.boxes[0]
    assert y1 > 50  # the box's bottom centre, (70, 55), is outside the zone
    scene = SceneAnalytics([zone], [], stream="cam")
    events = run(scene, [detections])
    assert [(e.kind, e.track_id, e.share) for e in events] == [("enter", 1, (700 + 300) / 1300)]
    assert scene.state.zones[0].inside == {"person": 1} and scene.state.inside == [("upper",)]
    low = rect(40, 40, 60, 80)  # its box's top is in the zone, a quarter of its mask
    scene = SceneAnalytics([zone], [], stream="cam")
    assert run(scene, [objects((1, low))]) == [] and scene.state.inside == [()]


def test_half_a_mask_decides_and_hysteresis_keeps_a_border_object_from_flickering():
    """Shares of a 40 px object at x0 = 80, 78, 82, 79, 84, 78 over the zone's edge at x = 100: 0.5, 0.55, 0.45,
    0.525, 0.4, 0.55. With a margin of 0.1 it is decided in at 0.55 (zone_share + half the margin) and out below
    0.45, and each visit is dated from the frame its share crossed 0.5."""
    scene = SceneAnalytics([LEFT_HALF], [], AnalyticsConfig(zone_margin=0.1), stream="cam")
    frames = [objects((1, rect(x, 40, x + 40, 60))) for x in (80, 78, 82, 79, 84, 78)]
    events = run(scene, frames)
    assert [(e.kind, e.frame, round(e.share, 3)) for e in events] == [
        ("enter", 1, 0.55), ("exit", 4, 0.4), ("enter", 5, 0.55)]
    assert events[1].dwell == pytest.approx(0.4)  # from frame 0 (share 0.5) to frame 4 (below 0.5 since then)
    assert scene.state.zones[0].occupancy == 1


def test_a_straddling_object_crosses_once_when_most_of_it_is_over():
    """A bus 120 px long drives slowly across the middle line: one crossing, when 60 % of it is over."""
    scene = SceneAnalytics([], [MIDDLE], stream="cam")
    frames = [objects((1, rect(x, 30, x + 120, 70), 2)) for x in range(-20, 110, 4)]
    events = run(scene, frames)
    assert [(e.kind, e.direction, e.class_name) for e in events] == [("cross", "in", "car")]
    crossed_at = events[0].frame
    x = range(-20, 110, 4)[crossed_at - 1]
    assert (x + 120 - 100) / 120 >= 0.6 > (x - 4 + 120 - 100) / 120  # the second sighting with 60 % over the line
    assert scene.tally.crossed["gate"]["in"]["car"] == 1 and scene.tally.crossed["gate"]["out"] == {}


def test_lingering_on_the_line_never_counts_twice():
    scene = SceneAnalytics([], [MIDDLE], stream="cam")
    path = [60, 70, 78, 82, 78, 82, 77, 83, 79, 81, 80, 80, 95, 110]  # 40 px wide: shares around 50 % for long
    events = run(scene, [objects((1, rect(x, 40, x + 40, 60))) for x in path])
    assert [(e.direction, e.frame) for e in events] == [("in", 13)]  # 60 % over at frame 12, still at 13


def test_a_one_frame_tip_over_the_line_is_no_crossing():
    """A lingering object, 30 % over the line, is tipped to 65 % for one frame (a passer-by hides part of it)."""
    scene = SceneAnalytics([], [MIDDLE], stream="cam")
    path = [40, 60, 68, 68, 86, 68, 68, 68]
    assert run(scene, [objects((1, rect(x, 40, x + 40, 60))) for x in path]) == []


def test_a_track_re_acquired_under_a_new_id_is_not_counted_again():
    scene = SceneAnalytics([LEFT_HALF], [MIDDLE], stream="cam")
    frames = [objects((1, rect(x, 40, x + 20, 60))) for x in (40, 50, 60)]
    frames += [objects(), objects()]  # the tracker loses it for two frames ...
    frames += [objects((7, rect(x, 40, x + 20, 60))) for x in (90, 100, 110, 120)]  # ... and gives it a new id
    events = run(scene, frames)
    assert [(e.kind, e.track_id) for e in events] == [("enter", 1), ("exit", 7), ("cross", 7)]
    assert scene.tally.reacquired == 1 and sum(scene.tally.entered["left"].values()) == 1
    assert events[1].dwell == pytest.approx(0.6)  # entered at 0.0, last seen inside at 0.6 (frame 6, as id 7)


def test_without_re_acquisition_the_same_switch_would_count_a_second_entry():
    """The control for the test above: a new id far from the lost one is a new object."""
    scene = SceneAnalytics([LEFT_HALF], [], stream="cam")
    frames = [objects((1, rect(10, 40, 30, 60))), objects((7, rect(60, 0, 80, 20)))]
    events = run(scene, frames)
    assert [(e.kind, e.track_id) for e in events] == [("enter", 1), ("enter", 7)]
    assert scene.tally.reacquired == 0


def test_walking_round_the_end_of_a_line_is_no_crossing():
    short = Line("short", [(100, 50), (100, 100)])  # the lower half only
    scene = SceneAnalytics([], [short], stream="cam")
    path = [(60, 70), (60, 40), (60, 10), (100, 10), (130, 10), (130, 40), (130, 70)]
    events = run(scene, [objects((1, rect(x, y, x + 20, y + 20))) for x, y in path])
    assert events == []


def test_only_confirmed_tracks_count():
    scene = SceneAnalytics([LEFT_HALF], [MIDDLE], stream="cam")
    events = run(scene, [objects((-1, rect(x, 40, x + 20, 60))) for x in range(40, 160, 10)])
    assert events == [] and scene.tally.crossed["gate"]["in"] == {} and scene.state.zones[0].occupancy == 0


def test_dwell_and_loitering_follow_the_frames_own_timestamps():
    settings = AnalyticsConfig(loiter_seconds=2.0, lost_seconds=1.0)
    scene = SceneAnalytics([LEFT_HALF], [], settings, stream="cam")
    times = [0.0, 0.04, 1.5, 1.9, 2.05, 2.5, 3.0]  # a variable frame rate
    frames = [objects((3, rect(10, 10, 40, 40)))] * len(times) + [objects()] * 3
    times += [3.5, 4.0, 4.2]
    events = run(scene, frames, times)
    assert [(e.kind, e.time, None if e.dwell is None else round(e.dwell, 3)) for e in events] == [
        ("enter", 0.0, None), ("loiter", 2.05, 2.05), ("exit", 4.2, 3.0)]
    assert scene.tally.as_dict()["zones"]["left"] == {"entered": {"person": 1}, "peak_occupancy": 1, "loiters": 1,
                                                      "visits_ended": 1, "dwell_mean_s": 3.0, "dwell_max_s": 3.0}


def test_a_zone_counts_only_its_classes():
    zone = dataclasses.replace(LEFT_HALF, classes=("car",))
    scene = SceneAnalytics([zone], [], stream="cam")
    events = run(scene, [objects((1, rect(10, 10, 30, 30), 1), (2, rect(50, 10, 70, 30), 2))])
    assert [(e.kind, e.track_id, e.class_name) for e in events] == [("enter", 2, "car")]


def test_occupancy_without_tracking_counts_every_detection_each_frame():
    scene = SceneAnalytics([LEFT_HALF], [], stream="cam", tracked=False)
    frame = objects((-1, rect(10, 10, 30, 30)), (-1, rect(40, 40, 60, 60), 2), (-1, rect(150, 10, 170, 30)))
    events = scene.update(frame, time=0.0, frame=0)
    assert [(e.kind, e.count, e.counts) for e in events] == [("occupancy", 2, {"person": 1, "car": 1})]
    assert scene.state.inside == [("left",), ("left",), ()]
    with pytest.raises(UsageError, match="lines count crossings of tracked objects"):
        SceneAnalytics([], [MIDDLE], stream="cam", tracked=False)


def test_occupancy_events_come_once_per_period_of_video_time():
    scene = SceneAnalytics([LEFT_HALF], [], AnalyticsConfig(occupancy_seconds=1.0), stream="cam")
    kinds = []
    for i, t in enumerate([0.0, 0.5, 0.99, 1.0, 1.7, 2.2]):
        kinds += [(e.kind, e.time) for e in scene.update(objects((1, rect(10, 10, 30, 30))), time=t, frame=i)]
    assert kinds == [("enter", 0.0), ("occupancy", 0.0), ("occupancy", 1.0), ("occupancy", 2.2)]


def test_masks_on_a_device_give_the_same_shares_as_on_the_host():
    detections = objects((1, rect(80, 30, 120, 70)), (2, rect(5, 5, 60, 90)))
    maps = RegionMaps([LEFT_HALF], [MIDDLE], H, W)
    host = maps.shares(detections)
    on_device = maps.shares(dataclasses.replace(detections, masks=torch.from_numpy(detections.masks)))
    assert np.array_equal(host.zone, on_device.zone) and np.array_equal(host.left, on_device.left)
    assert host.zone[:, 0].tolist() == [0.5, 1.0] and host.left[:, 0].tolist() == [0.5, 0.0]


def test_a_large_mask_is_sampled_and_its_share_stays_within_a_percent():
    big = np.zeros((720, 1280), bool)
    big[100:700, 300:1000] = True  # 420,000 pixels, 49 % of them left of x = 643
    zone = Zone("west", [(0, 0), (643, 0), (643, 720), (0, 720)])
    maps = RegionMaps([zone], [], 720, 1280)
    detections = Detections(np.array([[300, 100, 1000, 700]], np.float32), np.ones(1, np.float32), np.ones(1, int),
                            big[None], CLASSES)
    assert maps.shares(detections).zone[0, 0] == pytest.approx(343 / 700, abs=0.01)


def test_unknown_classes_are_named_with_what_the_model_knows():
    scene = SceneAnalytics([dataclasses.replace(LEFT_HALF, classes=("persn",))], [], stream="cam")
    with pytest.raises(ConfigError, match=r"^zone 'left': unknown class 'persn' \(the model knows person, car\)$"):
        scene.check_classes(CLASSES)


def test_a_name_may_be_used_once():
    with pytest.raises(ConfigError, match="the name 'left' is given to several zones or lines"):
        SceneAnalytics([LEFT_HALF], [dataclasses.replace(MIDDLE, name="left")], stream="cam")


def test_shares_match_a_pixel_count_with_more_regions_than_a_byte_holds():
    """Six zones and three lines (12 planes: two bytes per pixel) against plain counting over the whole frame."""
    rng = np.random.default_rng(5)
    zones = [Zone(f"z{i}", [(30 * i, 0), (30 * i + 45, 0), (30 * i + 20, 100)]) for i in range(6)]
    lines = [Line(f"l{i}", [(10, 20 + 30 * i), (190, 30 + 30 * i)]) for i in range(3)]
    maps = RegionMaps(zones, lines, H, W)
    masks = [rect(x0, y0, x0 + w, y0 + h) for x0, y0, w, h in
             (rng.integers([0, 0, 10, 10], [150, 60, 50, 40]) for _ in range(5))]
    shares = maps.shares(objects(*[(i, m) for i, m in enumerate(masks)]))
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    for i, mask in enumerate(masks):
        inside = [(mask & _even_odd(z.pixels(H, W), xs, ys)).sum() / mask.sum() for z in zones]
        assert shares.zone[i].tolist() == pytest.approx(inside)
        for j, line in enumerate(lines):
            (ax, ay), (bx, by) = line.pixels(H, W)
            t = ((xs - ax) * (bx - ax) + (ys - ay) * (by - ay)) / ((bx - ax) ** 2 + (by - ay) ** 2)
            within = mask & (t >= 0) & (t <= 1)
            left = within & ((bx - ax) * (ys - ay) - (by - ay) * (xs - ax) < 0)
            assert shares.extent[i, j] == pytest.approx(within.sum() / mask.sum())
            assert shares.left[i, j] == pytest.approx(left.sum() / max(within.sum(), 1))


def _even_odd(polygon: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Points inside ``polygon`` by casting a ray to the right and counting the edges it crosses."""
    inside = np.zeros(xs.shape, bool)
    for (ax, ay), (bx, by) in zip(polygon, np.roll(polygon, -1, axis=0)):
        spans = (ay <= ys) != (by <= ys)
        with np.errstate(divide="ignore", invalid="ignore"):
            crossing_x = ax + (ys - ay) * (bx - ax) / (by - ay)
        inside ^= spans & (xs < crossing_x)
    return inside
