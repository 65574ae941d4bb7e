"""Rendering: mask blending, contours, boxes and labels, read back from pixels."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from rtseg.core.config import RenderConfig
from rtseg.core.structures import Detections
from rtseg.render.colors import color_for_id
from rtseg.render.renderer import Renderer, instance_color, instance_label, mask_bounds


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
