"""Rendering: mask blending, contours, boxes and labels, read back from pixels."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from rtseg.core.config import RenderConfig
from rtseg.core.structures import Detections
from rtseg.render.colors import color_for_id
from rtseg.render.renderer import Renderer, instance_color, instance_label, label_geometry, mask_bounds, place_label


def _one_square(track_id: int = -1) -> tuple[np.ndarray, Detections]:
    image = np.full((60, 80, 3), 100, np.uint8)
    mask = np.zeros((60, 80), bool)
    mask[20:40, 30:50] = True
    det = Detections(boxes=np.array([[30, 20, 50, 40]], np.float32), scores=np.array([0.87], np.float32),
                     class_ids=np.array([3]), masks=mask[None], class_names=("__background__", "a", "b", "car"),
                     track_ids=np.array([track_id]))
    return image, det


def test_mask_is_alpha_blended_in_its_colour_and_outside_is_untouched():
    image, det = _one_square()
    config = dataclasses.replace(RenderConfig(), alpha=0.5, contours=False, boxes=False, labels=False)
    out = Renderer(config).draw(image, det)
    color = np.array(instance_color(det, 0))
    np.testing.assert_allclose(out[30, 40], 0.5 * 100 + 0.5 * color, atol=1)
    assert (out[5, 5] == 100).all() and (out[55, 75] == 100).all()
    assert (image == 100).all()  # the source frame is not drawn on


def test_alpha_zero_leaves_the_masked_pixels_alone():
    image, det = _one_square()
    config = dataclasses.replace(RenderConfig(), alpha=0.0, contours=False, boxes=False, labels=False)
    assert (Renderer(config).draw(image, det) == image).all()


def test_contour_box_and_label_are_drawn():
    image, det = _one_square(track_id=7)
    out = Renderer(RenderConfig()).draw(image, det)
    color = np.array(color_for_id(7))
    assert (out[20, 40] == color).all() or (out[39, 40] == color).all()  # outline on the mask edge
    assert not (out[10:20, 30:60] == 100).all()  # a label above the box
    assert instance_label(det, 0) == "#7 car 0.87"


def test_colour_follows_the_track_id():
    _, det = _one_square(track_id=4)
    assert instance_color(det, 0) == color_for_id(4)


def test_empty_detections_give_an_unchanged_copy():
    image = np.full((10, 10, 3), 5, np.uint8)
    out = Renderer(RenderConfig()).draw(image, Detections.empty(10, 10))
    assert (out == image).all() and out is not image


def test_masks_on_a_torch_device_are_composed_there_like_the_numpy_path():
    """The GPU path (masks as torch tensors), run on CPU tensors: same blend, an outline on the mask's edge."""
    import torch

    image, det = _one_square(track_id=2)
    on_device = dataclasses.replace(det, masks=torch.from_numpy(det.masks))
    plain = dataclasses.replace(RenderConfig(), contours=False, boxes=False, labels=False)
    assert (Renderer(plain).draw(image, on_device) == Renderer(plain).draw(image, det)).all()
    outlined = Renderer(dataclasses.replace(plain, contours=True)).draw(image, on_device)
    color = np.array(color_for_id(2))
    assert (outlined[20, 40] == color).all() and (outlined[30, 30] == color).all()  # edge pixels
    assert not (outlined[30, 40] == color).all()  # the inside stays blended
    boxed = Renderer(RenderConfig()).draw(image, on_device)
    assert not (boxed[10:20, 30:60] == 100).all()  # the label is drawn on the host as before
    assert (on_device.host_masks() == det.masks).all()
    assert isinstance(on_device.select(np.array([True])).masks, torch.Tensor)


def _full_frame_reference(image: np.ndarray, det: Detections, config: RenderConfig) -> np.ndarray:
    """Masks and outlines drawn the plain way, every instance over the whole frame (boxes and labels off)."""
    out = image.copy()
    colors = [instance_color(det, i, "index") for i in range(len(det))]
    layer, covered = np.zeros_like(out), np.zeros(out.shape[:2], bool)
    for mask, color in zip(det.masks, colors):
        layer[mask] = color
        covered |= mask
    blended = cv2.addWeighted(out, 1.0 - config.alpha, layer, config.alpha, 0.0)
    out[covered] = blended[covered]
    for mask, color in zip(det.masks, colors):
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, color, config.line_width, cv2.LINE_AA)
    return out


@pytest.mark.parametrize("alpha", [0.5, 0.3, 0.77])
def test_masks_drawn_within_their_bounds_equal_drawing_over_the_whole_frame(alpha):
    rng = np.random.default_rng(int(alpha * 100))
    height, width = 72, 96
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    masks = np.zeros((6, height, width), bool)
    masks[0, 10:40, 20:60] = True
    masks[1, 30:72, 50:96] = True  # overlaps mask 0 and reaches the bottom-right corner
    masks[2, 0:5, 0:96] = True  # the whole top edge
    masks[3] = rng.random((height, width)) < 0.05  # scattered pixels over the whole frame
    masks[4, 50:60, 0:3] = True  # the left edge
    det = Detections(boxes=np.zeros((6, 4), np.float32), scores=np.full(6, 0.9, np.float32), class_ids=np.ones(6, int),
                     masks=masks, class_names=("__background__", "thing"))  # mask 5 stays empty
    config = dataclasses.replace(RenderConfig(), alpha=alpha, boxes=False, labels=False, color_by="index")
    drawn = Renderer(config).draw(image, det)
    np.testing.assert_array_equal(drawn, _full_frame_reference(image, det, config))
    assert mask_bounds(masks[1]) == (50, 30, 46, 42) and mask_bounds(masks[5]) == (0, 0, 0, 0)


