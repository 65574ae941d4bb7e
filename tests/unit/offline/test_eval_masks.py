"""Mask-tracking evaluation (rtseg.offline.eval_masks): a hand-made case with known HOTA / MOTSA / IDF1 through
TrackEval's MOTS and YouTube-VIS loaders, the synthetic video scored end to end, and bad ground truth."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from export_helpers import Seen, box, synthetic_run, write_run

from rtseg.api import Outputs, process
from rtseg.core.config import Config
from rtseg.core.errors import DataError, UsageError
from rtseg.core.structures import Detections
from rtseg.detect.base import DetectorBase
from rtseg.offline.eval_masks import (
    evaluate_mots,
    evaluate_youtube_vis,
    format_report,
    main,
    parse_gt_classes,
    synthetic_truth_as_mots,
)
from rtseg.offline.exports import export_run
from rtseg.offline.synthetic import CLASS_NAMES, write_video

H, W = 40, 60
A = [box(H, W, 0, t, 10, 10 + t) for t in range(4)]
B = [box(H, W, 20, 30 + t, 30, 40 + t) for t in range(4)]
TRUTH = [[Seen(1, "person", A[t]), Seen(2, "person", B[t])] for t in range(4)]
# A's id switches from 1 to 3 in frame 2; B is missed in frame 3.
RUN = [[Seen(1, "person", A[0]), Seen(2, "person", B[0])], [Seen(1, "person", A[1]), Seen(2, "person", B[1])],
       [Seen(3, "person", A[2]), Seen(2, "person", B[2])], [Seen(3, "person", A[3])]]
# By hand: 8 objects, 7 found with IoU 1, no false positive, 1 switch. MOTSA = 1 - (1 + 0 + 1) / 8;
# sMOTSA = (7 x IoU 1 - 0 - 1) / 8; DetA = 7 / 8; AssA = (4 x 2/4 + 3 x 3/4) / 7 (A's matches share half its
# frames with their id, B's three share 3 of 4); HOTA = sqrt(DetA AssA); IDF1 = 2 x (2 + 3) / (8 + 7).
KNOWN = {"MOTSA": 0.75, "sMOTSA": 0.75, "DetA": 0.875, "AssA": 4.25 / 7, "HOTA": (0.875 * 4.25 / 7) ** 0.5,
         "LocA": 1.0, "IDF1": 10 / 15, "ID_switches": 1, "TP": 7, "FN": 1, "FP": 0}


def _check(figures: dict[str, float]) -> None:
    for key, value in KNOWN.items():
        assert figures[key] == pytest.approx(value), key


def test_a_known_case_scores_by_hand_through_trackevals_mots_loader(tmp_path: Path) -> None:
    export_run(write_run(tmp_path / "truth.jsonl", TRUTH, W, H), "mots", tmp_path / "gt.txt")
    report = evaluate_mots(write_run(tmp_path / "run.jsonl", RUN, W, H), tmp_path / "gt.txt")
    _check(report["overall"])
    _check(report["per_class"]["person"])
    assert report["format"] == "mots" and report["frames"] == 4
    assert format_report(report).splitlines()[1].startswith("person           0.729   0.875   0.607   1.000   0.750")


def _uncompressed(mask: np.ndarray) -> dict[str, object]:
    """A mask as YouTube-VIS ground truth files hold it: uncompressed COCO RLE (column-major runs, 0s first)."""
    flat = mask.ravel(order="F")
    bounds = np.concatenate(([0], np.flatnonzero(flat[1:] != flat[:-1]) + 1, [flat.size]))
    return {"size": list(mask.shape), "counts": ([0] if flat[0] else []) + np.diff(bounds).tolist()}


def test_the_same_case_scores_alike_through_trackevals_youtube_vis_loader(tmp_path: Path) -> None:
    gt = {"videos": [{"id": 5, "width": W, "height": H, "length": 4, "file_names": [f"v/{t}.jpg" for t in range(4)]}],
          "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}],
          "annotations": [{"id": k, "video_id": 5, "category_id": 1, "iscrowd": 0,
                           "segmentations": [_uncompressed(m) for m in masks], "areas": [int(m.sum()) for m in masks],
                           "bboxes": [None] * 4} for k, masks in ((1, A), (2, B))]}
    (tmp_path / "gt.json").write_text(json.dumps(gt), encoding="utf-8")
    report = evaluate_youtube_vis(write_run(tmp_path / "run.jsonl", RUN, W, H), tmp_path / "gt.json")
    _check(report["per_class"]["person"])
    assert report["video_id"] == 5 and report["per_class"]["car"]["TP"] == 0


def test_classes_are_matched_by_name_and_others_left_out(tmp_path: Path) -> None:
    truth = [[Seen(1, "car", A[t], class_id=1)] for t in range(4)]  # KITTI-MOTS: car is class 1
    export_run(write_run(tmp_path / "truth.jsonl", truth, W, H), "mots", tmp_path / "gt.txt")
    run = [[Seen(7, "car", A[t]), Seen(8, "dog", B[t])] for t in range(4)]  # rtseg's car is 3
    report = evaluate_mots(write_run(tmp_path / "run.jsonl", run, W, H), tmp_path / "gt.txt",
                           gt_classes=parse_gt_classes("kitti"))
    assert list(report["per_class"]) == ["car"] and report["overall"]["HOTA"] == pytest.approx(1.0)
    assert report["run_classes_left_out"] == ["dog"]


class _Oracle(DetectorBase):
    """Reports exactly the synthetic video's visible shapes, frame after frame."""

    class_names = ("__background__", *CLASS_NAMES)

    def __init__(self, frames: list[list[Seen]]) -> None:
        self._frames: Iterator[list[Seen]] = iter(frames)

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        found = []
        for image in images:
            seen = next(self._frames)
            boxes = [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] for ys, xs in (np.nonzero(s.mask) for s in seen)]
            found.append(Detections(np.array(boxes, np.float32).reshape(-1, 4), np.full(len(seen), 0.9, np.float32),
                                    np.array([s.class_id for s in seen], np.int64),
                                    np.array([s.mask for s in seen]).reshape(-1, *image.shape[:2]), self.class_names))
        return found


