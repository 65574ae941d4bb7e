"""rtseg export --format cvat-video and rtseg import: CVAT for video 1.1 XML checked against CVAT's documented
layout with xml.etree and a reference RLE decoder written from CVAT's description (pixel by pixel, not our code),
then the round trip run -> CVAT -> import -> the COCO data rtseg train loads, masks exact."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
from export_helpers import Seen, box, masks_by_track, write_frames, write_run
from pycocotools.coco import COCO

from rtseg.core.errors import DataError
from rtseg.core.masks import encode_mask
from rtseg.offline.coco import CocoInstances
from rtseg.offline.export_cvat import coco_to_cvat, coco_to_cvat_batch, cvat_rle
from rtseg.offline.exports import export_run
from rtseg.offline.import_labels import import_labels, main

H, W = 40, 56
RING = box(H, W, 5, 5, 25, 30) & ~box(H, W, 10, 10, 20, 25)  # a hole: runs cross rows
FRAMES = [
    [Seen(1, "person", RING), Seen(2, "car", box(H, W, 30, 0, 40, 56))],
    [Seen(1, "person", box(H, W, 6, 6, 26, 31))],
    [],  # the person is not seen: outside
    [Seen(1, "person", box(H, W, 0, 50, 3, 56)), Seen(2, "car", box(H, W, 30, 1, 40, 56))],
    [Seen(2, "car", box(H, W, 31, 1, 40, 56))],
]


def reference_decode(rle: str, left: int, top: int, width: int, frame_h: int, frame_w: int) -> np.ndarray:
    """CVAT's mask RLE as its documentation describes it: counts of alternating 0s and 1s, 0s first, over the
    bounding box read row by row from (left, top)."""
    mask = np.zeros((frame_h, frame_w), bool)
    value, offset = False, 0
    for count in (int(v) for v in rle.split(",")):
        for _ in range(count):
            y, x = divmod(offset, width)
            mask[top + y, left + x] = value
            offset += 1
        value = not value
    return mask


def _tracks(xml: Path) -> dict[str, list[ElementTree.Element]]:
    root = ElementTree.parse(xml).getroot()
    assert root.tag == "annotations" and root.findtext("version") == "1.1"
    task = root.find("meta/task")
    assert task is not None and task.findtext("mode") == "interpolation" and task.findtext("size") == "5"
    assert task.findtext("original_size/width") == str(W) and task.findtext("original_size/height") == str(H)
    assert [label.findtext("name") for label in task.iter("label")] == ["car", "person"]
    assert {label.findtext("type") for label in task.iter("label")} == {"mask"}
    return {t.get("id", ""): list(t) for t in root.iter("track")}


def test_cvat_video_xml_has_one_track_per_object_with_keyframes_outside_flags_and_exact_masks(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run.jsonl", FRAMES, W, H)
    export_run(run, "cvat-video", tmp_path / "run.xml")
    tracks = _tracks(tmp_path / "run.xml")
    assert set(tracks) == {"1", "2"}
    root = ElementTree.parse(tmp_path / "run.xml").getroot()
    assert {t.get("id"): t.get("label") for t in root.iter("track")} == {"1": "person", "2": "car"}
    expected = masks_by_track(FRAMES)
    for track_id, shapes in tracks.items():
        assert {s.tag for s in shapes} == {"mask"} and all(s.get("keyframe") == "1" for s in shapes)
        flags = [(int(s.get("frame", -1)), s.get("outside")) for s in shapes]
        for shape in shapes:
            if shape.get("outside") == "0":
                mask = reference_decode(shape.get("rle", ""), int(shape.get("left", -1)), int(shape.get("top", -1)),
                                        int(shape.get("width", -1)), H, W)
                assert np.array_equal(mask, expected[int(shape.get("frame", -1)), int(track_id)])
                ys, xs = np.nonzero(mask)  # the box is the mask's own
                assert (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) == tuple(
                    int(shape.get(k, -1)) for k in ("left", "top", "width", "height"))
        if track_id == "1":  # seen 0-1, gone 2, seen 3, gone 4
            assert flags == [(0, "0"), (1, "0"), (2, "1"), (3, "0"), (4, "1")]
        else:  # seen 0, gone 1, seen 3-4 to the last frame: no closing shape
            assert flags == [(0, "0"), (1, "1"), (3, "0"), (4, "0")]


def test_the_frames_layout_gives_each_object_and_frame_its_own_track(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run.jsonl", FRAMES, W, H)
    export_run(run, "cvat-video", tmp_path / "run.xml", cvat_layout="frames")
    tracks = _tracks(tmp_path / "run.xml")
    assert len(tracks) == 6
    assert all(shapes[0].get("outside") == "0" and (len(shapes) == 1 or shapes[1].get("outside") == "1")
               for shapes in tracks.values())


def test_cvat_rle_starts_with_a_zero_run_when_the_box_starts_with_a_pixel() -> None:
    runs, left, top, width, height = cvat_rle(box(8, 8, 2, 3, 4, 6)) or ([], 0, 0, 0, 0)
    assert (runs, left, top, width, height) == ([0, 6], 3, 2, 3, 2)
    assert cvat_rle(np.zeros((4, 4), bool)) is None


def test_round_trip_run_to_cvat_to_coco_that_rtseg_train_loads(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run.jsonl", FRAMES, W, H)
    export_run(run, "cvat-video", tmp_path / "run.xml")
    frames = write_frames(tmp_path / "frames", 5, W, H)
    summary = import_labels(tmp_path / "run.xml", frames, tmp_path / "data", classes=["person", "car"])
    assert summary["images"] == 4 and summary["annotations"] == 6  # frame 2 holds nothing
    coco = COCO(str(tmp_path / "data" / "annotations.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["person", "car"]
    expected = masks_by_track(FRAMES)
    got = {}
    for ann in coco.loadAnns(coco.getAnnIds()):
        frame = coco.imgs[ann["image_id"]]["frame"]
        got[frame, {1: 1, 2: 2}[ann["category_id"]]] = coco.annToMask(ann).astype(bool)
    assert got.keys() == expected.keys()
    assert all(np.array_equal(got[key], expected[key]) for key in expected)
    dataset = CocoInstances(tmp_path / "data" / "annotations.json", tmp_path / "data" / "images")
    assert dataset.class_names == ("__background__", "person", "car")
    image, target = dataset[0]
    assert image.shape == (3, H, W) and np.array_equal(target["masks"][0].numpy().astype(bool), RING)


def test_import_reads_cvat_polygons_and_images_and_names_an_unknown_label(tmp_path: Path) -> None:
    xml = tmp_path / "images.xml"
    xml.write_text(f"""<?xml version="1.0" encoding="utf-8"?>
