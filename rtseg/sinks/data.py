"""Data sinks: detections leave the picture as JSON Lines, cut-outs, annotated stills and statistics.

Masks are exported as COCO run-length encodings through pycocotools, the format
every COCO tool reads. Each JSON line is written whole and flushed as its frame
completes, so a reader can tail the file and a crash leaves only valid lines.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from rtseg.core.errors import OutputError
from rtseg.core.masks import encode_mask
from rtseg.core.structures import Frame


def frame_record(frame: Frame) -> dict[str, Any]:
    """The JSON object written for one frame (schema documented in the README)."""
    detections = frame.detections
    instances = []
    if detections is not None:
        names = detections.names()
        masks = detections.host_masks()
        for i in range(len(detections)):
            track_id = int(detections.track_ids[i])
            instances.append({
                "track_id": track_id if track_id >= 0 else None,
                "class_id": int(detections.class_ids[i]),
                "class_name": names[i],
                "score": round(float(detections.scores[i]), 4),
                "box": [round(float(v), 2) for v in detections.boxes[i]],
                "area": int(masks[i].sum()),
                "mask": encode_mask(masks[i]),
            })
    record: dict[str, Any] = {"frame": frame.index, "timestamp": round(frame.timestamp, 6),
                              "width": frame.width, "height": frame.height}
    if frame.name is not None:
        record["image"] = frame.name
    record["instances"] = instances
    return record


class JsonLinesSink:
    """One JSON object per frame, flushed line by line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = self.path.open("w", encoding="utf-8")

    def write(self, frame: Frame) -> None:
        assert self._file is not None
        self._file.write(json.dumps(frame_record(frame), separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def make_directory(directory: str | Path) -> Path:
    """A sink's folder, made with its parents; one line if it cannot be (the planner checked it before the run, so
    this is for a folder that changed since, or a sink used on its own)."""
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot make the folder {path}: {exc.strerror or exc}") from exc
    return path


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "object"


def _write_image(path: Path, rgb_or_rgba: np.ndarray) -> None:
    code = cv2.COLOR_RGBA2BGRA if rgb_or_rgba.shape[2] == 4 else cv2.COLOR_RGB2BGR
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb_or_rgba, code)):
        raise OutputError(f"cannot write image {path}")


class FramesSink:
    """Annotated frames as images, every ``every``-th frame (stills keep their own names)."""

    def __init__(self, directory: str | Path, every: int = 1, extension: str = ".jpg") -> None:
        self.directory = Path(directory)
        self.every = every
        self.extension = extension
        make_directory(self.directory)

    def write(self, frame: Frame) -> None:
        if frame.index % self.every:
            return
        name = frame.name or f"frame_{frame.index:06d}{self.extension}"
        _write_image(self.directory / name, frame.rendered if frame.rendered is not None else frame.image)

    def close(self) -> None:
        """Every image is complete when written; nothing to finalise."""


class CropsSink:
    """Each instance cut out to its box as a transparent PNG (alpha = its mask), one object per file."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = make_directory(directory)

    def write(self, frame: Frame) -> None:
        detections = frame.detections
        if detections is None:
            return
        names = detections.names()
        for i in range(len(detections)):
            rgba = cut_out(frame, i)
            if rgba is None:
                continue
            track_id = int(detections.track_ids[i])
            track = f"t{track_id}" if track_id >= 0 else f"d{i}"
            _write_image(self.directory / f"f{frame.index:06d}_{track}_{_safe(names[i])}.png", rgba)

    def close(self) -> None:
        """Every crop is complete when written; nothing to finalise."""


def cut_out(frame: Frame, i: int) -> np.ndarray | None:
    """Detection ``i`` of ``frame`` cut out to its box as RGBA (alpha = its mask); None for an empty box."""
    detections = frame.detections
    assert detections is not None
    x1, y1, x2, y2 = _box_pixels(detections.boxes[i], frame.width, frame.height)
    if x2 <= x1 or y2 <= y1:
        return None
    alpha = detections.host_mask_window(i, slice(y1, y2), slice(x1, x2)).astype(np.uint8) * 255
    return np.dstack([frame.image[y1:y2, x1:x2], alpha])


def write_image(path: Path, rgb_or_rgba: np.ndarray) -> None:
    """An RGB or RGBA image to ``path`` (format by suffix); an OutputError line if it cannot be written."""
    _write_image(path, rgb_or_rgba)


def _box_pixels(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    x1, y1 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x2, y2 = min(width, int(np.ceil(box[2]))), min(height, int(np.ceil(box[3])))
    return x1, y1, x2, y2