def test_the_synthetic_video_scored_end_to_end_through_the_pipeline(tmp_path: Path) -> None:
    size = {"seed": 2, "width": 160, "height": 120, "frames": 20, "objects": 3}
    write_video(tmp_path / "v.mp4", tmp_path / "gt.json", seed=2, width=160, height=120, num_frames=20, num_objects=3)
    oracle = _Oracle(synthetic_run(tmp_path / "unused.jsonl", **size))
    result = process(str(tmp_path / "v.mp4"), Outputs(save_json=tmp_path / "run.jsonl"), config=Config(),
                     detector=oracle)
    assert result.summary.error is None
    truth = json.loads((tmp_path / "gt.json").read_text(encoding="utf-8"))
    classes = synthetic_truth_as_mots(truth, tmp_path / "gt.txt")
    report = evaluate_mots(tmp_path / "run.jsonl", tmp_path / "gt.txt", gt_classes=classes)
    overall = report["overall"]
    # Masks survive exactly; tracks are confirmed on their second frame (min_hits 2), so each shape's first frame
    # is missed (FN), and its one track spans 19 of its 20 frames (AssA 19/20), with no switch and nothing false.
    assert overall["LocA"] == pytest.approx(1.0) and overall["AssA"] == pytest.approx(0.95)
    assert (overall["ID_switches"], overall["FP"], overall["FN"]) == (0, 0, 3)
    assert overall["DetA"] == pytest.approx(overall["TP"] / (overall["TP"] + 3)) and overall["TP"] >= 50


def test_a_ground_truth_of_another_frame_size_is_one_line_naming_both(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run.jsonl", RUN, W, H)
    (tmp_path / "gt.txt").write_text("0 1001 1 30 50 abc\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"the ground truth's frames are 50x30 \(.*gt.txt line 1\), the run's 60x40"):
        evaluate_mots(run, tmp_path / "gt.txt")
    gt = {"videos": [{"id": 1, "width": 50, "height": 30, "file_names": ["v/0.jpg"]}], "categories": [],
          "annotations": []}
    (tmp_path / "gt.json").write_text(json.dumps(gt), encoding="utf-8")
    with pytest.raises(DataError, match="the ground truth's video 1 is 50x30, the run's frames 60x40"):
        evaluate_youtube_vis(run, tmp_path / "gt.json")
    (tmp_path / "bad.txt").write_text("0 1001 car 30 50 abc\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 1 is not MOTS text"):
        evaluate_mots(run, tmp_path / "bad.txt")
    with pytest.raises(UsageError, match="id=name pairs"):
        parse_gt_classes("person")


def test_the_command_prints_the_table_and_saves_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export_run(write_run(tmp_path / "truth.jsonl", TRUTH, W, H), "mots", tmp_path / "gt.txt")
    run = write_run(tmp_path / "run.jsonl", RUN, W, H)
    assert main([str(run), "--gt", str(tmp_path / "gt.txt"), "--save", str(tmp_path / "report.json")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["HOTA", "DetA", "AssA", "LocA"] and out[-1] == f"saved {tmp_path / 'report.json'}"
    _check(json.loads((tmp_path / "report.json").read_text())["overall"])
