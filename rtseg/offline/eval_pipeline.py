"""Judge the whole pipeline against ground truth on a synthetic video.

Writes a video of moving, crossing, occluding shapes with exact per-frame ground
truth (``rtseg.offline.synthetic.write_video``), runs it through the same pipeline as

    python -m rtseg --source video.mp4 --output annotated.mp4 --save-json detections.jsonl --weights W

and scores what the run exported against the ground truth:

  detection  per frame, predictions and ground-truth shapes are paired one to one by
             mask IoU (optimal assignment, IoU >= 0.5); precision and recall count a
             pair as a true positive only when its class is right too
  masks      mean and median mask IoU of the pairs
  tracking   MOTA, IDF1 and ID switches on mask IoU (rtseg.offline.mot_metrics), with the
             track ids of the export as hypotheses (detections without a confirmed
             id are none)
  colour     colour changes per object (rtseg.offline.mot_metrics.count_colour_changes): while
             continuously detected, and over whole lives; colours are a function of
             the track id, so ids are compared
  output     the annotated MP4 holds as many frames as the video

A shape hidden behind others down to less than ``min_visible`` of its area is "don't
care": a prediction on it is neither right nor wrong and missing it is no miss.

It needs a model that knows the shapes: the README's training recipe makes one in
about 20 minutes on a CPU (``runs/shapes/best.pt``). With random weights
(``--weights none``) it runs but scores near zero. ``scripts/eval_pipeline.py`` is its command line.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import av
import numpy as np
from pycocotools import mask as mask_utils
from scipy.optimize import linear_sum_assignment

from rtseg.api import Outputs, process
from rtseg.core.config import Config
from rtseg.core.errors import RtsegError
from rtseg.core.masks import coco_rle
from rtseg.detect.base import Detector
from rtseg.offline.eval_masks import evaluate_mots, synthetic_truth_as_mots
from rtseg.offline.mot_metrics import MotAccumulator, count_colour_changes
from rtseg.offline.progress import on_terminal
from rtseg.offline.synthetic import CLASS_NAMES, write_video

MATCH_IOU = 0.5


def mask_ious(predictions: list[dict[str, Any]], truths: list[dict[str, Any]]) -> np.ndarray:
    """(P, G) mask IoU of exported instances (``mask``) and ground-truth ones (``segmentation``)."""
    if not predictions or not truths:
        return np.zeros((len(predictions), len(truths)))
    ious = mask_utils.iou([coco_rle(p["mask"]) for p in predictions], [coco_rle(g["segmentation"]) for g in truths],
                          [0] * len(truths))
    return np.asarray(ious, np.float64).reshape(len(predictions), len(truths))


def pair(iou: np.ndarray) -> list[tuple[int, int]]:
    """Optimal one-to-one (prediction, truth) pairs with IoU >= MATCH_IOU."""
    if not iou.size:
        return []
    rows, cols = linear_sum_assignment(np.where(iou >= MATCH_IOU, iou, 0.0), maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if iou[r, c] >= MATCH_IOU]


def score(truth: dict[str, Any], records: list[dict[str, Any]], min_visible: float) -> dict[str, Any]:
    """Every figure of the module docstring from the ground truth and the exported JSON lines."""
    if len(records) != truth["num_frames"]:
        raise RtsegError(f"the export holds {len(records)} frames, the video {truth['num_frames']}")
    tp = fp = fn = wrong_class = 0
    pair_ious: list[float] = []
    tracking = MotAccumulator(MATCH_IOU)
    colours: list[dict[int, int]] = []
    for gt_frame, record in zip(truth["frames"], records):
        truths, predictions = gt_frame["instances"], record["instances"]
        cared = [g["visible_fraction"] >= min_visible for g in truths]
        iou = mask_ious(predictions, truths)
        pairs = pair(iou)
        # Predictions on don't-care shapes leave the scoring, for detection and tracking alike.
        ignored = {p for p, g in pairs if not cared[g]}
        pairs = [(p, g) for p, g in pairs if cared[g]]
        pair_ious += [iou[p, g] for p, g in pairs]
        # A pair of the wrong class is a false positive and a miss.
        wrong = sum(predictions[p]["class_name"] != CLASS_NAMES[truths[g]["category_id"] - 1] for p, g in pairs)
        tp += len(pairs) - wrong
        fp += len(predictions) - len(ignored) - len(pairs) + wrong
        fn += sum(cared) - len(pairs) + wrong
        wrong_class += wrong
        kept = [p for p in range(len(predictions)) if p not in ignored]
        hyps = [p for p in kept if predictions[p]["track_id"] is not None]
        objects = [g for g in range(len(truths)) if cared[g]]
        tracking.update_iou([truths[g]["track_id"] for g in objects], [predictions[p]["track_id"] for p in hyps],
                            iou[np.ix_(hyps, objects)].T if hyps and objects else np.zeros((len(objects), len(hyps))))
        colours.append({truths[g]["track_id"]: predictions[p]["track_id"] or -1 for p, g in pairs})
    counts = tracking.counts()
    changes = count_colour_changes(colours, -1)
    return {
        "frames": len(records), "objects": len(truth["tracks"]),
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "recall": tp / (tp + fn) if tp + fn else float("nan"),
        "tp": tp, "fp": fp, "fn": fn, "pairs_with_wrong_class": wrong_class,
        "mask_iou_mean": float(np.mean(pair_ious)) if pair_ious else float("nan"),
        "mask_iou_median": float(np.median(pair_ious)) if pair_ious else float("nan"),
        "mota": counts.mota, "idf1": counts.idf1, "id_switches": counts.idsw,
        "colour_changes_while_detected": changes.continuous, "colour_changes_over_lives": changes.lifetime,
    }


def count_frames(path: Path) -> int:
    """Frames a video really holds, by decoding it."""
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def evaluate_pipeline(out: Path, config: Config, *, seed: int = 0, frames: int = 150, width: int = 160,
                      height: int = 128, objects: int = 4, min_visible: float = 0.5,
                      detector: Detector | None = None) -> dict[str, Any]:
    """Write the video and its ground truth into ``out``, run the pipeline on it, return the scores.

    ``detector`` replaces the model that ``config`` describes (tests pass one that knows the answers).
    """
    video, gt_path = out / "video.mp4", out / "ground_truth.json"
    annotated, export = out / "annotated.mp4", out / "detections.jsonl"
    write_video(video, gt_path, seed=seed, width=width, height=height, num_frames=frames, num_objects=objects)
    config = dataclasses.replace(config, output=dataclasses.replace(config.output, overwrite=True))
    result = process(str(video), Outputs(output=annotated, save_json=export), config=config, detector=detector,
                     progress=on_terminal())
    if result.summary.error is not None:
        raise result.summary.error
    truth = json.loads(gt_path.read_text(encoding="utf-8"))
    records = [json.loads(line) for line in export.read_text(encoding="utf-8").splitlines()]
    report = score(truth, records, min_visible)
    mots = out / "ground_truth_mots.txt"
    classes = synthetic_truth_as_mots(truth, mots, min_visible)
    masks = evaluate_mots(export, mots, gt_classes=classes)["overall"]  # TrackEval's HOTA, CLEAR and Identity
    report.update({f"mask_{k.lower()}": masks[k] for k in ("HOTA", "DetA", "AssA", "LocA", "MOTSA", "sMOTSA", "IDF1")})
    report.update({"annotated_frames": count_frames(annotated), "seed": seed, "size": f"{width}x{height}",
                   "min_visible": min_visible,
                   "pipeline_fps": result.summary.frames_written / max(result.summary.wall_seconds, 1e-9),
                   "weights": config.model.weights if detector is None else type(detector).__name__,
                   "score_threshold": config.model.score_threshold, "compute_precision": config.model.precision})
    return report


def report_lines(report: dict[str, Any]) -> list[str]:
    """The report of ``evaluate_pipeline`` as printed lines."""
    return [
        f"pipeline on a synthetic video: {report['frames']} frames {report['size']}, {report['objects']} shapes, "
        f"seed {report['seed']}, weights {report['weights']} ({report['compute_precision']}), "
        f"{report['pipeline_fps']:.1f} fps",
        f"  detection  precision {report['precision']:.3f}  recall {report['recall']:.3f}  "
        f"(tp {report['tp']}, fp {report['fp']}, fn {report['fn']}; {report['pairs_with_wrong_class']} pairs "
        f"of the wrong class)",
        f"  masks      IoU of matched objects: mean {report['mask_iou_mean']:.3f}, "
        f"median {report['mask_iou_median']:.3f}",
        f"  tracking   MOTA {report['mota']:.3f}  IDF1 {report['idf1']:.3f}  ID switches {report['id_switches']}",
        f"  mask tracks HOTA {report['mask_hota']:.3f} (DetA {report['mask_deta']:.3f}, AssA {report['mask_assa']:.3f}, "
        f"LocA {report['mask_loca']:.3f})  MOTSA {report['mask_motsa']:.3f}  sMOTSA {report['mask_smotsa']:.3f}  "
        f"IDF1 {report['mask_idf1']:.3f} (TrackEval)",
        f"  colour     changes while continuously detected {report['colour_changes_while_detected']}, "
        f"over whole lives {report['colour_changes_over_lives']}",
        f"  output     annotated MP4 holds {report['annotated_frames']} of {report['frames']} frames",
    ]