def _label_only(height: int, width: int, box: list[float]) -> tuple[np.ndarray, Detections]:
    det = Detections(boxes=np.array([box], np.float32), scores=np.array([0.87], np.float32), class_ids=np.array([1]),
                     masks=np.zeros((1, height, width), bool), class_names=("__background__", "person"),
                     track_ids=np.array([12]))
    config = dataclasses.replace(RenderConfig(), alpha=0.0, contours=False, boxes=False)
    return Renderer(config).draw(np.zeros((height, width, 3), np.uint8), det), det


def _painted(out: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(out.any(axis=2))
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def test_a_label_at_the_frames_right_and_top_edges_stays_inside_it():
    for box, edge in (([140, 50, 160, 80], "right"), ([10, 0, 50, 40], "top")):
        out, det = _label_only(128, 160, box)
        rect, *_ = label_geometry(instance_label(det, 0), (int(box[0]), int(box[1])), 128, 160)
        assert _painted(out) == rect  # all of the label is drawn, where the geometry says
        x0, y0, x1, y1 = rect
        assert 0 <= x0 and x1 <= 160 and 0 <= y0 and y1 <= 128
        if edge == "right":
            assert x1 == 160 and y1 == 50  # moved left, still on the box's top edge
        else:
            assert y0 == 0 and x0 == 10  # below the frame's top, at the box's left


def test_labels_take_the_same_share_of_any_frame():
    text = "#12 person 0.87"
    shares = []
    for height, width in ((480, 640), (1080, 1920), (2160, 3840)):
        (x0, y0, x1, y1), *_ = label_geometry(text, (10, height // 2), height, width)
        shares.append((y1 - y0) / height)
    assert max(shares) / min(shares) < 1.1
    # On a 160 x 128 video a label is at most a tenth of the frame's height and a twentieth of its area.
    (x0, y0, x1, y1), *_ = label_geometry(text, (10, 60), 128, 160)
    assert (y1 - y0) <= 128 / 10 and (x1 - x0) * (y1 - y0) <= 128 * 160 / 20


def _labels_of_people(boxes: list[list[int]], height: int, width: int) -> tuple[Detections, list]:
    """The places ``place_label`` gives the labels of people in ``boxes``, in order, on a ``height`` x ``width``
    frame."""
    count = len(boxes)
    det = Detections(boxes=np.array(boxes, np.float32), scores=np.full(count, 0.87, np.float32),
                     class_ids=np.ones(count, int), masks=np.zeros((count, height, width), bool),
                     class_names=("__background__", "person"), track_ids=np.arange(count))
    taken: list = []
    return det, [place_label(instance_label(det, i), tuple(int(v) for v in det.boxes[i]), height, width, taken)
                 for i in range(count)]


def test_labels_of_a_dozen_side_by_side_objects_cover_none_of_each_other():
    """A queue of twelve people whose boxes start 12 px apart (each label is wider than that): every label finds a
    free place near its box, where the old few places above and below the corner ran out after six."""
    det, rects = _labels_of_people([[20 + 12 * i, 100 + (i % 2) * 4, 60 + 12 * i, 200] for i in range(12)], 240, 320)
    for i, (a0, a1, a2, a3) in enumerate(rects):
        assert 0 <= a0 < a2 <= 320 and 0 <= a1 < a3 <= 240
        for b0, b1, b2, b3 in rects[i + 1:]:
            assert not (a0 < b2 and b0 < a2 and a1 < b3 and b1 < a3)
        x1, y1, x2, y2 = det.boxes[i]
        assert a2 > x1 - (a2 - a0) and a0 < x2 + (a2 - a0)  # beside its own box, within a label's width


def test_labels_of_a_packed_crowd_overlap_as_little_as_they_can():
    """Forty labels on a small frame cannot all be free: each goes where it covers the least, so that together they
    cover less of each other than one label's area each (always taking the place above the box, they covered 4.5
    labels' area each)."""
    _, rects = _labels_of_people([[8 * (i % 10), 30 + 6 * (i // 10), 8 * (i % 10) + 30, 90] for i in range(40)],
                                 120, 160)
    areas = sum((r[2] - r[0]) * (r[3] - r[1]) for r in rects)
    covered = sum(max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
                  for i, a in enumerate(rects) for b in rects[i + 1:])
    assert covered < areas


def test_labels_of_crowded_objects_do_not_cover_each_other():
    """Two objects whose boxes start at nearly the same corner: the second label moves off the first one."""
    det = Detections(boxes=np.array([[40, 60, 140, 150], [44, 62, 150, 160]], np.float32),
                     scores=np.array([0.9, 0.61], np.float32), class_ids=np.array([1, 1]),
                     masks=np.zeros((2, 240, 320), bool), class_names=("__background__", "person"),
                     track_ids=np.array([3, 4]))
    taken: list = []
    rects = [place_label(instance_label(det, i), tuple(int(v) for v in det.boxes[i]), 240, 320, taken)
             for i in range(2)]
    (a0, a1, a2, a3), (b0, b1, b2, b3) = rects
    assert not (a0 < b2 and b0 < a2 and a1 < b3 and b1 < a3)
    assert rects[0] == label_geometry(instance_label(det, 0), (40, 60), 240, 320)[0]  # the first keeps its place
    config = dataclasses.replace(RenderConfig(), alpha=0.0, contours=False, boxes=False)
    out = Renderer(config).draw(np.zeros((240, 320, 3), np.uint8), det)
    for x0, y0, x1, y1 in rects:  # both drawn where placed: filled in the track's colour, with ink on it
        patch = out[y0:y1, x0:x1].reshape(-1, 3)
        assert len(np.unique(patch, axis=0)) > 2
