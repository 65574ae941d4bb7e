"""Runs (JSON Lines as rtseg --save-json writes them) made by hand or from the synthetic video, for the export,
import and mask-tracking evaluation tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtseg.core.masks import encode_mask
from rtseg.offline.synthetic import CLASS_NAMES, video_frames


@dataclass(frozen=True)
class Seen:
    """One instance of a hand-made run."""

    track_id: int | None
    class_name: str
    mask: np.ndarray
    score: float = 0.9
    class_id: int = 0  # 0: the index of class_name in CLASS_IDS


CLASS_IDS = {"person": 1, "car": 3, "dog": 18}  # torchvision COCO label ids


def box(height: int, width: int, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def record(frame: int, width: int, height: int, seen: list[Seen]) -> dict[str, object]:
    instances = []
    for s in seen:
        ys, xs = np.nonzero(s.mask)
        instances.append({"track_id": s.track_id, "class_id": s.class_id or CLASS_IDS[s.class_name],
                          "class_name": s.class_name, "score": s.score,
                          "box": [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)],
                          "area": int(s.mask.sum()), "mask": encode_mask(s.mask)})
    return {"frame": frame, "timestamp": frame / 30, "width": width, "height": height, "instances": instances}


def write_run(path: Path, frames: list[list[Seen]], width: int, height: int) -> Path:
    path.write_text("".join(json.dumps(record(t, width, height, seen)) + "\n" for t, seen in enumerate(frames)),
                    encoding="utf-8")
    return path


def synthetic_run(path: Path, seed: int, width: int, height: int, frames: int, objects: int) -> list[list[Seen]]:
    """A run that found exactly the synthetic video's visible shapes, track id = the shape's ground-truth id."""
    made = []
    for _, instances in video_frames(seed, width, height, frames, objects):
        made.append([Seen(k, CLASS_NAMES[i.kind], i.mask, class_id=i.kind + 1)
                     for k, i in enumerate(instances, start=1) if i.mask.any()])
    write_run(path, made, width, height)
    return made


def write_frames(folder: Path, count: int, width: int, height: int) -> Path:
    """``count`` distinct PNG frames (frame t is filled with grey level 10 t) in ``folder``."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for t in range(count):
        cv2.imwrite(str(folder / f"{t:04d}.png"), np.full((height, width, 3), 10 * t, np.uint8))
    return folder


def masks_by_track(frames: list[list[Seen]]) -> dict[tuple[int, int], np.ndarray]:
    """(frame, track id) -> mask of the tracked instances of a hand-made run."""
    return {(t, s.track_id): s.mask for t, seen in enumerate(frames) for s in seen if s.track_id is not None}
