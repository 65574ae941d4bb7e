"""rtseg.offline.eval_tracking: why colour changes happened, tallied on hand-made frames; one small scene end to end."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rtseg.core.config import TrackingConfig
from rtseg.offline.eval_tracking import CAUSES, benchmark, change_causes, run_scene
from rtseg.offline.mot_metrics import colour_changes
from rtseg.offline.scenes import Noise


def test_causes_name_what_became_of_the_lost_id() -> None:
    colours = [{10: 1, 20: 2, 30: 3, 40: 4},
               {10: -1, 20: 2, 30: 3, 40: 4},  # 10 goes grey: its id 1 is on a false detection
               {10: 1, 20: 5, 30: 3, 40: 4},   # 10 back in 1 (a blip); 20 in 5: its id 2 matched nothing
               {10: 1, 20: 5, 30: 4, 40: 3}]   # 30 and 40 swap ids: each lost its id to the other
    owners = [{1: 10, 2: 20, 3: 30, 4: 40},
              {1: -1, 2: 20, 3: 30, 4: 40},
              {1: 10, 5: 20, 3: 30, 4: 40},
              {1: 10, 5: 20, 4: 30, 3: 40}]
    causes = change_causes(list(colour_changes(colours, -1)), owners)
    assert causes == {"false_detection": 1, "other_object": 2, "unmatched": 1, "back_from_grey": 1, "blips": 1}


def test_a_return_to_another_id_is_no_blip_and_gaps_are_not_tallied() -> None:
    colours = [{7: 1}, {7: -1}, {7: 2}, {}, {7: 3}]  # grey, then a new id; then a gap, back in another id
    owners = [{1: 7}, {}, {2: 7}, {}, {3: 7}]
    causes = change_causes(list(colour_changes(colours, -1)), owners)
    assert causes == {"false_detection": 0, "other_object": 0, "unmatched": 1, "back_from_grey": 1, "blips": 0}


def test_a_scene_reports_causes_that_add_up_to_its_changes() -> None:
    # Heavy noise on a short crowded scene, so that the tracker does change some colours.
    result = run_scene("crowd", 0, 150, Noise(jitter=6.0, false_positives=8.0), TrackingConfig())
    causes = result["colour_change_causes"]
    assert set(causes) == set(CAUSES)
    lost = causes["false_detection"] + causes["other_object"] + causes["unmatched"]
    assert lost + causes["back_from_grey"] == result["colour_changes"] > 0
    assert causes["blips"] <= causes["back_from_grey"]


def test_a_boxmot_peer_gives_each_detection_its_id() -> None:
    pytest.importorskip("boxmot")  # a development extra
    from rtseg.offline.eval_tracking import make_tracker

    tracker = make_tracker("bytetrack", TrackingConfig())
    by_object: dict[int, set[int]] = {0: set(), 1: set()}
    for t in range(10):
        # two objects, listed in alternating order, and a faint box the tracker must ignore
        boxes = [[100 + 4 * t, 100, 140 + 4 * t, 180], [600 - 4 * t, 300, 640 - 4 * t, 380], [900, 50, 930, 80]]
        order = [0, 1] if t % 2 else [1, 0]
        ids = tracker.update(np.array([boxes[k] for k in order] + [boxes[2]], np.float32),
                             np.array([0.9, 0.9, 0.05], np.float32), np.array([0, 0, 0]))
        assert ids[2] == -1
        if t >= 3:
            for k, i in zip(order, ids[:2]):
                by_object[k].add(int(i))
    assert all(len(ids) == 1 for ids in by_object.values())
    assert by_object[0] != by_object[1] and -1 not in by_object[0] | by_object[1]


def test_peers_run_on_the_same_detections_as_rtseg() -> None:
    pytest.importorskip("boxmot")
    pytest.importorskip("trackeval")
    from rtseg.offline.eval_tracking import compare

    lines: list[str] = []
    table = compare(["head_on"], [0], 60, Noise(), TrackingConfig(), ["rtseg", "ocsort"], say=lines.append)
    rows = table["head_on"]
    assert set(rows) == {"rtseg", "ocsort"}
    assert rows["rtseg"]["num_gt"] == rows["ocsort"]["num_gt"] > 0  # one ground truth for both
    assert all(0.0 <= rows[name]["hota"] <= 1.0 for name in rows)
    assert any(line.startswith("ocsort") for line in lines)


def test_simulated_appearance_keeps_meeting_objects_apart() -> None:
    """Oblique meetings of same-class pairs, seed 1: with an appearance per object (tracking.appearance),
    the tracker swaps fewer identities than on motion alone, on the same detections."""
    motion_only = run_scene("oblique", 1, 300, Noise(), TrackingConfig())
    with_looks = run_scene("oblique", 1, 300, Noise(), dataclasses.replace(TrackingConfig(), appearance=True))
    assert (motion_only["idsw"], with_looks["idsw"]) == (5, 1)
    assert with_looks["num_gt"] == motion_only["num_gt"]


def test_benchmark_times_the_histograms_with_appearance() -> None:
    figures = benchmark(dataclasses.replace(TrackingConfig(), appearance=True), 20, Noise())
    assert figures["frames"] == 20 and figures["appearance_ms"] > 0
    assert "appearance_ms" not in benchmark(TrackingConfig(), 20, Noise())


def test_an_ablation_changes_the_rule_for_its_run_only() -> None:
    from rtseg.offline.eval_tracking import ablate
    from rtseg.track import association

    lines: list[str] = []
    table = ablate(["check_walkers"], [0], 120, Noise(), TrackingConfig(), ["defaults", "no_continuity_bonus"],
                   say=lines.append)
    assert set(table) == {"defaults", "no_continuity_bonus"}
    assert table["defaults"]["check_walkers"]["num_gt"] == table["no_continuity_bonus"]["check_walkers"]["num_gt"] > 0
    assert association._SEEN_BONUS == 0.1  # patched back after the run
    assert lines[1].startswith("defaults") and lines[2].startswith("no_continuity_bonus")
