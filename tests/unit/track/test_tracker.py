"""Tracker behaviour on small hand-built scenes: ids follow objects, not detection order."""

from __future__ import annotations

import dataclasses
import tracemalloc
from collections.abc import Iterator

import numpy as np
import pytest
from track_helpers import MEETING_FRAMES, box, meeting_boxes

from rtseg.core.config import TrackingConfig
from rtseg.core.errors import ConfigError
from rtseg.core.structures import Detections
from rtseg.offline.eval_tracking import run_scene
from rtseg.offline.scenes import Noise
from rtseg.track import association, motion
from rtseg.track.tracker import Tracker, track_detections


def make_tracker(**changes: object) -> Tracker:
    return Tracker(dataclasses.replace(TrackingConfig(), **changes))


def step(tracker: Tracker, boxes: list[list[float]], scores: list[float] | None = None,
         classes: list[int] | None = None) -> list[int]:
    """One frame; returns the ids as a plain list for readable assertions."""
    n = len(boxes)
    ids = tracker.update(np.array(boxes, np.float32).reshape(n, 4),
                         np.array(scores if scores is not None else [0.9] * n, np.float32),
                         np.array(classes if classes is not None else [0] * n, np.int64))
    assert ids.dtype == np.int64 and ids.shape == (n,)
    return ids.tolist()


def test_new_object_gets_id_1_after_min_hits_frames() -> None:
    tracker = make_tracker(min_hits=3)
    assert [step(tracker, [box(100 + 5 * t, 100)]) for t in range(5)] == [[-1], [-1], [1], [1], [1]]


def test_min_hits_1_confirms_at_once() -> None:
    tracker = make_tracker(min_hits=1)
    assert step(tracker, [box(100, 100)]) == [1]


def test_one_frame_false_positives_never_get_an_id_and_ids_stay_dense() -> None:
    tracker = make_tracker(min_hits=3)
    seen = []
    for t in range(30):
        boxes = [box(100 + 4 * t, 200)]
        if t % 3 == 0:  # a false positive somewhere new, once
            boxes.append(box(600 + 37 * t % 500, 500 - 11 * t % 300, 30, 30))
        if t >= 10:  # a second real object from frame 10 on
            boxes.append(box(900 - 4 * t, 600))
        ids = step(tracker, boxes)
        if t % 3 == 0:
            assert ids[1] == -1
        seen.extend(ids)
    assert sorted(set(seen) - {-1}) == [1, 2]


def test_two_frame_blip_never_confirmed_with_min_hits_3() -> None:
    tracker = make_tracker(min_hits=3)
    ids = [step(tracker, [box(300, 300)]) for _ in range(2)] + [step(tracker, []) for _ in range(3)]
    assert ids == [[-1], [-1], [], [], []]
    assert len(tracker) == 0  # tentative tracks die at their first miss


def test_ids_follow_objects_whatever_the_detection_order() -> None:
    tracker = make_tracker(min_hits=1)
    rng = np.random.default_rng(0)
    starts = [(100, 100), (400, 120), (250, 400)]
    by_object: dict[int, set[int]] = {0: set(), 1: set(), 2: set()}
    for t in range(40):
        order = rng.permutation(3)
        boxes = [box(starts[k][0] + 3 * t, starts[k][1] + 2 * t) for k in order]
        for k, i in zip(order, step(tracker, boxes)):
            by_object[int(k)].add(i)
    assert [len(ids) for ids in by_object.values()] == [1, 1, 1]
    assert set.union(*by_object.values()) == {1, 2, 3}


def _gap_then_return(tracker: Tracker, gap: int) -> list[int]:
    """An object moving 6 px/frame, undetected for ``gap`` frames, then seen where it should be."""
    x = 100.0
    for _ in range(10):
        assert step(tracker, [box(x, 300)]) in ([-1], [1])
        x += 6
    for _ in range(gap):
        assert step(tracker, []) == []
        x += 6
    return [step(tracker, [box(x + 6 * k, 300)])[0] for k in range(4)]


@pytest.mark.parametrize("max_age", [1, 5, 20])
def test_track_survives_a_gap_of_max_age_frames(max_age: int) -> None:
    assert _gap_then_return(make_tracker(max_age=max_age, min_hits=2), max_age) == [1, 1, 1, 1]


