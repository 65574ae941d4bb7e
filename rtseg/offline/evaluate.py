"""Evaluate instance segmentation: COCO box and mask AP, plus precision, recall and F1 at a threshold.

AP, AP50 and AP75 come from pycocotools' COCOeval itself, so the numbers mean
what published COCO numbers mean. Precision, recall and F1 answer the
question a deployment asks ("of what is shown at score >= t, how much is
right, and how much is missed?"); they are counted from COCOeval's own
IoU-0.5 matching so the two never disagree about which detection found
which object.

    python -m rtseg evaluate --data val.json --images DIR --weights best.pt
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.models.detection import MaskRCNN
from tqdm import tqdm

from rtseg.core.commandline import ArgumentParser, add_device_flags, run_command
from rtseg.core.config import ModelConfig
from rtseg.core.errors import DataError, OutputError, UsageError
from rtseg.core.masks import encode_mask
from rtseg.detect.device import PRECISION_DTYPES, resolve_device, resolve_precision
from rtseg.detect.models import load_model, set_input_size
from rtseg.offline.coco import BACKGROUND, CocoInstances, load_coco

log = logging.getLogger(__name__)

IOU_TYPES = ("bbox", "segm")
MATCH_IOU = 0.5
MASK_THRESHOLD = 0.5


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, 0.0 when nothing was counted (no detections, or no objects)."""
    return float(numerator / denominator) if denominator else 0.0


def _counts(tp: int, fp: int, fn: int) -> dict[str, float | int]:
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {"precision": precision, "recall": recall, "f1": _ratio(2 * precision * recall, precision + recall),
            "tp": tp, "fp": fp, "fn": fn}


def _ap_or_none(value: float) -> float | None:
    """COCOeval writes -1 where a metric is undefined (no ground truth); JSON gets null instead."""
    return None if value < 0 else float(value)


def _check_predictions(gt: COCO, predictions: list[dict[str, Any]], iou_types: Iterable[str]) -> None:
    needed = {"image_id", "category_id", "score", *("segmentation" if t == "segm" else "bbox" for t in iou_types)}
    for i, pred in enumerate(predictions):
        missing = needed - set(pred)
        if missing:
            raise DataError(f"prediction {i} has no {', '.join(sorted(missing))}")
        if pred["image_id"] not in gt.imgs:
            raise DataError(f"prediction {i} is for image id {pred['image_id']}, which the ground truth lacks")
        if pred["category_id"] not in gt.cats:
            raise DataError(f"prediction {i} has category id {pred['category_id']}, which the ground truth lacks")


def _results(gt: COCO, predictions: list[dict[str, Any]], iou_type: str) -> COCO:
    """Predictions as a COCO results object holding only the field this IoU type compares.

    Leaving the box off for 'segm' makes pycocotools take each detection's
    area from its mask rather than its box, as it does for ground truth.
    """
    keep = ("image_id", "category_id", "score", "segmentation" if iou_type == "segm" else "bbox")
    dets = [{key: copy.deepcopy(pred[key]) for key in keep} for pred in predictions]
    with contextlib.redirect_stdout(io.StringIO()):
        if dets:
            return gt.loadRes(dets)
        empty = COCO()  # loadRes cannot take an empty list; no detections is a valid (AP 0) result
        empty.dataset = {"images": gt.dataset["images"], "categories": gt.dataset["categories"], "annotations": []}
        empty.createIndex()
        return empty


def _operating_point(ev: COCOeval, score_threshold: float) -> dict[int, list[int]]:
    """Per category [tp, fp, fn] among detections scoring >= threshold, from COCOeval's IoU-0.5 matches.

    COCOeval matches greedily in descending score order, so the matches of the
    detections above the threshold are the ones they would get on their own.
    Crowd regions and detections matched to them are ignored, as in COCOeval.
    """
    t = int(np.argmin(np.abs(ev.params.iouThrs - MATCH_IOU)))
    all_area = ev.params.areaRng[0]
    counts = {cat: [0, 0, 0] for cat in ev.params.catIds}
    for img in ev.evalImgs:
        if img is None or img["aRng"] != all_area:
            continue
        shown = np.asarray(img["dtScores"]) >= score_threshold
        ignored = img["dtIgnore"][t].astype(bool)
        matched = img["dtMatches"][t] > 0
        tp = int(np.sum(shown & matched & ~ignored))
        counts[img["category_id"]][0] += tp
        counts[img["category_id"]][1] += int(np.sum(shown & ~matched & ~ignored))
        counts[img["category_id"]][2] += int(np.sum(np.asarray(img["gtIgnore"]) == 0)) - tp
    return counts


