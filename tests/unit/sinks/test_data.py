"""Data sinks: JSON Lines with COCO RLE masks, annotated stills, crops with alpha, statistics."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import SquareDetector, make_clip

from rtseg.api import Outputs, process
from rtseg.core.config import Config
from rtseg.core.masks import decode_mask, encode_mask
from rtseg.core.structures import Detections
from rtseg.render.colors import color_for_id


def _quiet_render(config: Config) -> Config:
    config.render = dataclasses.replace(config.render, contours=False, boxes=False, labels=False)
    return config


def _square_images(directory: Path, count: int = 3, size: tuple[int, int] = (48, 64)) -> list[Path]:
    directory.mkdir()
    paths = []
    for i in range(count):
        image = np.full((*size, 3), 50, np.uint8)
        image[10:26, 8 + 10 * i: 24 + 10 * i] = 255
        path = directory / f"shot_{i}.png"
        cv2.imwrite(str(path), image)
        paths.append(path)
    return paths


def test_rle_round_trip():
    mask = np.zeros((7, 9), bool)
    mask[2:5, 1:8] = True
    mask[6, 0] = True
    rle = encode_mask(mask)
    assert rle["size"] == [7, 9] and isinstance(rle["counts"], str)
    assert (decode_mask(json.loads(json.dumps(rle))) == mask).all()


def test_json_lines_match_the_rendered_masks(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", frames=6)
    jsonl, frames_dir = tmp_path / "d.jsonl", tmp_path / "frames"
    config = _quiet_render(Config())
    result = process(str(clip), Outputs(save_json=jsonl, save_frames=frames_dir), config=config,
                     detector=SquareDetector())
    assert result.summary.error is None
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["frame"] for r in lines] == list(range(6))
    assert [r["timestamp"] for r in lines] == pytest.approx([i / 10 for i in range(6)])
    for record in lines:
        assert (record["width"], record["height"]) == (96, 64)
        (instance,) = record["instances"]
        assert instance["class_name"] == "square" and instance["class_id"] == 1
        mask = decode_mask(instance["mask"])
        assert instance["area"] == int(mask.sum()) > 0
        x1, y1, x2, y2 = instance["box"]
        ys, xs = np.nonzero(mask)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x1, y1, x2, y2)
        # A track is confirmed on its min_hits-th frame; from then on the mask wears the track's colour.
        assert instance["track_id"] == (1 if record["frame"] >= config.tracking.min_hits - 1 else None)
        color = color_for_id(instance["track_id"] if instance["track_id"] is not None else -1)
        annotated = cv2.imread(str(frames_dir / f"frame_{record['frame']:06d}.jpg"))
        assert annotated is not None and annotated.shape == (64, 96, 3)
        inside = annotated[..., ::-1][mask].astype(int).mean(axis=0)  # BGR file, RGB colours
        np.testing.assert_allclose(inside, 0.5 * 255 + 0.5 * np.array(color), atol=12)  # JPEG tolerance


def test_images_folder_end_to_end_with_crops_and_stats(tmp_path):
    inputs = _square_images(tmp_path / "in")
    out, crops, stats = tmp_path / "out", tmp_path / "crops", tmp_path / "stats.json"
    config = _quiet_render(Config())
    result = process(str(tmp_path / "in"), Outputs(output=out, save_crops=crops, save_stats=stats), config=config,
                     detector=SquareDetector())
    assert result.summary.frames_written == 3
    for path in inputs:
        source, annotated = cv2.imread(str(path)), cv2.imread(str(out / path.name))
        assert annotated.shape == source.shape
        changed = (annotated != source).any(axis=2)
        square = (source > 180).all(axis=2)
        assert (changed == square).all()  # lossless PNG: exactly the mask pixels are recoloured
    crop_files = sorted(crops.iterdir())
    assert [p.name for p in crop_files] == [f"f{i:06d}_d0_square.png" for i in range(3)]
    crop = cv2.imread(str(crop_files[0]), cv2.IMREAD_UNCHANGED)
    assert crop.shape == (16, 16, 4) and (crop[..., 3] == 255).all()
    assert json.loads(stats.read_text()) == {"frames": 3, "instances_per_class": {"square": 3}, "tracks_per_class": {}}


def test_crops_are_transparent_outside_the_mask(tmp_path):
    from fractions import Fraction

    from rtseg.core.structures import Frame
    from rtseg.sinks.data import CropsSink

    image = np.full((20, 20, 3), 200, np.uint8)
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:10] = True
    mask[5:8, 10:15] = True  # an L shape inside the box 5..15 x 5..15
    detections = Detections(boxes=np.array([[5, 5, 15, 15]], np.float32), scores=np.array([0.9], np.float32),
                            class_ids=np.array([1]), masks=mask[None], class_names=("bg", "traffic light"),
                            track_ids=np.array([12]))
    sink = CropsSink(tmp_path)
    sink.write(Frame(index=4, image=image, pts=4, time_base=Fraction(1), captured_at=0, detections=detections))
    crop = cv2.imread(str(tmp_path / "f000004_t12_traffic-light.png"), cv2.IMREAD_UNCHANGED)
    assert crop.shape == (10, 10, 4)
    assert ((crop[..., 3] == 255) == mask[5:15, 5:15]).all()


def test_glob_and_single_image_sources_through_the_cli(tmp_path):
    from rtseg.cli import main

    _square_images(tmp_path / "in", count=2)
    out = tmp_path / "out"
    jsonl = tmp_path / "all.jsonl"
    assert main(["--source", str(tmp_path / "in" / "*.png"), "--output", str(out), "--save-json", str(jsonl),
                 "--weights", "none", "--size", "64", "--no-show"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["shot_0.png", "shot_1.png"]
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["image"] for r in records] == ["shot_0.png", "shot_1.png"]
    single = tmp_path / "single"
    assert main(["--source", str(tmp_path / "in" / "shot_1.png"), "--output", str(single),
                 "--weights", "none", "--size", "64", "--no-show"]) == 0
    assert [p.name for p in single.iterdir()] == ["shot_1.png"]
    # running again without --overwrite refuses before any work
    assert main(["--source", str(tmp_path / "in" / "shot_1.png"), "--output", str(single),
                 "--weights", "none", "--no-show"]) == 2


def test_animated_gif_is_read_as_video(tmp_path):
    import av

    path = tmp_path / "anim.gif"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("gif", rate=5)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "rgb8"
        for i in range(4):
            frame = av.VideoFrame.from_ndarray(np.full((24, 32, 3), 60 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    jsonl = tmp_path / "gif.jsonl"
    result = process(str(path), Outputs(save_json=jsonl), detector=SquareDetector())
    assert result.summary.frames_written == 4
    assert len(jsonl.read_text().splitlines()) == 4