@pytest.mark.parametrize("max_age", [1, 5, 20])
def test_track_dropped_after_more_than_max_age_missed_frames(max_age: int) -> None:
    tracker = make_tracker(max_age=max_age, min_hits=2)
    assert _gap_then_return(tracker, max_age + 1) == [-1, 2, 2, 2]
    assert len(tracker) == 1


def test_crossing_objects_keep_their_ids() -> None:
    """Two same-class objects walk through each other; at the crossing their boxes coincide."""
    tracker = make_tracker()
    history = []
    for t in range(80):
        a, b = box(100 + 5 * t, 300), box(500 - 5 * t, 310)
        history.append(step(tracker, [b, a] if t % 2 else [a, b]))
        if t % 2:
            history[-1].reverse()
    assert history[-1] == [1, 2]
    assert all(ids == [1, 2] for ids in history[2:])


def test_crossing_with_the_rear_object_hidden_keeps_both_ids() -> None:
    """As above, but the rear object goes undetected for the 12 frames around the crossing."""
    tracker = make_tracker()
    for t in range(80):
        a, b = box(100 + 5 * t, 300), box(500 - 5 * t, 305)
        hidden = 34 <= t < 46
        ids = step(tracker, [a] if hidden else [a, b])
        if t >= 2:
            assert ids == ([1] if hidden else [1, 2])


def test_class_aware_never_matches_across_classes() -> None:
    tracker = make_tracker(min_hits=1, class_agnostic=False)
    assert step(tracker, [box(200, 200)], classes=[0]) == [1]
    # The same place, now labelled class 3: a new object, not track 1.
    assert step(tracker, [box(200, 200)], classes=[3]) == [2]
    # Two classes overlapping and swapping order every frame keep their own ids.
    tracker = make_tracker(min_hits=1, class_agnostic=False)
    for t in range(20):
        boxes, classes = [box(200 + t, 200), box(205 + t, 200)], [0, 1]
        if t % 2:
            boxes.reverse()
            classes.reverse()
        ids = step(tracker, boxes, classes=classes)
        assert dict(zip(classes, ids)) == {0: 1, 1: 2}