def _evaluate_type(gt: COCO, predictions: list[dict[str, Any]], iou_type: str, score_threshold: float) -> dict[str, Any]:
    ev = COCOeval(gt, _results(gt, predictions, iou_type), iou_type)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    names = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")
    result: dict[str, Any] = {name: _ap_or_none(v) for name, v in zip(names, ev.stats[:6])}
    counts = _operating_point(ev, score_threshold)
    result.update(_counts(*np.sum(list(counts.values()), axis=0).tolist()))
    per_class = {}
    for k, cat in enumerate(ev.params.catIds):
        precision = ev.eval["precision"][:, :, k, 0, -1]  # all IoUs, all recalls, area 'all', 100 detections
        ap = float(precision[precision > -1].mean()) if np.any(precision > -1) else -1.0
        per_class[gt.cats[cat]["name"]] = {"AP": _ap_or_none(ap), **_counts(*counts[cat])}
    result["per_class"] = per_class
    return result


def evaluate_predictions(ground_truth: COCO | str | Path, predictions: list[dict[str, Any]],
                         score_threshold: float = 0.5, iou_types: Iterable[str] = IOU_TYPES) -> dict[str, Any]:
    """Score COCO-format ``predictions`` against ``ground_truth`` (a COCO object or annotation file).

    Each prediction is ``{"image_id", "category_id", "score", "bbox": [x, y, w, h],
    "segmentation": RLE}`` (only the fields the chosen IoU types need). Returns
    ``{"bbox": {...}, "segm": {...}, "score_threshold": t, ...}`` where each IoU
    type holds AP, AP50, AP75, AP_small/medium/large (None where undefined),
    precision, recall, f1, tp, fp, fn and the same per class.
    """
    gt = ground_truth if isinstance(ground_truth, COCO) else load_coco(ground_truth)
    iou_types = tuple(iou_types)
    unknown = set(iou_types) - set(IOU_TYPES)
    if unknown:
        raise UsageError(f"unknown IoU type(s) {sorted(unknown)} (known: {', '.join(IOU_TYPES)})")
    _check_predictions(gt, predictions, iou_types)
    report: dict[str, Any] = {"score_threshold": score_threshold, "match_iou": MATCH_IOU,
                              "num_images": len(gt.imgs), "num_predictions": len(predictions)}
    for iou_type in iou_types:
        report[iou_type] = _evaluate_type(gt, predictions, iou_type, score_threshold)
    return report


def predict(model: MaskRCNN, dataset: CocoInstances, model_classes: tuple[str, ...], device: torch.device,
            batch_size: int = 4, dtype: torch.dtype = torch.float32, progress: bool = False) -> list[dict[str, Any]]:
    """Run ``model`` over every image of ``dataset``; COCO-format detections (masks as RLE).

    ``dtype`` other than float32 runs the model under autocast in that precision
    (fp16 on CUDA, bf16 anywhere), so its accuracy cost can be measured.

    Model labels map to the data set's categories by class name, so a model
    trained with other classes (COCO's, say) is scored on the ones it shares.
    ``progress`` shows a bar of images done: on a CPU a data set takes minutes.
    """
    category_of_name = {dataset.coco.cats[c]["name"]: c for c in dataset.coco.cats}
    category_of_label = {label: category_of_name[name] for label, name in enumerate(model_classes)
                         if name in category_of_name and name != BACKGROUND}
    if not category_of_label:
        raise DataError(f"the model's classes ({', '.join(model_classes[1:6])}, ...) include none of the "
                        f"data set's categories ({', '.join(sorted(category_of_name))})")
    was_training = model.training
    model.eval()
    predictions: list[dict[str, Any]] = []
    bar = tqdm(total=len(dataset), unit="image", file=sys.stderr, dynamic_ncols=True) if progress else None
    try:
        for start in range(0, len(dataset), batch_size):
            indices = range(start, min(start + batch_size, len(dataset)))
            if bar is not None:
                bar.update(start - bar.n)
            images = [dataset[i][0].to(device) for i in indices]
            with torch.inference_mode(), torch.autocast(device.type, dtype, enabled=dtype != torch.float32):
                outputs = model(images)
            for index, out in zip(indices, outputs):
                boxes = out["boxes"].float().cpu().numpy()
                masks = (out["masks"][:, 0] > MASK_THRESHOLD).cpu().numpy()
                for box, label, score, mask in zip(boxes, out["labels"].tolist(), out["scores"].tolist(), masks):
                    if label not in category_of_label:
                        continue
                    x1, y1, x2, y2 = (float(v) for v in box)
                    predictions.append({"image_id": dataset.image_ids[index], "category_id": category_of_label[label],
                                        "score": float(score), "bbox": [x1, y1, x2 - x1, y2 - y1],
                                        "segmentation": encode_mask(mask)})
    finally:
        model.train(was_training)
        if bar is not None:
            bar.update(len(dataset) - bar.n)
            bar.close()
    return predictions


