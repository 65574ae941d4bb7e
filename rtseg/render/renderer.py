"""Rendering stage: draws masks, contours, boxes and labels onto a copy of the frame.

Every instance's colour comes from ``instance_color`` alone, so the policy of
what a colour means (track, class, detection index) lives in one place.

Where the masks are is where they are drawn: numpy masks (model on the CPU)
are blended with numpy and outlined with OpenCV; torch masks (model on a GPU)
are blended and outlined on that GPU, and one finished uint8 frame comes back
for OpenCV to add boxes and labels, instead of N full-frame masks.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from rtseg.core.config import RenderConfig
from rtseg.core.structures import Detections
from rtseg.render.colors import color_for_id

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 (ends exclusive)


def instance_color(detections: Detections, i: int, color_by: str = "track") -> tuple[int, int, int]:
    """The RGB colour of instance ``i``, the one place that decides what a colour means.

    'track': its track's colour (grey while not yet confirmed as a track), so an
    object keeps one colour from frame to frame; 'class': its class's; 'index':
    its position in this frame's detections (changes between frames).
    """
    if color_by == "class":
        return color_for_id(int(detections.class_ids[i]))
    if color_by == "index":
        return color_for_id(i)
    return color_for_id(int(detections.track_ids[i]))


def mask_bounds(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x, y, width, height) of a boolean mask's set pixels, (0, 0, 0, 0) when none: one fast scan by OpenCV."""
    x, y, width, height = cv2.boundingRect(np.ascontiguousarray(mask).view(np.uint8))  # stub: Sequence[int]
    return x, y, width, height


def instance_label(detections: Detections, i: int) -> str:
    name = detections.names()[i]
    track_id = int(detections.track_ids[i]) if detections.track_ids is not None else -1
    prefix = f"#{track_id} " if track_id >= 0 else ""
    return f"{prefix}{name} {detections.scores[i]:.2f}"


