"""rtseg.offline.eval_tracking: why colour changes happened, tallied on hand-made frames; one small scene end to end."""

from __future__ import annotations

from rtseg.core.config import TrackingConfig
from rtseg.offline.eval_tracking import CAUSES, change_causes, run_scene
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
