"""MOTA, IDF1, ID switches and colour changes on sequences small enough to score by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rtseg.offline.mot_metrics import (
    ColourChange,
    ColourChanges,
    MotAccumulator,
    MotCounts,
    colour_changes,
    count_colour_changes,
)

BOX = [0.0, 0.0, 10.0, 10.0]
FAR = [100.0, 100.0, 110.0, 110.0]


def score(frames: list[tuple[list, list, list, list]]) -> MotCounts:
    acc = MotAccumulator()
    for gt_ids, gt_boxes, hyp_ids, hyp_boxes in frames:
        acc.update(gt_ids, np.array(gt_boxes).reshape(-1, 4), hyp_ids, np.array(hyp_boxes).reshape(-1, 4))
    return acc.counts()


def test_perfect_tracking() -> None:
    frame = (["a", "b"], [BOX, FAR], [1, 2], [BOX, FAR])
    c = score([frame] * 3)
    assert (c.num_gt, c.num_hyp, c.fp, c.fn, c.idsw, c.idtp) == (6, 6, 0, 0, 0, 6)
    assert c.mota == 1.0 and c.idf1 == 1.0


def test_one_switch_halfway() -> None:
    # One object, 4 frames: hypothesis 1 for two frames, then hypothesis 2.
    c = score([(["a"], [BOX], [h], [BOX]) for h in (1, 1, 2, 2)])
    assert (c.fp, c.fn, c.idsw) == (0, 0, 1)
    assert c.mota == pytest.approx(1 - 1 / 4)
    # IDF1 pairs "a" with one of them for 2 of its 4 frames: 2 * 2 / (4 + 4).
    assert c.idtp == 2 and c.idf1 == pytest.approx(0.5)


def test_miss_and_false_positive() -> None:
    c = score([
        (["a"], [BOX], [1, 9], [BOX, FAR]),  # 9 is a false positive
        (["a"], [BOX], [1], [BOX]),
        (["a"], [BOX], [], []),  # missed
        (["a"], [BOX], [1], [BOX]),
    ])
    assert (c.num_gt, c.num_hyp, c.fp, c.fn, c.idsw) == (4, 4, 1, 1, 0)
    assert c.mota == pytest.approx(1 - 2 / 4)
    assert c.idtp == 3 and c.idf1 == pytest.approx(2 * 3 / (4 + 4))


def test_overlap_below_half_is_no_match() -> None:
    shifted = [6.0, 0.0, 16.0, 10.0]  # IoU 4/16 = 0.25 with BOX
    c = score([(["a"], [BOX], [1], [shifted])])
    assert (c.fp, c.fn, c.idtp) == (1, 1, 0)
    assert c.mota == pytest.approx(-1.0)


def test_keeps_last_match_over_a_better_overlap() -> None:
    # CLEAR-MOT: "a" stays with hypothesis 1 while they still overlap enough,
    # even though hypothesis 2 fits better; 2 is then a false positive, not a switch.
    near = [1.0, 0.0, 11.0, 10.0]  # IoU 9/11 with BOX
    c = score([(["a"], [BOX], [1], [BOX]), (["a"], [BOX], [1, 2], [near, BOX])])
    assert (c.idsw, c.fp, c.fn) == (0, 1, 0)


def test_switch_counted_across_a_gap() -> None:
    c = score([(["a"], [BOX], [1], [BOX]), (["a"], [BOX], [], []), (["a"], [BOX], [2], [BOX])])
    assert (c.idsw, c.fn) == (1, 1)
    assert c.mota == pytest.approx(1 - 2 / 3)


def test_two_objects_swap_ids() -> None:
    # Both objects swap hypotheses in the last frame: two switches.
    c = score([(["a", "b"], [BOX, FAR], [1, 2], [BOX, FAR])] * 2 + [(["a", "b"], [BOX, FAR], [2, 1], [BOX, FAR])])
    assert c.idsw == 2
    assert c.idf1 == pytest.approx(2 * 4 / 12)


def test_counts_add_up_across_sequences() -> None:
    total = MotCounts(num_gt=4, num_hyp=4, fp=1, fn=1, idsw=0, idtp=3) + MotCounts(num_gt=4, num_hyp=4, idsw=1, idtp=2)
    assert total == MotCounts(8, 8, 1, 1, 1, 5)
    assert total.mota == pytest.approx(1 - 3 / 8) and total.idf1 == pytest.approx(10 / 16)
    assert math.isnan(MotCounts().mota) and math.isnan(MotCounts().idf1)


RED, BLUE, GREY = (255, 0, 0), (0, 0, 255), (128, 128, 128)


@pytest.mark.parametrize("frames, continuous, lifetime", [
    ([{1: RED}, {1: RED}, {1: RED}], 0, 0),
    ([{1: RED}, {1: BLUE}, {1: BLUE}], 1, 1),
    ([{1: GREY}, {1: GREY}, {1: RED}], 0, 0),  # confirmation: the run starts at its first id colour
    ([{1: RED}, {1: GREY}, {1: RED}], 2, 2),  # lost its colour for a frame while detected, and got it back
    ([{1: RED}, {1: GREY}, {1: BLUE}], 2, 2),
    ([{1: GREY}, {1: RED}, {1: GREY}], 1, 1),  # a run may end in grey
    ([{1: RED}, {}, {1: RED}], 0, 0),  # missed for a frame, back in its colour
    ([{1: RED}, {}, {1: BLUE}], 0, 1),  # not detected in between: a new run, but a new colour for its life
    ([{1: RED}, {}, {1: GREY}, {1: GREY}, {1: BLUE}], 0, 1),  # a new track after the gap, confirmed
    ([{1: RED}, {}, {1: GREY}, {1: RED}], 0, 0),  # found again a frame late: no change at all
    ([{1: RED}, {1: BLUE}, {}, {1: RED}], 1, 2),  # compared with the last id colour before the gap
    ([{1: RED}, {1: GREY}, {}, {1: RED}], 1, 1),
    ([{1: RED}, {}, {1: GREY}, {}, {1: RED}], 0, 0),  # a run without an id colour changes nothing
    ([{1: RED, 2: BLUE}, {1: BLUE, 2: RED}], 2, 2),  # two objects swap colours
    ([{1: RED}, {2: BLUE}, {1: RED, 2: BLUE}], 0, 0),  # objects counted apart
    ([], 0, 0),
])
def test_colour_changes(frames: list[dict], continuous: int, lifetime: int) -> None:
    assert count_colour_changes(frames, GREY) == ColourChanges(continuous, lifetime)


def test_colour_changes_accept_ids_and_any_iterable() -> None:
    # Colours are a function of the id, so ids (with -1 for neutral) count the same.
    ids = iter([{"a": -1}, {"a": 3}, {"a": 3}, {"a": 4}, {}, {"a": 3}])
    assert count_colour_changes(ids, -1) == ColourChanges(continuous=1, lifetime=2)


def test_colour_changes_are_listed_with_frame_and_colours() -> None:
    frames = [{1: RED, 2: BLUE}, {1: GREY, 2: BLUE}, {1: RED}, {}, {1: BLUE, 2: RED}]
    assert list(colour_changes(frames, GREY)) == [
        ColourChange(1, 1, RED, GREY, continuous=True),
        ColourChange(2, 1, GREY, RED, continuous=True),
        ColourChange(4, 1, RED, BLUE, continuous=False),  # back after a gap in another colour
        ColourChange(4, 2, BLUE, RED, continuous=False),
    ]


def test_colour_changes_add_up() -> None:
    assert ColourChanges(1, 2) + ColourChanges(3, 4) == ColourChanges(4, 6)


def test_a_given_overlap_matrix_scores_like_boxes() -> None:
    # Mask IoU instead of box IoU: the caller's matrix decides what matches.
    acc = MotAccumulator()
    acc.update_iou(["a", "b"], [1, 2], np.array([[0.9, 0.0], [0.0, 0.4]]))  # "b" overlaps 2 too little
    acc.update_iou(["a", "b"], [2, 1], np.array([[0.8, 0.0], [0.0, 0.7]]))  # both swap
    c = acc.counts()
    assert (c.num_gt, c.num_hyp, c.fp, c.fn, c.idsw) == (4, 4, 1, 1, 1)
    assert c.idtp == 2  # a-2 and b-1, one frame each


def _random_sequences(seed: int) -> list[list[tuple[list[int], np.ndarray, list[int], np.ndarray]]]:
    """Random sequences with jittered, dropped, spurious and swapped hypotheses: every kind of event."""
    rng = np.random.default_rng(seed)
    sequences = []
    for _ in range(20):
        n = int(rng.integers(1, 6))
        start = rng.uniform(0, 200, (n, 2))
        velocity = rng.uniform(-4, 4, (n, 2))
        hyp_of = list(range(100, 100 + n))
        frames = []
        for t in range(int(rng.integers(5, 40))):
            centre = start + t * velocity
            gt_boxes = np.concatenate([centre, centre + 20], axis=1)
            if rng.random() < 0.1 and n > 1:  # two hypotheses swap ids
                i, j = rng.choice(n, 2, replace=False)
                hyp_of[i], hyp_of[j] = hyp_of[j], hyp_of[i]
            if rng.random() < 0.05:  # a fresh id for one object
                hyp_of[int(rng.integers(n))] = int(rng.integers(1000, 2000))
            seen = rng.random(n) > 0.15
            hyp_boxes = gt_boxes[seen] + rng.normal(0, 3, (int(seen.sum()), 4))
            hyp_ids = [hyp_of[i] for i in np.flatnonzero(seen)]
            if rng.random() < 0.3:  # a false positive
                corner = rng.uniform(0, 250, 2)
                hyp_boxes = np.concatenate([hyp_boxes, [[*corner, *(corner + 20)]]])
                hyp_ids.append(int(rng.integers(5000, 6000)))
            frames.append((list(range(n)), gt_boxes, hyp_ids, hyp_boxes))
        sequences.append(frames)
    return sequences


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mota_idf1_and_counts_equal_motmetrics(seed: int) -> None:
    mm = pytest.importorskip("motmetrics")  # a development extra
    from rtseg.track.geometry import box_iou

    switches = 0
    for frames in _random_sequences(seed):
        ours = MotAccumulator()
        theirs = mm.MOTAccumulator(auto_id=True)
        for gt_ids, gt_boxes, hyp_ids, hyp_boxes in frames:
            ours.update(gt_ids, gt_boxes, hyp_ids, hyp_boxes)
            iou = box_iou(gt_boxes, hyp_boxes.reshape(-1, 4))
            theirs.update(gt_ids, hyp_ids, np.where(iou >= 0.5, 1.0 - iou, np.nan))
        mine = ours.counts()
        summary = mm.metrics.create().compute(theirs, metrics=["mota", "idf1", "num_switches", "num_false_positives",
                                                                 "num_misses", "num_objects"], name="s")
        row = summary.iloc[0]
        assert (mine.idsw, mine.fp, mine.fn, mine.num_gt) == (
            row["num_switches"], row["num_false_positives"], row["num_misses"], row["num_objects"])
        assert mine.mota == pytest.approx(row["mota"], abs=1e-9)
        assert mine.idf1 == pytest.approx(row["idf1"], abs=1e-9)
        switches += mine.idsw
    assert switches > 0  # the sequences do exercise switches


def test_hota_of_perfect_tracking_and_of_one_switch_halfway() -> None:
    pytest.importorskip("trackeval")  # a development extra
    perfect = MotAccumulator()
    for _ in range(4):
        perfect.update([1], [BOX], ["a"], [BOX])
    assert perfect.hota() == pytest.approx({"hota": 1.0, "deta": 1.0, "assa": 1.0})
    # Every frame detected exactly, but the hypothesis id changes after two frames: each true
    # positive's association IoU is 2 / (2 + 2) = 0.5, so AssA 0.5, DetA 1, HOTA sqrt(0.5).
    switched = MotAccumulator()
    for t in range(4):
        switched.update([1], [BOX], ["a" if t < 2 else "b"], [BOX])
    assert switched.hota() == pytest.approx({"hota": math.sqrt(0.5), "deta": 1.0, "assa": 0.5})