class Renderer:
    """Draws ``Detections`` onto RGB images according to ``RenderConfig``."""

    def __init__(self, config: RenderConfig, tracked: bool = True) -> None:
        self.config = config
        # Without a tracker there are no track colours: fall back to one colour per detection.
        self.color_by = config.color_by if tracked or config.color_by != "track" else "index"

    def draw(self, image: np.ndarray, detections: Detections) -> np.ndarray:
        if not len(detections):
            return image.copy()
        colors = [instance_color(detections, i, self.color_by) for i in range(len(detections))]
        if isinstance(detections.masks, torch.Tensor):
            out = self._compose_on_device(image, detections.masks, colors)
            taken: list[Rect] = []  # this frame's labels so far: the next one avoids covering them
            for i, color in enumerate(colors):
                self._box_and_label(out, detections, i, color, taken)
            return out
        out = image.copy()
        bounds = [mask_bounds(mask) for mask in detections.masks]
        self._blend_masks(out, detections.masks, colors, bounds)
        if self.config.contours:
            for i, color in enumerate(colors):
                self._outline(out, detections.masks[i], bounds[i], color)
        labels: list[Rect] = []  # drawn after every outline, so that no outline crosses a label
        for i, color in enumerate(colors):
            self._box_and_label(out, detections, i, color, labels)
        return out

    def _box_and_label(self, out: np.ndarray, detections: Detections, i: int, color: tuple[int, int, int],
                       taken: list[Rect]) -> None:
        x1, y1, x2, y2 = (int(round(v)) for v in detections.boxes[i])
        if self.config.boxes:
            cv2.rectangle(out, (x1, y1), (x2, y2), color, self.config.line_width)
        if self.config.labels:
            text = instance_label(detections, i)
            rect = place_label(text, (x1, y1, x2, y2), out.shape[0], out.shape[1], taken)
            draw_label(out, text, (x1, y1), color, rect)

    def _compose_on_device(self, image: np.ndarray, masks: torch.Tensor,
                           colors: list[tuple[int, int, int]]) -> np.ndarray:
        """Masks blended and outlined where they live; returns the frame on the host.

        Same blend as ``_blend_masks`` (the later instance wins, rounded like
        OpenCV). Outlines are each mask's boundary pixels widened to about
        ``line_width`` (holes outlined too), not OpenCV's anti-aliased polylines.
        """
        device = masks.device
        frame = torch.from_numpy(image).to(device).to(torch.float32)
        palette = torch.tensor([(0, 0, 0), *colors], dtype=torch.float32, device=device)
        order = torch.arange(1, len(masks) + 1, device=device)[:, None, None]
        top = (masks * order).amax(0)  # per pixel: 1 + index of the last instance covering it, 0 where none
        alpha = self.config.alpha
        blended = (frame * (1 - alpha) + palette[top] * alpha).round()
        frame = torch.where((top > 0)[..., None], blended, frame)
        if self.config.contours:
            solid = masks[:, None].to(torch.float32)
            eroded = -F.max_pool2d(-solid, 3, stride=1, padding=1)
            width = 2 * (self.config.line_width // 2) + 1
            outline = F.max_pool2d(solid - eroded, width, stride=1, padding=width // 2)[:, 0] > 0
            edge_top = (outline * order).amax(0)
            frame = torch.where((edge_top > 0)[..., None], palette[edge_top], frame)
        return frame.to(torch.uint8).cpu().numpy()

    def _blend_masks(self, out: np.ndarray, masks: np.ndarray, colors: list[tuple[int, int, int]],
                     bounds: list[tuple[int, int, int, int]]) -> None:
        """Alpha-blend every mask inside its own bounds; where masks overlap the later instance wins.

        Each pixel is blended once, by the last instance covering it, through a
        256-entry table per colour made by ``cv2.addWeighted`` itself (so the
        rounding is OpenCV's): the cost grows with the masks' areas, not with
        detections x frame size.
        """
        owner = np.zeros(out.shape[:2], np.uint16)  # 1 + index of the last instance covering a pixel
        for i, (mask, (x, y, w, h)) in enumerate(zip(masks, bounds)):
            owner[y:y + h, x:x + w][mask[y:y + h, x:x + w]] = i + 1
        alpha = self.config.alpha
        values = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, 1)
        channels = np.arange(3)
        for i, (color, (x, y, w, h)) in enumerate(zip(colors, bounds)):
            mine = owner[y:y + h, x:x + w] == i + 1
            if not mine.any():
                continue
            table = cv2.addWeighted(values, 1.0 - alpha, np.full_like(values, color), alpha, 0.0)
            region = out[y:y + h, x:x + w]
            region[mine] = table[region[mine], channels]

    def _outline(self, out: np.ndarray, mask: np.ndarray, bounds: tuple[int, int, int, int],
                 color: tuple[int, int, int]) -> None:
        """The mask's outer contour, found within its bounds only (the same contour as in the whole frame)."""
        x, y, w, h = bounds
        if not w:
            return
        crop = mask[y:y + h, x:x + w].astype(np.uint8)
        contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=(x, y))
        cv2.drawContours(out, contours, -1, color, self.config.line_width, cv2.LINE_AA)