def test_low_score_detections_keep_a_track_alive_but_never_start_one() -> None:
    tracker = make_tracker(high_score=0.5, low_score=0.1, min_hits=2)
    ids = [step(tracker, [box(100 + 5 * t, 100)], scores=[0.9])[0] for t in range(3)]
    # The object turns partly hidden: scores drop to 0.3, stage two keeps it.
    ids += [step(tracker, [box(100 + 5 * t, 100)], scores=[0.3])[0] for t in range(3, 10)]
    assert ids == [-1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    # A second object seen only with low scores never gets a track.
    lonely = [step(tracker, [box(100 + 5 * t, 100), box(700, 500)], scores=[0.9, 0.3])[1] for t in range(10, 20)]
    assert lonely == [-1] * 10
    assert len(tracker) == 1


def test_scores_below_low_score_are_ignored() -> None:
    tracker = make_tracker(high_score=0.5, low_score=0.4, min_hits=1)
    assert step(tracker, [box(100, 100)], scores=[0.9]) == [1]
    assert step(tracker, [box(105, 100)], scores=[0.3]) == [-1]
    assert step(tracker, [box(110, 100)], scores=[0.45]) == [1]


@pytest.mark.parametrize("claims, expected", [(True, [1, -1]), (False, [-1, 1])])
def test_low_score_claims(claims: bool, expected: list[int]) -> None:
    """A neighbour scoring high overlaps the track while the track's own detection scores low.

    With ``low_score_claims`` the track keeps its own detection; in strict ByteTrack
    order (``False``) the high-scoring neighbour takes it in stage one.
    """
    tracker = make_tracker(low_score_claims=claims, min_hits=2)
    assert [step(tracker, [box(200, 200)]) for _ in range(2)] == [[-1], [1]]
    own, neighbour = box(200, 200), box(215, 200)  # IoU with the track: 1.0 and 0.45
    assert step(tracker, [own, neighbour], scores=[0.3, 0.9]) == expected


def test_a_fragment_never_takes_over_its_objects_track() -> None:
    """A confident piece of an object fits the track a little better than the object's own box.

    The object is partly hidden (low score, box cut and jittered); a fragment inside that
    box scores higher and overlaps the predicted box more. The track keeps the object,
    whose box is nearer the track's size.
    """
    tracker = make_tracker(min_hits=2)
    assert [step(tracker, [box(200, 200)]) for _ in range(3)] == [[-1], [1], [1]]
    own, fragment = [199, 156, 224, 244], [200, 163, 220, 237]  # IoU with the track: 0.45 and 0.46
    assert step(tracker, [own, fragment], scores=[0.35, 0.6]) == [1, -1]
    assert step(tracker, [box(200, 200)]) == [1]


def test_a_track_keeps_its_own_detection_rather_than_take_clutter_at_the_threshold() -> None:
    """Object 2 is hidden inside object 1's box. Object 1's own detection scores low; a clutter
    box scoring high overlaps object 1's track just above the threshold.

    Handing the clutter to track 1 and the object's detection to the lost track 2 adds up
    to more overlap than the right answer; measured above each stage's threshold, as
    ByteTrack's cost limit does, one good pair outweighs two poor ones.
    """
    tracker = make_tracker(min_hits=2)
    front, hidden = box(300, 300, 84, 136), box(292, 310, 56, 110)
    assert [step(tracker, [front, hidden]) for _ in range(3)][-1] == [1, 2]
    assert [step(tracker, [front]) for _ in range(3)] == [[1]] * 3
    own, clutter = box(306, 302, 84, 132), [254, 230, 350, 286]  # IoU with track 1: 0.84, 0.37; track 2: 0.56, 0.18
    assert step(tracker, [own, clutter], scores=[0.33, 0.73]) == [1, -1]


def test_a_lost_track_hidden_behind_an_object_does_not_take_its_detection() -> None:
    """Track 2's object went behind object 1 five frames ago; its prediction sits on object 1,
    and object 1's next detection overlaps it a little more (0.87) than track 1's (0.82).
    Track 1, matched every frame, keeps it."""
    tracker = make_tracker(min_hits=2)
    front, behind = box(300, 300, 80, 170), box(306, 306, 72, 146)
    assert [step(tracker, [front, behind]) for _ in range(3)][-1] == [1, 2]
    assert [step(tracker, [front]) for _ in range(5)] == [[1]] * 5
    assert step(tracker, [[265, 229, 339, 379]]) == [1]


def test_the_sliver_of_the_object_not_a_clutter_box_around_it() -> None:
    """An object slides behind something: its detections shrink to slivers. A faint clutter
    box twice the track's width contains the sliver and overlaps the predicted box more; an
    object's box never grows that much in a frame, so the sliver keeps the id."""
    tracker = make_tracker(min_hits=2)
    for _ in range(3):
        step(tracker, [box(117, 355.5, 60, 99)])
    assert step(tracker, [[87, 306, 119, 405]], scores=[0.4]) == [1]
    sliver, clutter = [93, 308, 112, 405], [33, 304, 152, 411]  # 19x97 and 119x107; track 60x99
    assert step(tracker, [sliver, clutter], scores=[0.47, 0.11]) == [1, -1]


def test_a_sliver_short_on_both_axes_goes_to_the_neighbour_hidden_there() -> None:
    """Object 1 is missed for a frame; a thin box lies inside its predicted box but is a
    fraction of its size both ways. It has the height of object 2, hidden behind object 1
    for three frames, and is found by object 2's track rather than taken by track 1."""
    tracker = make_tracker(min_hits=2)
    front, behind = box(155, 172, 70, 173), box(146, 161, 35, 49)
    assert [step(tracker, [front, behind]) for _ in range(3)][-1] == [1, 2]
    assert [step(tracker, [front]) for _ in range(3)] == [[1]] * 3
    assert step(tracker, [[154, 133, 167, 187]], scores=[0.5]) == [2]


def test_the_object_not_a_box_of_its_area_inside_which_it_lies() -> None:
    """The object's box lies inside a wider, shorter box (a piece of a neighbour) of about the
    track's area; by width and height the object's own box is nearer the track's size."""
    tracker = make_tracker(min_hits=2)
    for _ in range(3):
        step(tracker, [box(200, 200, 66, 86)])
    own, wide = [172, 158, 229, 243], [144, 167, 225, 242]  # 57x85 and 81x75; track 66x86
    assert step(tracker, [own, wide], scores=[0.88, 0.47]) == [1, -1]


def test_a_box_that_jumps_keeps_its_id() -> None:
    """An object turns round while its visible part shrinks: the detection lands mostly
    outside the prediction (IoU 0.15, a third inside) but has the track's height."""
    tracker = make_tracker(min_hits=2)
    for t in range(10):
        step(tracker, [box(200 - 5 * t, 100, 36, 66)])
    assert step(tracker, [[155, 69, 178, 131]]) == [1]
    assert step(tracker, [[157, 69, 180, 131]]) == [1]


def test_clutter_near_a_missed_object_does_not_take_its_id() -> None:
    """The object is missed for a frame; a box overlapping its prediction from the side,
    short on both axes (a fragment), or overlapping a second track, stays grey."""
    tracker = make_tracker(min_hits=2)
    for t in range(10):
        step(tracker, [box(200 - 5 * t, 100, 36, 66), box(120 - 5 * t, 100, 36, 66)])
    # predicted: [127, 67, 163, 133] and [47, 67, 83, 133]
    fragment, between = [155, 80, 178, 120], [75, 70, 135, 130]
    assert step(tracker, [fragment, between]) == [-1, -1]
    assert step(tracker, [box(140, 100, 36, 66), box(60, 100, 36, 66)]) == [1, 2]


def test_a_sliver_inside_the_predicted_box_keeps_the_id() -> None:
    """Most of an object hidden: its detection overlaps the whole predicted box by IoU 0.125 only."""
    tracker = make_tracker(min_hits=2)
    for _ in range(3):
        step(tracker, [box(200, 200)])
    assert step(tracker, [[215, 160, 220, 240]], scores=[0.3]) == [1]


@pytest.mark.parametrize("seed", range(4))
def test_a_young_track_is_found_again_after_an_occlusion(seed: int) -> None:
    """Seen for 4 frames only, so its velocity is still uncertain, then hidden for 20 frames.

    The prediction falls short of where the object reappears by more than the box is wide;
    the track's own uncertainty, grown over the gap, still covers it.
    """
    rng = np.random.default_rng(seed)
    tracker = make_tracker(min_hits=2)
    ids = []
    for t in range(29):
        if 4 <= t < 24:
            assert step(tracker, []) == []
            continue
        ids.append(step(tracker, [(np.array(box(100 + 6 * t, 300)) + rng.normal(0, 2, 4)).tolist()])[0])
    assert ids == [-1, 1, 1, 1] + [1] * 5


@pytest.mark.parametrize("seed", range(4))
def test_walking_behind_a_pillar_keeps_the_id(seed: int) -> None:
    """An object slides behind a pillar (its box cut short from one side, then gone), and out."""
    rng = np.random.default_rng(seed)
    tracker = make_tracker(min_hits=2)
    pillar, width, seen = (400.0, 500.0), 60.0, set()
    for t in range(120):
        left = 150.0 + 3.0 * t
        parts = [(a, b) for a, b in ((left, min(left + width, pillar[0])), (max(left, pillar[1]), left + width)) if b > a]
        visible = sum(b - a for a, b in parts) / width
        if visible < 0.4:
            assert step(tracker, []) == []
            continue
        observed = np.array([parts[0][0], 300, parts[-1][1], 380]) + rng.normal(0, 2, 4)
        seen.update(step(tracker, [observed.tolist()], scores=[0.25 + 0.7 * (visible - 0.4) / 0.6]))
    assert seen - {-1} == {1}


def _triangles(size: int = 60, frame: tuple[int, int] = (200, 300), dx: int = 0) -> np.ndarray:
    """Two masks with the same bounding box: the upper-left and lower-right triangles of a square."""
    y, x = np.mgrid[:size, :size]
    masks = np.zeros((2, *frame), bool)
    masks[0, 50:50 + size, 100 + dx:100 + dx + size] = x + y < size - 1
    masks[1, 50:50 + size, 100 + dx:100 + dx + size] = x + y > size - 1
    return masks


def test_mask_iou_tells_apart_objects_that_share_a_box() -> None:
    tracker = make_tracker(match="mask_iou", min_hits=1)
    for t in range(12):
        masks = _triangles(dx=2 * t)
        b = np.array([box(130 + 2 * t, 80, 60, 60)] * 2, np.float32)
        order = [1, 0] if t % 2 else [0, 1]
        ids = tracker.update(b[order], np.array([0.9, 0.9]), np.zeros(2, np.int64), masks[order])
        assert dict(zip(order, ids.tolist())) == {0: 1, 1: 2}


def test_mask_iou_needs_masks() -> None:
    tracker = make_tracker(match="mask_iou")
    with pytest.raises(ValueError, match="mask"):
        tracker.update(np.array([box(10, 10)]), np.array([0.9]), np.array([0]))


def test_empty_mask_falls_back_to_box_overlap() -> None:
    tracker = make_tracker(match="mask_iou", min_hits=1)
    empty = np.zeros((1, 100, 100), bool)
    for t in range(5):
        assert tracker.update(np.array([box(40 + t, 40, 10, 10)]), np.array([0.9]), np.array([0]), empty).tolist() == [1]


def _random_frames(seed: int, frames: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A few objects that come and go, plus one-frame clutter, as the tracker sees them.

    Four objects at a time, each living 20-200 frames and replaced by a new one
    elsewhere; 10% of detections missed; scores anywhere in 0.05-1; one clutter box
    per frame. Random draws are made 1,000 frames at a time to keep the loop cheap.
    """
    rng = np.random.default_rng(seed)
    slots, chunk = 4, 1000
    born = np.zeros(slots)
    life = rng.integers(20, 200, slots)
    origin = rng.uniform(100, 900, (slots, 2))
    velocity = rng.uniform(-4, 4, (slots, 2))
    for t in range(frames):
        if t % chunk == 0:
            jitter = rng.normal(0, 1, (chunk, slots, 2))
            clutter = rng.uniform(0, 1000, (chunk, 1, 2))
            seen = rng.random((chunk, slots + 1)) > 0.1
            scores = rng.uniform(0.05, 1.0, (chunk, slots + 1))
            classes = rng.integers(0, 2, (chunk, slots + 1))
        ended = t - born >= life
        if ended.any():  # each ended object is replaced by a new one elsewhere
            k = int(ended.sum())
            born[ended], life[ended] = t, rng.integers(20, 200, k)
            origin[ended], velocity[ended] = rng.uniform(100, 900, (k, 2)), rng.uniform(-4, 4, (k, 2))
        c = t % chunk
        centres = np.concatenate([origin + velocity * (t - born)[:, None] + jitter[c], clutter[c]])
        keep = seen[c]
        yield np.concatenate([centres - 20, centres + 20], axis=1)[keep], scores[c, keep], classes[c, keep]


def test_same_input_same_ids_and_reset_starts_over() -> None:
    first, second = make_tracker(), make_tracker()
    runs = [[first.update(*f).tolist() for f in _random_frames(7, 300)],
            [second.update(*f).tolist() for f in _random_frames(7, 300)]]
    assert runs[0] == runs[1]
    assert max(max(ids, default=-1) for ids in runs[0]) >= 5  # the scene did create tracks
    first.reset()
    assert [first.update(*f).tolist() for f in _random_frames(7, 300)] == runs[0]


def _state_bytes(tracker: Tracker) -> int:
    return sum(a.nbytes for a in tracker.state().values())


def test_state_stays_bounded_over_100k_frames() -> None:
    """Objects keep coming and going for 100,000 frames: tracks and memory stay flat.

    Tracks held are checked every frame and the size of the state arrays at three
    points; tracemalloc (which slows allocation fourfold) watches the last 2,000
    frames for anything retained from one frame to the next.
    """
    tracker = make_tracker()
    most_tracks = 0
    state_bytes = {}
    for t, frame in enumerate(_random_frames(1, 100_000)):
        tracker.update(*frame)
        most_tracks = max(most_tracks, len(tracker))
        if t in (10_000, 50_000, 98_000):
            state_bytes[t] = _state_bytes(tracker)
        if t == 98_000:
            tracemalloc.start()
            traced_start = tracemalloc.get_traced_memory()[0]
    traced_growth = tracemalloc.get_traced_memory()[0] - traced_start
    tracemalloc.stop()
    assert tracker.ids_issued > 2000  # thousands of tracks were confirmed over the run ...
    assert most_tracks <= 20  # ... but only those matched lately are held: 4 objects, the last max_age frames' leavers, clutter
    assert all(len(a) == len(tracker) for name, a in tracker.state().items() if name != "looks")
    assert max(state_bytes.values()) <= 20 * 200  # about 170 bytes of arrays per track
    assert traced_growth < 16 * 1024  # i.e. under 8 bytes retained per frame


def test_track_detections_fills_track_ids_in_place() -> None:
    tracker = make_tracker(min_hits=2)
    results = []
    for t in range(3):
        dets = Detections(boxes=np.array([box(50 + 2 * t, 50)], np.float32), scores=np.array([0.9], np.float32),
                          class_ids=np.array([1]), masks=np.zeros((1, 120, 120), bool))
        assert dets.track_ids.tolist() == [-1]
        track_detections(tracker, dets)
        results.append(dets.track_ids.tolist())
    assert results == [[-1], [1], [1]]


def test_empty_frames() -> None:
    tracker = make_tracker()
    ids = tracker.update(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
    assert ids.dtype == np.int64 and ids.shape == (0,)


def test_rejects_low_score_above_high_score() -> None:
    with pytest.raises(ConfigError, match="low_score"):
        make_tracker(low_score=0.8, high_score=0.5)


def test_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="length"):
        make_tracker().update(np.zeros((2, 4)), np.zeros(1), np.zeros(2, np.int64))


# ---------------------------------------------------------------- classes: class-agnostic pairing and the vote

def shown(tracker: Tracker) -> tuple[list[int], list[float]]:
    classes, scores = tracker.labels()
    return classes.tolist(), scores.tolist()


def test_a_flickering_class_keeps_its_track_and_shows_the_voted_class() -> None:
    tracker = make_tracker(min_hits=1, class_agnostic=True)
    classes = [0, 0, 1, 0, 2, 0, 0, 1, 0]
    ids, labels = [], []
    for t, c in enumerate(classes):
        ids += step(tracker, [box(100 + 5 * t, 100)], classes=[c])
        labels += shown(tracker)[0]
    assert ids == [1] * len(classes)
    assert labels == [0] * len(classes)


def test_two_classes_side_by_side_keep_their_ids_without_class_gating() -> None:
    tracker = make_tracker(min_hits=1)
    for t in range(20):
        boxes, classes = [box(200 + t, 200), box(205 + t, 200)], [0, 1]
        if t % 2:
            boxes.reverse()
            classes.reverse()
        assert dict(zip(classes, step(tracker, boxes, classes=classes))) == {0: 1, 1: 2}


def test_the_shown_class_changes_when_the_fading_votes_say_so() -> None:
    # half-life 2 detections: decay 2 ** -0.5. Three votes of 0.9 for class 0 weigh
    # 0.9 (1 + d + d^2) = 1.986; after one class-1 detection 1.404 against 0.9 (still 0),
    # after two 0.993 against 0.9 (1 + d) = 1.536: class 1.
    tracker = make_tracker(min_hits=1, vote_half_life=2.0, class_agnostic=True)
    labels = []
    for t, c in enumerate([0, 0, 0, 1, 1]):
        assert step(tracker, [box(100 + 5 * t, 100)], classes=[c]) == [1]
        labels += shown(tracker)[0]
    assert labels == [0, 0, 0, 0, 1]


def test_a_tie_keeps_the_class_shown() -> None:
    tracker = make_tracker(min_hits=1, high_score=0.1, low_score=0.05, vote_half_life=1.0, class_agnostic=True)  # votes halve per detection
    labels = []
    for t, (c, score) in enumerate([(0, 0.4), (1, 0.2), (1, 0.1)]):
        step(tracker, [box(100 + 5 * t, 100)], scores=[score], classes=[c])
        labels += shown(tracker)[0]
    assert labels == [0, 0, 1]  # 0.4 / 2 against 0.2: a tie, class 0 stays; then 0.1 against 0.1 + 0.1


def test_the_track_shows_its_own_score_not_that_of_a_faint_detection() -> None:
    tracker = make_tracker(min_hits=1, vote_half_life=10.0)
    for t in range(10):
        step(tracker, [box(100 + 5 * t, 100)], scores=[0.9])
    assert step(tracker, [box(150, 100)], scores=[0.14]) == [1]
    decay = 0.5 ** 0.1
    earlier = sum(decay ** k for k in range(1, 11))  # weights of the ten 0.9 detections
    assert shown(tracker)[1] == pytest.approx([(0.9 * earlier + 0.14) / (earlier + 1)])
    assert shown(tracker)[1][0] > 0.8


def test_untracked_detections_show_their_own_class_and_score() -> None:
    tracker = make_tracker(min_hits=2)
    step(tracker, [box(100, 100)], scores=[0.7], classes=[4])
    assert shown(tracker) == ([4], [pytest.approx(0.7)])


def test_tentative_tracks_keep_to_their_class() -> None:
    # A new track is confirmed by min_hits detections of one class: class 0 then class 1 in one
    # place is two tentative tracks, the second confirmed in the third frame.
    tracker = make_tracker(min_hits=2)
    assert [step(tracker, [box(100 + 5 * t, 100)], classes=[c]) for t, c in enumerate([0, 1, 1])] == [[-1], [-1], [1]]


def test_lost_tracks_are_found_again_only_in_their_class() -> None:
    # After a gap of 20 frames a box one width beyond the prediction overlaps it not at all, but lies
    # within the track's grown uncertainty: step 5 finds the track again, in its own class only.
    for c, expected in ((0, 1), (1, 2)):
        tracker = make_tracker(min_hits=1)
        for t in range(10):
            step(tracker, [box(100 + 10 * t, 100)])
        for _ in range(20):
            step(tracker, [])
        predicted = float(tracker.predicted_centres()[0, 0])
        assert step(tracker, [box(predicted + 40, 100)], classes=[c]) == [expected]


def test_track_detections_shows_the_tracks_class_and_score() -> None:
    tracker = make_tracker(min_hits=1, class_agnostic=True)
    for t, (c, score) in enumerate([(1, 0.9), (1, 0.9), (2, 0.3)]):
        dets = Detections(boxes=np.array([box(50 + 2 * t, 50), box(300, 300 - 40 * t)], np.float32),
                          scores=np.array([score, 0.05], np.float32), class_ids=np.array([c, 3]),
                          masks=np.zeros((2, 400, 400), bool))
        track_detections(tracker, dets)
    assert dets.track_ids.tolist() == [1, -1]
    assert dets.class_ids.tolist() == [1, 3]  # the track's vote; the untracked one keeps its own
    assert dets.scores.dtype == np.float32 and dets.scores[0] > 0.6 and dets.scores[1] == np.float32(0.05)


def test_fast_movers_keep_their_ids_better_with_speed_dependent_velocity_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast family of the evaluation (10 objects at 10-25 px/frame, bouncing off the frame edges and
    passing behind each other), seed 1, with a detector that only boxes the visible parts: the manoeuvre
    noise of rtseg.track.motion lets tracks follow turns and find fast objects again after an occlusion."""
    clean = Noise(jitter=0.0, miss=0.0, low_score=0.0, false_positives=0.0)
    with_rule = run_scene("fast", 1, 300, clean, TrackingConfig())
    monkeypatch.setattr(motion, "_STD_MANOEUVRE", 0.0)
    without = run_scene("fast", 1, 300, clean, TrackingConfig())
    assert (with_rule["idsw"], with_rule["colour_changes"]) == (7, 2)
    assert (without["idsw"], without["colour_changes"]) == (12, 10)


def meet_and_turn_back(classes: list[int]) -> list[list[int]]:
    """The ids of the two objects of ``meeting_boxes``, of the given classes, frame by frame."""
    tracker = make_tracker()
    return [step(tracker, meeting_boxes(t), classes=classes) for t in range(MEETING_FRAMES)]


def test_class_agnostic_association_lets_the_tracks_class_win_a_close_call(monkeypatch: pytest.MonkeyPatch) -> None:
    assert meet_and_turn_back([0, 0])[-1] == [2, 1]  # one class: motion alone decides, and swaps them
    assert all(ids == [1, 2] for ids in meet_and_turn_back([0, 1])[1:])  # another class counts less
    monkeypatch.setattr(association, "_OTHER_CLASS", 1.0)
    assert meet_and_turn_back([0, 1])[-1] == [2, 1]  # without that, classes are ignored altogether
