"""rtseg.offline.check_scenes: the checking generator makes the scenes its docstring describes, from the seed alone."""

from __future__ import annotations

import numpy as np
import pytest

from rtseg.offline.check_scenes import CHECK_SCENES, FRAMES, MEETING_SPEED, WALKERS, detect, make_check_scene


@pytest.mark.parametrize("name", CHECK_SCENES)
def test_a_scene_is_determined_by_its_seed(name: str) -> None:
    a, b, c = make_check_scene(name, 3), make_check_scene(name, 3), make_check_scene(name, 4)
    assert a.boxes.shape[0] == FRAMES
    assert np.array_equal(a.boxes, b.boxes) and not np.array_equal(a.boxes, c.boxes)


def test_a_crossing_pair_is_one_size_meeting_at_four_px_a_frame() -> None:
    boxes = make_check_scene("check_head_on", 0).boxes  # (frames, 2, 4)
    sizes = boxes[:, :, 2:] - boxes[:, :, :2]
    assert np.allclose(sizes, sizes[0, 0])
    centres = (boxes[:, :, :2] + boxes[:, :, 2:]) / 2
    speed = np.linalg.norm(np.diff(centres, axis=0), axis=2)
    assert np.allclose(speed, MEETING_SPEED)
    closest = np.linalg.norm(centres[:, 0] - centres[:, 1], axis=1).min()
    assert closest <= 6.0 + 1e-9  # the paths pass at most 6 px apart


def test_walkers_stay_in_the_frame_and_the_detector_adds_plain_noise() -> None:
    scene = make_check_scene("check_walkers", 1)
    assert scene.boxes.shape[1] == WALKERS
    rng = np.random.default_rng(0)
    frames = [detect(scene, t, rng) for t in range(FRAMES)]
    found = sum(int((f.det_object >= 0).sum()) for f in frames)
    assert 0.85 * FRAMES * WALKERS < found < FRAMES * WALKERS  # 5 % missed, a few more lost to NMS
    false = [f.scores[f.det_object < 0] for f in frames]
    assert all((s < 0.5).all() for s in false)  # false positives score below the tracker's high score
    assert sum(len(s) for s in false) <= 12
