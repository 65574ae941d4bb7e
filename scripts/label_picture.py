"""Draw docs/labels.png: a frame of the sample clip annotated by rtseg's renderer, to show its labels.

This machine cannot download the COCO weights, so the two cars' masks come from background subtraction (the
per-pixel median of the clip's 60 frames is the empty car park); everything drawn on them (masks, outlines, boxes,
labels with their TrueType font, placed so that they do not cover each other) is rtseg's own renderer, as a run
draws it.

    python scripts/label_picture.py                  # writes docs/labels.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from rtseg.core.config import RenderConfig
from rtseg.core.media import SAMPLE_CLIP
from rtseg.core.structures import Detections
from rtseg.render.renderer import Renderer
from rtseg.sources.factory import open_source

ROOT = Path(__file__).resolve().parents[1]


def moving_objects(frames: list[np.ndarray], index: int, min_area: int = 2000) -> np.ndarray:
    """Boolean masks of what differs from the clip's median (the empty car park) in frame ``index``."""
    background = np.median(np.stack(frames[::3]), axis=0).astype(np.int16)
    changed = (np.abs(frames[index].astype(np.int16) - background).max(axis=2) > 40).astype(np.uint8)
    changed = cv2.morphologyEx(changed, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(changed)
    keep = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= min_area]
    return np.stack([labels == i for i in keep]) if keep else np.zeros((0, *changed.shape), bool)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frame", type=int, default=30, help="which frame of the sample (0-59)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "labels.png")
    args = parser.parse_args(argv)
    source = open_source(str(SAMPLE_CLIP))
    try:
        frames = [frame.image for frame in source.frames()]
    finally:
        source.close()
    masks = moving_objects(frames, args.frame)
    boxes = []
    for mask in masks:
        ys, xs = np.nonzero(mask)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    scores = np.linspace(0.97, 0.61, len(masks)).astype(np.float32)
    detections = Detections(boxes=np.array(boxes, np.float32).reshape(-1, 4), scores=scores,
                            class_ids=np.full(len(masks), 3), masks=masks, class_names=("__background__", "person",
                                                                                        "bicycle", "car"),
                            track_ids=np.arange(1, len(masks) + 1))
    drawn = Renderer(RenderConfig()).draw(frames[args.frame], detections)
    cv2.imwrite(str(args.out), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out}: frame {args.frame} of {SAMPLE_CLIP.name}, {len(masks)} object(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