@functools.lru_cache(maxsize=32)
def label_font(pixels: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled TrueType font (Aileron, through torchvision's own Pillow dependency: nothing to download) at
    ``pixels``: unlike OpenCV's Hershey font, a zero is not slashed (``0.61`` never reads ``Ø.61``) and small sizes
    stay legible. A Pillow built without FreeType has only its fixed bitmap font."""
    try:
        return ImageFont.load_default(size=pixels)
    except (ImportError, OSError):
        return ImageFont.load_default()


def label_geometry(text: str, corner: tuple[int, int], height: int, width: int) -> tuple[Rect, int, int, int]:
    """Where a label goes on a ``height`` x ``width`` frame: its filled box (x0, y0, x1, y1; ends exclusive), the
    font size in pixels, the padding, and the text's vertical offset inside the box.

    The font and padding grow with the frame's shorter side (14 px at 480 pixels, never below 9), so a label takes
    the same share of any frame. The label sits on ``corner`` (a box's top-left: above the box), moved inside the
    frame where it would cross an edge (below the box's top edge when the box touches the frame's top).
    """
    pixels, pad, offset, label_h = _label_style(height, width)
    label_w = math.ceil(label_font(pixels).getlength(text)) + 2 * pad
    return _clamped(corner, label_w, label_h, height, width), pixels, pad, offset


@functools.lru_cache(maxsize=64)
def _label_style(height: int, width: int) -> tuple[int, int, int, int]:
    """A frame size's label font size, padding, text offset and label height: the same for every label, so that the
    labels of one frame line up (from the tallest character to the lowest descender)."""
    pixels = max(9, round(min(height, width) / 34))
    pad = max(1, round(pixels / 7))
    _, top, _, bottom = label_font(pixels).getbbox("#0123456789Ag|jpqy")
    return pixels, pad, pad - int(top), int(bottom) - int(top) + 2 * pad


def _clamped(corner: tuple[int, int], label_w: int, label_h: int, height: int, width: int) -> Rect:
    x0 = min(max(corner[0], 0), max(width - label_w, 0))
    y1 = min(max(corner[1], label_h), height)
    return x0, max(y1 - label_h, 0), min(x0 + label_w, width), y1


def place_label(text: str, box: Rect, height: int, width: int, taken: list[Rect]) -> Rect:
    """The first of the places for ``box``'s label that covers no label already ``taken`` in this frame, nearest the
    box first: above its top-left corner, just inside its top edge, below its bottom edge, then stacked further above
    and below, each also shifted right along the box's top and left of it. Where every place is taken (a dense crowd),
    the one that covers the least label area. The chosen place is added to ``taken``."""
    x1, y1, x2, y2 = box
    first, *_ = label_geometry(text, (x1, y1), height, width)
    label_w, label_h = first[2] - first[0], first[3] - first[1]
    rows = (y1, y1 + label_h, y2 + label_h, *(y1 - k * label_h for k in (1, 2, 3)),
            *(y2 + k * label_h for k in (2, 3)))
    columns = (x1, x1 + label_w, x1 - label_w, x2 - label_w)
    places = [_clamped((x, y), label_w, label_h, height, width) for y in rows for x in columns]
    best = 0
    if taken:  # the label area each place would cover, all places against all labels at once
        a, b = np.array(places)[:, None, :], np.array(taken)[None, :, :]
        across = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
        down = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
        covered = (np.clip(across, 0, None) * np.clip(down, 0, None)).sum(axis=1)
        best = int(np.argmin(covered))  # the first of equals: the free place nearest the box where there is one
    taken.append(places[best])
    return places[best]


def draw_label(out: np.ndarray, text: str, corner: tuple[int, int], color: tuple[int, int, int],
               rect: Rect | None = None) -> None:
    """A filled label with ink that reads on ``color``, placed by ``label_geometry`` (or at ``rect``, a place
    ``place_label`` chose), its text anti-aliased by FreeType."""
    if rect is None:
        rect, *_ = label_geometry(text, corner, out.shape[0], out.shape[1])
    x0, y0, x1, y1 = rect
    pixels, pad, offset, _ = _label_style(out.shape[0], out.shape[1])
    if x1 <= x0 or y1 <= y0:
        return
    cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), color, cv2.FILLED)
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    ink = np.array((0, 0, 0) if luminance > 140 else (255, 255, 255), np.float32)
    coverage = Image.new("L", (x1 - x0, y1 - y0), 0)
    ImageDraw.Draw(coverage).text((pad, offset), text, font=label_font(pixels), fill=255)
    alpha = np.asarray(coverage, np.float32)[..., None] / 255.0
    region = out[y0:y1, x0:x1]
    region[:] = (region * (1.0 - alpha) + ink * alpha + 0.5).astype(np.uint8)
