"""Synthetic instance-segmentation data: coloured shapes on noisy backgrounds.

Exact ground truth at no cost, so training, evaluation and tracking can be
tested on a CPU in seconds and measured end to end without any download. Two
products: a COCO-format image data set (train/val splits) and MP4 videos of
moving, crossing shapes with per-frame masks and track ids. Every output is a
pure function of its seed; a shape's colour says nothing about its class, so
a model has to learn the outline.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from pycocotools import mask as mask_utils

from rtseg.core.masks import encode_mask
from rtseg.offline.progress import progress

CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle")
CATEGORIES: list[dict[str, Any]] = [
    {"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASS_NAMES)
]
MIN_VISIBLE_FRACTION = 0.5  # an image shape is never hidden more than this much, so every annotation is learnable
SIZE_RANGE = (0.06, 0.2)  # shape radius as a fraction of the image's shorter side
_SUBPIXEL_BITS = 4  # vertices drawn with 1/16 px precision: smooth motion in videos


@dataclass(frozen=True)
class Shape:
    """One filled shape; ``radius`` is the circumradius in pixels, ``angle`` in radians."""

    kind: int  # index into CLASS_NAMES
    cx: float
    cy: float
    radius: float
    angle: float
    color: tuple[int, int, int]


@dataclass(frozen=True)
class Instance:
    """A shape as it is seen: its class and the pixels left visible by the shapes in front."""

    kind: int
    mask: np.ndarray  # (H, W) bool
    full_area: int  # pixels the shape would cover without occluders
    centre: tuple[float, float] = (float("nan"), float("nan"))  # the whole shape's centre (x, y), hidden or not


def shape_mask(shape: Shape, height: int, width: int) -> np.ndarray:
    """The (H, W) bool pixels covered by ``shape`` when nothing is in front of it."""
    canvas = np.zeros((height, width), np.uint8)
    scale = 1 << _SUBPIXEL_BITS
    if CLASS_NAMES[shape.kind] == "circle":
        centre = (round(shape.cx * scale), round(shape.cy * scale))
        cv2.circle(canvas, centre, round(shape.radius * scale), 1, thickness=-1, shift=_SUBPIXEL_BITS)
    else:
        corners = 4 if CLASS_NAMES[shape.kind] == "square" else 3
        angles = shape.angle + 2 * np.pi * np.arange(corners) / corners
        points = np.stack([shape.cx + shape.radius * np.cos(angles), shape.cy + shape.radius * np.sin(angles)], 1)
        cv2.fillPoly(canvas, [np.round(points * scale).astype(np.int32)], 1, shift=_SUBPIXEL_BITS)
    return canvas.astype(bool)


def _random_color(rng: np.random.Generator) -> tuple[int, int, int]:
    """A saturated colour, so shapes stand out from the muted backgrounds."""
    hsv = np.array([[[rng.integers(0, 180), rng.integers(150, 256), rng.integers(150, 256)]]], np.uint8)
    red, green, blue = (int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])
    return red, green, blue


def random_shape(rng: np.random.Generator, height: int, width: int,
                 size_range: tuple[float, float] = SIZE_RANGE) -> Shape:
    """A shape of random class, colour, pose and size (radius as a fraction of the shorter side)."""
    radius = rng.uniform(*size_range) * min(height, width)
    margin = 0.6 * radius  # centres may sit near the border, so some shapes are cut by the frame
    return Shape(
        kind=int(rng.integers(len(CLASS_NAMES))),
        cx=float(rng.uniform(margin, width - margin)),
        cy=float(rng.uniform(margin, height - margin)),
        radius=float(radius),
        angle=float(rng.uniform(0, 2 * np.pi)),
        color=_random_color(rng),
    )


def background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A muted, blotchy, noisy RGB texture: no flat colour the model could key on."""
    base = rng.uniform(70, 180, size=3)
    coarse = rng.normal(0, 30, size=(height // 16 + 2, width // 16 + 2, 3)).astype(np.float32)
    blotches = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    grain = rng.normal(0, 10, size=(height, width, 3))
    return np.clip(base + blotches + grain, 0, 255).astype(np.uint8)


def compose(rng: np.random.Generator, backdrop: np.ndarray, shapes: list[Shape]) -> tuple[np.ndarray, list[Instance]]:
    """Paint ``shapes`` back to front on ``backdrop``; returns the image and each shape's visible part."""
    height, width = backdrop.shape[:2]
    image = backdrop.astype(np.float32)
    full = [shape_mask(s, height, width) for s in shapes]
    for shape, mask in zip(shapes, full):
        image[mask] = np.asarray(shape.color, np.float32)
    image += rng.normal(0, 6, size=image.shape)  # sensor-like noise over shapes and background alike
    instances: list[Instance] = []
    covered = np.zeros((height, width), bool)
    for shape, mask in zip(reversed(shapes), reversed(full)):
        instances.append(Instance(shape.kind, mask & ~covered, int(mask.sum()), (shape.cx, shape.cy)))
        covered |= mask
    return np.clip(image, 0, 255).astype(np.uint8), instances[::-1]


def _occlusion_ok(masks: list[np.ndarray]) -> bool:
    """True when every mask keeps at least MIN_VISIBLE_FRACTION of its pixels under the ones after it."""
    covered = np.zeros_like(masks[0])
    for mask in reversed(masks):
        area = mask.sum()
        if area == 0 or (mask & ~covered).sum() < MIN_VISIBLE_FRACTION * area:
            return False
        covered |= mask
    return True


def make_image(rng: np.random.Generator, height: int, width: int, max_shapes: int = 6,
               size_range: tuple[float, float] = SIZE_RANGE) -> tuple[np.ndarray, list[Instance]]:
    """One image with 1..max_shapes shapes that overlap but never hide more than half of one another."""
    wanted = int(rng.integers(1, max_shapes + 1))
    shapes: list[Shape] = []
    masks: list[np.ndarray] = []
    for _ in range(wanted * 10):  # rejection sampling; crowded images simply end up with fewer shapes
        if len(shapes) == wanted:
            break
        candidate = random_shape(rng, height, width, size_range)
        mask = shape_mask(candidate, height, width)
        if _occlusion_ok(masks + [mask]):
            shapes.append(candidate)
            masks.append(mask)
    return compose(rng, background(rng, height, width), shapes)


def annotation_fields(mask: np.ndarray) -> dict[str, Any]:
    """segmentation, area and bbox of a mask, all derived from its RLE so they agree exactly."""
    rle = encode_mask(mask)
    return {
        "segmentation": rle,
        "area": int(mask_utils.area(rle)),
        "bbox": [float(v) for v in mask_utils.toBbox(rle)],
    }


def _split_dataset(images_dir: Path, split: str, index: int, count: int, seed: int, size: int,
                   max_shapes: int, size_range: tuple[float, float]) -> dict[str, Any]:
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for i in progress(range(count), f"{split} images"):
        # one generator per image: image i is the same whatever the split size
        rng = np.random.default_rng([seed, index, i])
        image, instances = make_image(rng, size, size, max_shapes, size_range)
        file_name = f"{split}_{i:06d}.png"
        if not cv2.imwrite(str(images_dir / file_name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write {images_dir / file_name}")
        images.append({"id": i + 1, "file_name": file_name, "width": size, "height": size})
        for inst in instances:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": inst.kind + 1,
                                "iscrowd": 0, **annotation_fields(inst.mask)})
    return {"info": {"description": f"rtseg synthetic shapes, {split} split, seed {seed}"},
            "images": images, "annotations": annotations, "categories": CATEGORIES}


def write_image_dataset(out_dir: str | Path, num_train: int, num_val: int, size: int = 128, seed: int = 0,
                        max_shapes: int = 6, size_range: tuple[float, float] = SIZE_RANGE) -> dict[str, Path]:
    """Write ``train.json``, ``val.json`` and ``images/*.png`` under ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    images_dir = out_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    paths = {"images": images_dir}
    for index, (split, count) in enumerate((("train", num_train), ("val", num_val))):
        data = _split_dataset(images_dir, split, index, count, seed, size, max_shapes, size_range)
        paths[split] = out_dir / f"{split}.json"
        paths[split].write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
    return paths


@dataclass
class _Mover:
    shape: Shape
    vx: float
    vy: float
    spin: float  # radians per frame


def _step(mover: _Mover, height: int, width: int) -> None:
    """Advance one frame, bouncing off the frame edges so shapes stay in view and keep crossing."""
    s = mover.shape
    cx, cy = s.cx + mover.vx, s.cy + mover.vy
    if not s.radius <= cx <= width - s.radius:
        mover.vx = -mover.vx
        cx = float(np.clip(cx, s.radius, width - s.radius))
    if not s.radius <= cy <= height - s.radius:
        mover.vy = -mover.vy
        cy = float(np.clip(cy, s.radius, height - s.radius))
    mover.shape = replace(s, cx=cx, cy=cy, angle=s.angle + mover.spin)


def video_frames(seed: int, width: int, height: int, num_frames: int,
                 num_objects: int = 4) -> Iterator[tuple[np.ndarray, list[Instance]]]:
    """Yield (RGB frame, instances) per frame; instances keep their order, back to front, in every frame."""
    rng = np.random.default_rng([seed, 2])
    backdrop = background(rng, height, width)
    movers = []
    for _ in range(num_objects):
        shape = random_shape(rng, height, width, size_range=(0.08, 0.16))
        shape = replace(shape, cx=float(np.clip(shape.cx, shape.radius, width - shape.radius)),
                        cy=float(np.clip(shape.cy, shape.radius, height - shape.radius)))
        speed, heading = rng.uniform(1.0, 4.0), rng.uniform(0, 2 * np.pi)
        movers.append(_Mover(shape, speed * np.cos(heading), speed * np.sin(heading), rng.uniform(-0.05, 0.05)))
    for _ in range(num_frames):
        image, instances = compose(rng, backdrop, [m.shape for m in movers])
        yield image, instances
        for mover in movers:
            _step(mover, height, width)


def write_video(video_path: str | Path, gt_path: str | Path, seed: int = 0, width: int = 320, height: int = 240,
                num_frames: int = 90, fps: int = 30, num_objects: int = 4, crf: int = 18) -> None:
    """Write an H.264 yuv420p MP4 of moving shapes and its ground truth JSON.

    The ground truth lists, per frame, every shape with at least one visible
    pixel: track id, category, visible mask (COCO RLE), box, area and the
    visible fraction (so a judge can leave heavily occluded shapes aside).
    """
    if width % 2 or height % 2:
        raise ValueError(f"yuv420p needs even dimensions, got {width}x{height}")
    frames_gt: list[dict[str, Any]] = []
    tracks: dict[int, int] = {}
    container = av.open(str(video_path), mode="w")
    try:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        frames = progress(video_frames(seed, width, height, num_frames, num_objects), Path(video_path).name,
                          total=num_frames)
        for index, (image, instances) in enumerate(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
            visible = []
            for track_id, inst in enumerate(instances, start=1):
                tracks[track_id] = inst.kind + 1
                if inst.mask.any():
                    visible.append({"track_id": track_id, "category_id": inst.kind + 1,
                                    "visible_fraction": round(float(inst.mask.sum()) / inst.full_area, 4),
                                    **annotation_fields(inst.mask)})
            frames_gt.append({"frame_index": index, "instances": visible})
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
    gt = {"video": Path(video_path).name, "width": width, "height": height, "fps": fps, "num_frames": num_frames,
          "seed": seed, "categories": CATEGORIES,
          "tracks": [{"track_id": t, "category_id": c} for t, c in sorted(tracks.items())], "frames": frames_gt}
    Path(gt_path).write_text(json.dumps(gt, sort_keys=True), encoding="utf-8")
