"""rtseg.offline.scenes: the scene families are what their names say, and the class noise does what it says."""

from __future__ import annotations

import numpy as np
import pytest

from rtseg.offline.scenes import HEIGHT, WIDTH, Noise, _confuse_classes, gaps, make_scene


def _centres(boxes: np.ndarray) -> np.ndarray:
    return (boxes[..., :2] + boxes[..., 2:]) / 2


def _velocities(boxes: np.ndarray) -> np.ndarray:
    """(objects, 2) mean velocity of each object over its life."""
    centre = _centres(boxes)
    return np.nanmean(np.diff(centre, axis=0), axis=0)


@pytest.mark.parametrize("name, angle, ratio", [("head_on", (170, 180), (1.0, 1.1)),
                                                ("head_on_unequal", (170, 180), (1.4, 2.6)),
                                                ("oblique", (115, 155), (1.0, 1.1)),
                                                ("oblique_unequal", (115, 155), (1.4, 2.6))])
def test_pairs_of_one_class_meet_at_the_stated_angle_and_speeds(name: str, angle: tuple, ratio: tuple) -> None:
    scene = make_scene(name, 3, 600, max_gap=10_000)  # keep every object, however long hidden
    assert (scene.classes == 0).all() and scene.boxes.shape[1] == 16
    velocity = _velocities(scene.boxes)
    centre = _centres(scene.boxes)
    for a, b in zip(range(0, 16, 2), range(1, 16, 2)):
        cos = velocity[a] @ velocity[b] / np.linalg.norm(velocity[a]) / np.linalg.norm(velocity[b])
        assert angle[0] <= np.degrees(np.arccos(np.clip(cos, -1, 1))) <= angle[1]
        speeds = sorted(np.linalg.norm(velocity[[a, b]], axis=1))
        assert ratio[0] <= speeds[1] / speeds[0] <= ratio[1]
        apart = np.linalg.norm(centre[:, a] - centre[:, b], axis=1)
        assert np.nanmin(apart) < 40  # they do meet


def test_walkers_and_fast_movers() -> None:
    walkers = make_scene("walkers", 0, 300, max_gap=10_000)
    assert 10 <= walkers.boxes.shape[1] <= 20 and (walkers.classes == 0).all()
    step = np.linalg.norm(np.diff(_centres(make_scene("fast", 0, 300, max_gap=10_000).boxes), axis=0), axis=2)
    assert 20 < np.nanmax(step) <= 25 * 1.3 + 1  # up to 25 px/frame (speeds drift by 30% at most)
    assert np.nanmedian(step) > 10


def test_hide_hides_objects_fully_for_10_to_20_frames() -> None:
    scene = make_scene("hide", 0, 600, max_gap=30)
    lengths = [g for object_gaps in gaps(scene).values() for g in object_gaps]
    assert len(lengths) >= 10
    assert 10 <= np.median(lengths) <= 22  # 10-20 frames fully behind, plus the frames less than 40% visible


def test_plain_has_no_object_hiding_another() -> None:
    scene = make_scene("plain", 0, 200, max_gap=30)
    for view, boxes in zip(scene.views, scene.boxes):
        box = boxes[view.alive]
        inside = (box[:, 0] >= 0) & (box[:, 1] >= 0) & (box[:, 2] <= WIDTH) & (box[:, 3] <= HEIGHT)
        assert (view.fraction[inside] == 1.0).all()


def test_class_flips_and_duplicates() -> None:
    rng = np.random.default_rng(0)
    boxes = np.array([[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 60]], float)
    scores, classes, objects = np.array([0.9, 0.8, 0.7]), np.array([0, 1, 2]), np.array([4, 5, -1])
    _, _, flipped, owner = _confuse_classes(boxes, scores, classes, objects, Noise(class_flip=1.0), rng, 3)
    assert (flipped[:2] != classes[:2]).all() and flipped[2] == 2 and owner.tolist() == [4, 5, -1]
    out_boxes, out_scores, out_classes, owner = _confuse_classes(boxes, scores, classes, objects,
                                                                 Noise(duplicates=1.0), rng, 3)
    assert owner.tolist() == [4, 5, -1, -1, -1]  # one twin per real detection, a false detection
    assert (out_classes[3:] != classes[:2]).all() and (out_scores[3:] <= scores[:2]).all()
    assert np.abs(out_boxes[3:] - boxes[:2]).max() <= 1.0
