"""rtseg import of MOTS text: the frames and masks become the COCO data rtseg train loads, classes by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from export_helpers import Seen, box, masks_by_track, write_frames, write_run
from pycocotools.coco import COCO

from rtseg.core.errors import DataError
from rtseg.core.masks import encode_mask
from rtseg.offline.coco import CocoInstances
from rtseg.offline.exports import export_run
from rtseg.offline.import_labels import import_labels

H, W = 30, 40
FRAMES = [[Seen(1, "person", box(H, W, 0, 0, 10, 10)), Seen(2, "car", box(H, W, 15, 10, 30, 40))],
          [Seen(1, "person", box(H, W, 1, 1, 11, 11))]]


@pytest.mark.parametrize("first_frame", [0, 1])
def test_mots_with_its_frames_becomes_coco_with_the_same_masks(tmp_path: Path, first_frame: int) -> None:
    run = write_run(tmp_path / "run.jsonl", FRAMES, W, H)
    export_run(run, "mots", tmp_path / "gt.txt", first_frame=first_frame, class_ids={"person": 2, "car": 1})
    with (tmp_path / "gt.txt").open("a", encoding="utf-8") as out:  # an ignore region is left out
        out.write(f"{first_frame} 10000 10 {H} {W} {encode_mask(box(H, W, 20, 0, 30, 5))['counts']}\n")
    frames = write_frames(tmp_path / "frames", 2, W, H)
    summary = import_labels(tmp_path / "gt.txt", frames, tmp_path / "data", first_frame=first_frame,
                            classes=["person", "car"])
    assert (summary["images"], summary["annotations"], summary["ignore_regions_left_out"]) == (2, 3, 1)
    coco = COCO(str(tmp_path / "data" / "annotations.json"))
    expected = masks_by_track(FRAMES)
    got = {(coco.imgs[a["image_id"]]["frame"], a["category_id"]): coco.annToMask(a).astype(bool)
           for a in coco.loadAnns(coco.getAnnIds())}
    assert got.keys() == {(0, 1), (0, 2), (1, 1)}  # person 1, car 2, as --classes orders them
    assert all(np.array_equal(got[t, k], expected[t, k]) for t, k in got)
    assert len(CocoInstances(tmp_path / "data" / "annotations.json", tmp_path / "data" / "images")) == 2


def test_an_unknown_mots_class_is_one_line(tmp_path: Path) -> None:
    export_run(write_run(tmp_path / "run.jsonl", FRAMES, W, H), "mots", tmp_path / "gt.txt")  # person 1, car 3
    with pytest.raises(DataError, match=r"label 'class 3' \(object 3001, line 2\) is not one of the classes: car, "
                                        r"person"):
        import_labels(tmp_path / "gt.txt", write_frames(tmp_path / "f", 2, W, H), tmp_path / "data")
    assert not (tmp_path / "data").exists()
