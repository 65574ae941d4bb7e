"""rtseg.offline.eval_pipeline: its scoring on hand-made frames, and the whole pipeline judged with a known-answer detector."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from rtseg.core.config import Config
from rtseg.core.masks import encode_mask
from rtseg.core.structures import Detections
from rtseg.detect.base import DetectorBase
from rtseg.offline.eval_pipeline import evaluate_pipeline, report_lines, score
from rtseg.offline.synthetic import CLASS_NAMES, video_frames


def _mask(x: int) -> np.ndarray:
    mask = np.zeros((20, 40), bool)
    mask[5:15, x:x + 10] = True
    return mask


def _truth(track_id: int, category: int, x: int, visible: float = 1.0) -> dict:
    return {"track_id": track_id, "category_id": category, "visible_fraction": visible,
            "segmentation": encode_mask(_mask(x))}


def _prediction(track_id: int | None, name: str, x: int) -> dict:
    return {"track_id": track_id, "class_name": name, "mask": encode_mask(_mask(x))}


def test_scores_count_classes_misses_switches_and_dont_care_shapes() -> None:
    truth = {"num_frames": 2, "tracks": [{"track_id": 1}, {"track_id": 2}, {"track_id": 3}], "frames": [
        {"instances": [_truth(1, 1, 0), _truth(2, 2, 20), _truth(3, 3, 30, visible=0.2)]},
        {"instances": [_truth(1, 1, 1), _truth(2, 2, 21)]},
    ]}
    records = [
        # A right; B found as the wrong class; the barely visible shape found: neither right nor wrong
        {"instances": [_prediction(7, "circle", 0), _prediction(8, "triangle", 20), _prediction(9, "triangle", 30)]},
        # A right under another id; B missed; a false positive far from everything
        {"instances": [_prediction(5, "circle", 1), _prediction(None, "square", 12)]},
    ]
    report = score(truth, records, min_visible=0.5)
    assert (report["tp"], report["fp"], report["fn"], report["pairs_with_wrong_class"]) == (2, 2, 2, 1)
    assert report["precision"] == report["recall"] == 0.5
    assert report["mask_iou_mean"] == 1.0
    assert report["id_switches"] == 1 and report["colour_changes_while_detected"] == 1


def test_an_export_missing_frames_is_refused() -> None:
    with pytest.raises(Exception, match="the export holds 1 frames, the video 2"):
        score({"num_frames": 2, "tracks": [], "frames": []}, [{"instances": []}], 0.5)


class _KnowsTheAnswers(DetectorBase):
    """Reports exactly the shapes the synthetic video shows, frame after frame."""

    class_names = ("__background__", *CLASS_NAMES)

    def __init__(self, seed: int, width: int, height: int, frames: int, objects: int) -> None:
        self._frames = video_frames(seed, width, height, frames, objects)

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        found = []
        for _ in images:
            _, instances = next(self._frames)
            seen = [i for i in instances if i.mask.any()]
            boxes = [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] for ys, xs in (np.nonzero(i.mask) for i in seen)]
            found.append(Detections(np.array(boxes, np.float32).reshape(-1, 4), np.full(len(seen), 0.9, np.float32),
                                    np.array([i.kind + 1 for i in seen], np.int64),
                                    np.array([i.mask for i in seen]).reshape(-1, *images[0].shape[:2]),
                                    self.class_names))
        return found


def test_a_detector_that_knows_the_answers_scores_perfectly_through_the_whole_pipeline(tmp_path: Path) -> None:
    size = dict(seed=1, width=160, height=120, frames=24, objects=3)
    report = evaluate_pipeline(tmp_path, Config(), **size, detector=_KnowsTheAnswers(**size))
    assert report["frames"] == report["annotated_frames"] == 24
    assert report["precision"] == report["recall"] == 1.0
    assert report["mask_iou_mean"] == 1.0  # masks survive the export exactly
    assert report["id_switches"] == 0 and report["colour_changes_over_lives"] == 0
    # Tracks are confirmed on their second frame (min_hits 2): only first frames lack an id.
    assert report["idf1"] >= 0.95 and report["mota"] >= 0.95
    lines = report_lines(report)
    assert "seed 1, weights _KnowsTheAnswers" in lines[0]
    assert "precision 1.000  recall 1.000" in lines[1] and lines[-1].endswith("holds 24 of 24 frames")
