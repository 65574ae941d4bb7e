"""Appearance: colour histograms of mask pixels, and the tracker's BoT-SORT-style fusion with motion."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from track_helpers import MEETING_FRAMES, box, meeting_boxes

from rtseg.core.config import TrackingConfig
from rtseg.core.structures import Detections
from rtseg.track import appearance
from rtseg.track.tracker import Tracker, track_detections

RED, BLUE = (255, 0, 0), (0, 0, 255)


def bin_of(colour: tuple[int, int, int]) -> int:
    r, g, b = (c >> (8 - int(np.log2(appearance.BINS))) for c in colour)
    return (r * appearance.BINS + g) * appearance.BINS + b


def test_histogram_counts_only_the_mask_pixels_and_is_a_unit_vector() -> None:
    image = np.zeros((20, 20, 3), np.uint8)
    image[:, :] = BLUE
    image[5:10, 5:10] = RED
    mask = np.zeros((1, 20, 20), bool)
    mask[0, 5:10, 5:10] = True
    looks = appearance.colour_histograms(image, np.array([[0.0, 0.0, 20.0, 20.0]]), mask)
    assert looks.shape == (1, appearance.SIZE)
    assert looks[0, bin_of(RED)] == pytest.approx(1.0)  # the blue around the mask inside the box is not counted
    assert np.linalg.norm(looks[0]) == pytest.approx(1.0)


def test_histogram_shares_are_square_rooted_so_dot_products_are_bhattacharyya_coefficients() -> None:
    image = np.zeros((10, 10, 3), np.uint8)
    image[:, :5], image[:, 5:] = RED, BLUE  # half red, half blue
    full = np.ones((2, 10, 10), bool)
    boxes = np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 5.0, 10.0]])  # both halves; the red half only
    looks = appearance.colour_histograms(image, boxes, full)
    assert looks[0, bin_of(RED)] == pytest.approx(np.sqrt(0.5))
    assert looks[0] @ looks[1] == pytest.approx(np.sqrt(0.5))  # sum of sqrt(p * q) = sqrt(0.5 * 1)


def test_empty_mask_falls_back_to_the_box_and_a_box_off_the_image_to_zeros() -> None:
    image = np.zeros((10, 10, 3), np.uint8)
    image[:, :] = RED
    looks = appearance.colour_histograms(image, np.array([[2.0, 2.0, 6.0, 6.0], [20.0, 20.0, 30.0, 30.0]]),
                                         np.zeros((2, 10, 10), bool))
    assert looks[0, bin_of(RED)] == pytest.approx(1.0)
    assert not looks[1].any()


def test_fusion_raises_only_near_looking_pairs_that_overlap_enough() -> None:
    red, blue = np.eye(appearance.SIZE, dtype=np.float32)[[bin_of(RED), bin_of(BLUE)]]
    overlap = np.array([[0.4, 0.4], [0.2, 0.6]])
    appearance.fuse(overlap, np.stack([red, red]), np.stack([red, blue]), min_iou=0.3, max_distance=0.25)
    # row 0: the red detection looks the same (distance 0) and overlaps 0.4 >= 0.3 -> 1; the blue one is far
    # row 1: the red detection looks the same but overlaps 0.2 < 0.3 -> unchanged; never lowered
    assert overlap.tolist() == [[1.0, 0.4], [0.2, 0.6]]


def bounce(config: TrackingConfig) -> list[list[int]]:
    """The ids of the two objects of ``meeting_boxes`` (one class): the red one starts on the left,
    the blue one on the right."""
    tracker = Tracker(config)
    looks = np.eye(appearance.SIZE, dtype=np.float32)[[bin_of(RED), bin_of(BLUE)]]
    return [tracker.update(np.array(meeting_boxes(t)), np.array([0.9, 0.9]), np.array([0, 0]), None, looks).tolist()
            for t in range(MEETING_FRAMES)]


def test_appearance_keeps_identities_where_motion_alone_swaps_them() -> None:
    motion_only = bounce(TrackingConfig())
    assert motion_only[-1] == [2, 1]  # without appearance the two tracks swap at the turn
    with_looks = bounce(dataclasses.replace(TrackingConfig(), appearance=True))
    assert all(ids == [1, 2] for ids in with_looks[1:])


def test_appearance_needs_one_vector_per_detection() -> None:
    tracker = Tracker(dataclasses.replace(TrackingConfig(), appearance=True))
    with pytest.raises(ValueError, match="appearance"):
        tracker.update(np.array([box(100, 100)]), np.array([0.9]), np.array([0]))


def test_track_detections_describes_each_detection_by_the_frame_pixels_under_its_mask() -> None:
    """Through the Detections record, as the pipeline's tracking stage calls it: the two objects of
    ``bounce`` drawn in their colours on a grey frame, masks and all."""
    tracker = Tracker(dataclasses.replace(TrackingConfig(), appearance=True))
    ids = []
    for t in range(MEETING_FRAMES):
        boxes = np.array(meeting_boxes(t), np.float32)
        image = np.full((400, 600, 3), 128, np.uint8)
        masks = np.zeros((2, 400, 600), bool)
        for mask, (x0, y0, x1, y1) in zip(masks, boxes.astype(int)):
            mask[y0:y1, x0:x1] = True
        for i, colour in ((1, BLUE), (0, RED)):  # red in front where they overlap
            image[masks[i]] = colour
        masks[1] &= ~masks[0]  # the blue one's mask is its visible part
        detections = Detections(boxes, np.array([0.9, 0.9], np.float32), np.array([0, 0]), masks)
        track_detections(tracker, detections, image)
        ids.append(detections.track_ids.tolist())
    assert all(i == [1, 2] for i in ids[1:])
