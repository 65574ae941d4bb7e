"""Evaluation must report what pycocotools' COCOeval reports, and count the operating point by hand's rules."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import rtseg.detect.models as models
from rtseg.core.errors import DataError
from rtseg.core.masks import encode_mask
from rtseg.detect.models import COCO_CATEGORIES, build_model
from rtseg.offline.coco import load_coco
from rtseg.offline.evaluate import evaluate_predictions, main
from rtseg.offline.synthetic import write_image_dataset


def _square(top: int, left: int, side: int, size: int = 64) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[top:top + side, left:left + side] = True
    return mask


def _ann(mask: np.ndarray) -> dict:
    ys, xs = np.nonzero(mask)
    return {"segmentation": encode_mask(mask), "area": int(mask.sum()),
            "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]}


@pytest.fixture()
def hand_made(tmp_path: Path) -> Path:
    """Two 64x64 images; image 1: a 'red' at (0,0) and a 'blue' at (32,32); image 2: two 'red' and a 'blue'."""
    objects = [(1, 1, _square(0, 0, 16)), (1, 2, _square(32, 32, 16)),
               (2, 1, _square(0, 0, 20)), (2, 1, _square(40, 0, 20)), (2, 2, _square(0, 40, 20))]
    data = {
        "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 64},
                   {"id": 2, "file_name": "b.png", "width": 64, "height": 64}],
        "categories": [{"id": 1, "name": "red"}, {"id": 2, "name": "blue"}],
        "annotations": [{"id": i + 1, "image_id": img, "category_id": cat, "iscrowd": 0, **_ann(mask)}
                        for i, (img, cat, mask) in enumerate(objects)],
    }
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    return path


def _pred(image_id: int, category_id: int, score: float, mask: np.ndarray, box_mask: np.ndarray | None = None) -> dict:
    """A detection whose mask is ``mask`` and whose box is that of ``box_mask`` (default: the mask's own)."""
    return {"image_id": image_id, "category_id": category_id, "score": score,
            "bbox": _ann(mask if box_mask is None else box_mask)["bbox"], "segmentation": encode_mask(mask)}


def _from_ground_truth(gt: COCO) -> list[dict]:
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0, "bbox": a["bbox"],
             "segmentation": a["segmentation"]} for a in gt.dataset["annotations"]]


def _cocoeval_stats(gt: COCO, predictions: list[dict], iou_type: str) -> np.ndarray:
    """COCOeval run directly, the documented way: loadRes, evaluate, accumulate, summarize."""
    field = "segmentation" if iou_type == "segm" else "bbox"
    dets = [{k: copy.deepcopy(p[k]) for k in ("image_id", "category_id", "score", field)} for p in predictions]
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(dets), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_ground_truth_as_predictions_scores_perfectly(hand_made: Path) -> None:
    report = evaluate_predictions(hand_made, _from_ground_truth(load_coco(hand_made)))
    for iou_type in ("bbox", "segm"):
        r = report[iou_type]
        assert (r["AP"], r["AP50"], r["AP75"]) == (1.0, 1.0, 1.0)
        assert (r["precision"], r["recall"], r["f1"], r["tp"], r["fp"], r["fn"]) == (1.0, 1.0, 1.0, 5, 0, 0)
        assert {name: c["AP"] for name, c in r["per_class"].items()} == {"red": 1.0, "blue": 1.0}


def test_synthetic_ground_truth_as_predictions_scores_perfectly(tmp_path: Path) -> None:
    paths = write_image_dataset(tmp_path, num_train=1, num_val=8, size=64, seed=1)
    gt = load_coco(paths["val"])
    report = evaluate_predictions(gt, _from_ground_truth(gt))
    assert report["segm"]["AP"] == report["bbox"]["AP"] == 1.0
    assert report["segm"]["fn"] == 0 and report["segm"]["tp"] == len(gt.anns)


def _perturbed() -> list[dict]:
    """Known outcome at score >= 0.5, IoU 0.5 (boxes | masks):

    image 1 red:  exact (0.9)                                      TP | TP
    image 1 blue: exact box, mask a different square (0.8)        TP | FP, and the blue object is missed by masks
    image 2 red:  first shifted 4 px of 20 (IoU 0.67) (0.7)        TP | TP
                  second only at score 0.4, below the threshold    FN | FN (still used by AP)
    image 2 blue: dropped                                          FN | FN
    image 2 red:  a false alarm in an empty corner (0.6)           FP | FP
    """
    return [
        _pred(1, 1, 0.9, _square(0, 0, 16)),
        _pred(1, 2, 0.8, _square(0, 40, 16), box_mask=_square(32, 32, 16)),
        _pred(2, 1, 0.7, _square(4, 0, 20)),
        _pred(2, 1, 0.4, _square(40, 0, 20)),
        _pred(2, 1, 0.6, _square(44, 44, 16)),
    ]


def test_perturbed_predictions_give_exactly_cocoeval_ap(hand_made: Path) -> None:
    gt = load_coco(hand_made)
    predictions = _perturbed()
    report = evaluate_predictions(gt, copy.deepcopy(predictions))
    for iou_type in ("bbox", "segm"):
        stats = _cocoeval_stats(load_coco(hand_made), predictions, iou_type)
        assert [report[iou_type][k] for k in ("AP", "AP50", "AP75")] == list(stats[:3])
    assert report["bbox"]["AP"] < 1.0 and report["segm"]["AP"] < report["bbox"]["AP"]


