"""The synthetic data must be reproducible and its ground truth must describe exactly what is drawn."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from rtseg.offline.synthetic import (
    CLASS_NAMES,
    MIN_VISIBLE_FRACTION,
    make_image,
    video_frames,
    write_image_dataset,
    write_video,
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_image_dataset(tmp_path_factory.mktemp("shapes"), num_train=6, num_val=3, size=64, seed=7)


def _check_annotation(ann: dict, height: int, width: int) -> None:
    mask = mask_utils.decode(ann["segmentation"]).astype(bool)
    assert mask.shape == (height, width)
    assert ann["area"] == mask.sum() > 0
    ys, xs = np.nonzero(mask)
    x, y, w, h = ann["bbox"]
    # tight: the box starts at the first mask pixel and ends just past the last one
    assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_same_seed_same_files_other_seed_other_images(dataset: dict[str, Path], tmp_path: Path) -> None:
    again = write_image_dataset(tmp_path / "again", num_train=6, num_val=3, size=64, seed=7)
    other = write_image_dataset(tmp_path / "other", num_train=6, num_val=3, size=64, seed=8)
    for split in ("train", "val"):
        assert again[split].read_bytes() == dataset[split].read_bytes()
        assert other[split].read_bytes() != dataset[split].read_bytes()
    names = sorted(p.name for p in dataset["images"].iterdir())
    assert names == sorted(p.name for p in again["images"].iterdir())
    assert len(names) == 9
    for name in names:
        assert (again["images"] / name).read_bytes() == (dataset["images"] / name).read_bytes()


def test_annotations_match_their_masks(dataset: dict[str, Path]) -> None:
    for split in ("train", "val"):
        data = json.loads(dataset[split].read_text())
        assert [c["name"] for c in data["categories"]] == list(CLASS_NAMES)
        assert {a["image_id"] for a in data["annotations"]} <= {i["id"] for i in data["images"]}
        assert len({a["id"] for a in data["annotations"]}) == len(data["annotations"])
        sizes = {i["id"]: (i["height"], i["width"]) for i in data["images"]}
        for ann in data["annotations"]:
            assert ann["iscrowd"] == 0 and ann["category_id"] in (1, 2, 3)
            _check_annotation(ann, *sizes[ann["image_id"]])


def test_images_have_overlaps_but_every_shape_stays_mostly_visible() -> None:
    occluded = 0
    for seed in range(20):
        image, instances = make_image(np.random.default_rng(seed), 96, 96, max_shapes=6)
        assert image.shape == (96, 96, 3) and image.dtype == np.uint8
        for inst in instances:
            assert inst.mask.sum() >= MIN_VISIBLE_FRACTION * inst.full_area
            occluded += inst.mask.sum() < inst.full_area
        visible = np.stack([inst.mask for inst in instances])
        assert visible.sum(0).max() <= 1  # visible parts never overlap: each pixel belongs to one shape
    assert occluded > 0


def test_video_has_one_ground_truth_entry_per_frame(tmp_path: Path) -> None:
    video, gt_path = tmp_path / "v.mp4", tmp_path / "v.json"
    write_video(video, gt_path, seed=3, width=96, height=64, num_frames=24, fps=12, num_objects=4)
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    gt = json.loads(gt_path.read_text())
    assert len(decoded) == gt["num_frames"] == len(gt["frames"]) == 24
    assert [f["frame_index"] for f in gt["frames"]] == list(range(24))
    assert sorted(t["track_id"] for t in gt["tracks"]) == [1, 2, 3, 4]
    category_of_track = {t["track_id"]: t["category_id"] for t in gt["tracks"]}
    for frame_gt in gt["frames"]:
        ids = [inst["track_id"] for inst in frame_gt["instances"]]
        assert len(ids) == len(set(ids))
        for inst in frame_gt["instances"]:
            assert inst["category_id"] == category_of_track[inst["track_id"]]
            assert 0 < inst["visible_fraction"] <= 1
            _check_annotation(inst, 64, 96)
    # the ground truth belongs to the frame it is listed with: the encoded frames match the rendered ones
    rendered = [image for image, _ in video_frames(3, 96, 64, 24, 4)]
    for i in (0, 12, 23):
        assert np.abs(decoded[i].astype(int) - rendered[i]).mean() < 12  # x264 drops some of the pixel noise
        assert np.abs(decoded[i].astype(int) - rendered[(i + 6) % 24]).mean() > np.abs(
            decoded[i].astype(int) - rendered[i]).mean()


def test_video_shapes_move_and_occlude_each_other(tmp_path: Path) -> None:
    frames = list(video_frames(seed=0, width=160, height=120, num_frames=90, num_objects=5))
    centres = [np.argwhere(frames[0][1][0].mask).mean(0), np.argwhere(frames[-1][1][0].mask).mean(0)]
    assert np.linalg.norm(centres[1] - centres[0]) > 5
    assert any(inst.mask.sum() < inst.full_area for _, instances in frames for inst in instances)


def test_video_is_reproducible(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_video(tmp_path / f"{name}.mp4", tmp_path / f"{name}.json", seed=5, width=64, height=48, num_frames=6)
    a, b = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("a", "b"))
    assert a.pop("video") == "a.mp4" and b.pop("video") == "b.mp4"
    assert a == b


def test_odd_video_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "v.mp4", tmp_path / "v.json", width=65, height=48, num_frames=2)