def format_report(report: dict[str, Any]) -> str:
    """A few human-readable lines: AP table, then the operating point overall and per class."""
    def num(value: float | None) -> str:
        return "  n/a" if value is None else f"{value:.3f}"

    lines = [f"{'':6} {'AP':>6} {'AP50':>6} {'AP75':>6}   at score >= {report['score_threshold']:g}, IoU {MATCH_IOU}: "
             "precision recall F1"]
    for iou_type in IOU_TYPES:
        if iou_type not in report:
            continue
        r = report[iou_type]
        label = "mask" if iou_type == "segm" else "box"
        lines.append(f"{label:6} {num(r['AP']):>6} {num(r['AP50']):>6} {num(r['AP75']):>6}   "
                     f"{r['precision']:.3f} {r['recall']:.3f} {r['f1']:.3f} (tp {r['tp']}, fp {r['fp']}, fn {r['fn']})")
        for name, c in r["per_class"].items():
            lines.append(f"  {name:<14} AP {num(c['AP'])}  precision {c['precision']:.3f} recall {c['recall']:.3f} "
                         f"F1 {c['f1']:.3f}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m rtseg evaluate",
        description="Score a Mask R-CNN checkpoint on a COCO-format data set: box and mask AP/AP50/AP75 "
                    "(pycocotools COCOeval) and precision/recall/F1 at a score threshold (IoU 0.5).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m rtseg evaluate --data data/shapes/val.json --images data/shapes/images "
               "--weights runs/shapes/best.pt\n"
               "  python -m rtseg evaluate --data val.json --images val2017 --model maskrcnn_v1 --weights default "
               "--score-threshold 0.7 --save metrics.json",
    )
    parser.add_argument("--data", required=True, help="COCO instances JSON with the ground truth")
    parser.add_argument("--images", required=True, help="folder holding the images the JSON names")
    parser.add_argument("--weights", required=True, help="checkpoint file, 'default' (torchvision COCO weights) or 'none'")
    parser.add_argument("--model", default=ModelConfig().name,
                        help=f"architecture when the weights do not name one (default {ModelConfig().name}, as for "
                             "rtseg; a checkpoint's metadata wins)")
    parser.add_argument("--score-threshold", type=float, default=0.5,
                        help="operating point for precision/recall/F1 (AP uses every detection); default 0.5")
    parser.add_argument("--size", type=int, help="shorter image side fed to the model (default: the checkpoint's "
                                                 "training size, else the architecture's own)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per model call (default 4)")
    add_device_flags(parser, precision_help="auto = fp32, the reference (stock torchvision's answers); bf16, or fp16 on "
                                            "CUDA, scores the same model in reduced precision, to read its cost in AP")
    parser.add_argument("--save", help="also write the full report (per class included) to this JSON file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (shown on a terminal)")
    return parser


def main(argv: list[str]) -> int:
    """Command line entry: evaluate a checkpoint, print the report, optionally save it as JSON."""
    args = _parser().parse_args(argv)
    if not 0.0 <= args.score_threshold <= 1.0:
        raise UsageError(f"--score-threshold must be between 0 and 1, got {args.score_threshold}")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.size is not None and args.size < 32:
        raise UsageError(f"--size must be at least 32, got {args.size}")
    save = Path(args.save) if args.save else None
    if save is not None and not save.parent.is_dir():
        raise OutputError(f"cannot save metrics: folder {save.parent} does not exist")
    device = resolve_device(args.device)
    dataset = CocoInstances(args.data, args.images)
    loaded = load_model(args.model, args.weights)
    size, _ = set_input_size(loaded, args.size or 0)
    model = loaded.model.to(device)
    # The reference is fp32: 'auto' means fp32 here; bf16/fp16 are asked for to read their cost in AP.
    dtype = resolve_precision("fp32" if args.precision == "auto" else args.precision, device)
    log.info("predicting on %d image(s) with %s at size %d on %s", len(dataset), loaded.meta["architecture"], size,
             device)
    progress = not args.no_progress and sys.stderr.isatty()
    predictions = predict(model, dataset, loaded.class_names, device, args.batch_size, dtype, progress=progress)
    log.info("scoring %d prediction(s) with COCOeval (boxes, then masks)", len(predictions))
    report = evaluate_predictions(dataset.coco, predictions, args.score_threshold)
    report.update({"weights": args.weights, "architecture": loaded.meta["architecture"],
                   "precision": next(name for name, d in PRECISION_DTYPES.items() if d == dtype),
                   "input_size": size})
    print(format_report(report))
    if save is not None:
        save.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"saved {save}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, sys.argv[1:]))