<annotations><version>1.1</version>
  <meta><task><labels><label><name>Person</name></label><label><name>bicycle</name></label></labels></task></meta>
  <image id="1" name="a.jpg" width="{W}" height="{H}">
    <polygon label="Person" occluded="0" points="10.00,10.00;30.00,10.00;30.00,20.00;10.00,20.00" z_order="0"/>
    <box label="Person" occluded="0" xtl="1" ytl="1" xbr="5" ybr="5"/>
  </image>
  <image id="2" name="b.jpg" width="{W}" height="{H}">
    <polygon label="bicycle" occluded="0" points="0,0;5,0;5,5" z_order="0"/>
  </image>
</annotations>""", encoding="utf-8")
    frames = write_frames(tmp_path / "frames", 3, W, H)
    with pytest.raises(DataError, match=r"label 'bicycle' \(image b.jpg, frame 2\) is not one of the classes: person"):
        import_labels(xml, frames, tmp_path / "data", classes=["person"])
    assert not (tmp_path / "data").exists()
    summary = import_labels(xml, frames, tmp_path / "data")
    assert summary["shapes_without_mask_left_out"] == 1 and summary["annotations"] == 2
    coco = COCO(str(tmp_path / "data" / "annotations.json"))
    person = coco.loadAnns(coco.getAnnIds(catIds=[1]))[0]
    assert 200 <= person["area"] <= 231  # the 20 x 10 rectangle, rasterised by pycocotools


def test_import_command_prints_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run(tmp_path / "run.jsonl", FRAMES, W, H)
    export_run(run, "cvat-video", tmp_path / "run.xml")
    frames = write_frames(tmp_path / "frames", 5, W, H)
    assert main([str(tmp_path / "run.xml"), "--frames", str(frames), "--output", str(tmp_path / "d")]) == 0
    assert capsys.readouterr().out == f"wrote {tmp_path / 'd'}: 4 images, 6 annotations of car, person\n"


def test_box_only_conversion_from_coco_rle_equals_the_whole_mask_one_on_random_masks() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        mask = rng.random((h, w)) < rng.random() * 0.3
        rle = encode_mask(mask)
        assert coco_to_cvat(rle["counts"], rle["size"]) == cvat_rle(mask)


def test_batched_conversion_equals_the_whole_mask_one_for_each_mask_of_a_batch() -> None:
    """Masks of one frame size converted together (as the export does: runs, box and transposition in one go)
    give each mask's own answer: empty, full, a pixel in a corner, runs that go on into the next column."""
    rng = np.random.default_rng(2)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        masks = [rng.random((h, w)) < rng.random() * rng.choice([0.05, 0.5, 1.0]) for _ in range(int(rng.integers(1, 9)))]
        masks += [np.zeros((h, w), bool), np.ones((h, w), bool), box(h, w, h - 1, w - 1, h, w),
                  box(h, w, 0, 0, h, w // 2 + 1) & ~box(h, w, 1, 0, h - 1, w)]
        rles = [encode_mask(m) for m in masks]
        assert coco_to_cvat_batch([r["counts"] for r in rles], [h, w]) == [cvat_rle(m) for m in masks]