def test_operating_point_counts_match_hand_counts(hand_made: Path) -> None:
    report = evaluate_predictions(hand_made, _perturbed(), score_threshold=0.5)
    box, mask = report["bbox"], report["segm"]
    assert (box["tp"], box["fp"], box["fn"]) == (3, 1, 2)
    assert box["precision"] == pytest.approx(3 / 4) and box["recall"] == pytest.approx(3 / 5)
    assert box["f1"] == pytest.approx(2 * 0.75 * 0.6 / (0.75 + 0.6))
    assert (mask["tp"], mask["fp"], mask["fn"]) == (2, 2, 3)
    assert mask["precision"] == pytest.approx(2 / 4) and mask["recall"] == pytest.approx(2 / 5)
    assert mask["f1"] == pytest.approx(2 * 0.5 * 0.4 / 0.9)
    red, blue = mask["per_class"]["red"], mask["per_class"]["blue"]
    assert (red["tp"], red["fp"], red["fn"]) == (2, 1, 1)
    assert (blue["tp"], blue["fp"], blue["fn"]) == (0, 1, 2)
    assert (blue["precision"], blue["recall"], blue["f1"]) == (0.0, 0.0, 0.0)
    # lowering the threshold lets the 0.4 detection count: it finds the second red square
    low = evaluate_predictions(hand_made, _perturbed(), score_threshold=0.3)["segm"]
    assert (low["tp"], low["fp"], low["fn"]) == (3, 2, 2)


def test_no_predictions_score_zero(hand_made: Path) -> None:
    report = evaluate_predictions(hand_made, [])
    assert report["segm"]["AP"] == 0.0 and report["segm"]["fn"] == 5 and report["segm"]["precision"] == 0.0


def test_predictions_for_unknown_images_are_refused(hand_made: Path) -> None:
    bad = _pred(99, 1, 0.9, _square(0, 0, 8))
    with pytest.raises(DataError, match="image id 99"):
        evaluate_predictions(hand_made, [bad])
    del bad["segmentation"]
    bad["image_id"] = 1
    with pytest.raises(DataError, match="segmentation"):
        evaluate_predictions(hand_made, [bad])


def test_command_line_scores_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    paths = write_image_dataset(tmp_path / "data", num_train=1, num_val=3, size=64, seed=2)
    torch.manual_seed(0)
    model = build_model("maskrcnn_r18", 4)
    checkpoint = tmp_path / "random.pt"
    torch.save({"model": model.state_dict(), "meta": {"architecture": "maskrcnn_r18", "input_size": 64,
                "class_names": ["__background__", "circle", "square", "triangle"]}}, checkpoint)
    metrics = tmp_path / "metrics.json"
    code = main(["--data", str(paths["val"]), "--images", str(paths["images"]), "--weights", str(checkpoint),
                 "--device", "cpu", "--save", str(metrics)])
    assert code == 0
    saved = json.loads(metrics.read_text())
    assert saved["architecture"] == "maskrcnn_r18" and saved["input_size"] == 64 and saved["precision"] == "fp32"
    assert set(saved["segm"]["per_class"]) == {"circle", "square", "triangle"}
    assert saved["num_predictions"] > 0
    assert "mask" in capsys.readouterr().out
    # The same checkpoint in bf16: a run to compare, scored on the same images.
    reduced = tmp_path / "bf16.json"
    assert main(["--data", str(paths["val"]), "--images", str(paths["images"]), "--weights", str(checkpoint),
                 "--device", "cpu", "--precision", "bf16", "--save", str(reduced)]) == 0
    bf16 = json.loads(reduced.read_text())
    assert bf16["precision"] == "bf16" and bf16["num_images"] == saved["num_images"] == 3
    assert bf16["num_predictions"] > 0


def test_default_weights_need_no_model_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--weights default picks maskrcnn_v1, as rtseg does, rather than an architecture without COCO weights."""
    paths = write_image_dataset(tmp_path / "data", num_train=1, num_val=2, size=64, seed=4)
    gt = json.loads(paths["val"].read_text())
    for category, coco_name in zip(gt["categories"], ("person", "car", "dog")):  # classes the COCO model knows
        category["name"] = coco_name
    renamed = tmp_path / "val.json"
    renamed.write_text(json.dumps(gt))
    asked: list[str] = []

    def cached_download(name: str) -> dict[str, torch.Tensor]:  # no network here: random weights stand in
        asked.append(name)
        return build_model(name, len(COCO_CATEGORIES)).state_dict()

    monkeypatch.setattr(models, "_download_state_dict", cached_download)
    metrics = tmp_path / "metrics.json"
    assert main(["--data", str(renamed), "--images", str(paths["images"]), "--weights", "default", "--size", "64",
                 "--device", "cpu", "--save", str(metrics)]) == 0
    saved = json.loads(metrics.read_text())
    assert asked == ["maskrcnn_v1"]
    assert saved["architecture"] == "maskrcnn_v1" and saved["weights"] == "default" and saved["num_images"] == 2
    assert set(saved["segm"]["per_class"]) == {"person", "car", "dog"}
