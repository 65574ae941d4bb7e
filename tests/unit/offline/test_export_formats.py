"""rtseg export: MOTS (text, PNG), YouTube-VIS and COCO, each read back by an independent reader (TrackEval's
loaders, pycocotools, OpenCV's PNG decoder), masks and ids exact; truncated runs and atomic outputs."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from export_helpers import Seen, box, masks_by_track, write_frames, write_run
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from trackeval.datasets import KittiMOTS, MOTSChallenge, YouTubeVIS

from rtseg.core.errors import DataError, OutputError, UsageError
from rtseg.core.masks import encode_mask
from rtseg.offline.coco import CocoInstances
from rtseg.offline.export_formats import disjoint_masks
from rtseg.offline.exports import export_run, main, parse_class_ids

H, W = 48, 64
PERSON_A = [box(H, W, 0, t, 20, 20 + t) for t in range(4)]
CAR = [box(H, W, 10, 10, 30, 40) for _ in range(4)]  # overlaps the person: the person scores higher
FRAMES = [
    [Seen(1, "person", PERSON_A[0], 0.9), Seen(2, "car", CAR[0], 0.8)],
    [Seen(1, "person", PERSON_A[1], 0.9), Seen(None, "dog", box(H, W, 40, 40, 48, 64))],
    [],
    [Seen(1, "person", PERSON_A[3], 0.7), Seen(2, "car", CAR[3], 0.95), Seen(5, "person", box(H, W, 40, 0, 48, 10))],
]


def _expected_mots() -> dict[tuple[int, int], np.ndarray]:
    """(frame, track) -> the mask MOTS must hold: each pixel goes to the higher-scoring of overlapping masks."""
    expected = {}
    for t, seen in enumerate(FRAMES):
        claimed = np.zeros((H, W), bool)
        for s in sorted((s for s in seen if s.track_id is not None), key=lambda s: -s.score):
            expected[t, s.track_id] = s.mask & ~claimed
            claimed |= s.mask
    return expected


@pytest.fixture()
def run(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run.jsonl", FRAMES, W, H)


def _kitti_loader(gt_dir: Path, tracker_file: Path, frames: int) -> KittiMOTS:
    (gt_dir / "label_02").mkdir(parents=True)
    (gt_dir / "label_02" / "seq.txt").write_text("", encoding="utf-8")
    return KittiMOTS({"GT_FOLDER": str(gt_dir), "TRACKERS_FOLDER": str(tracker_file.parent.parent.parent),
                      "TRACKERS_TO_EVAL": [tracker_file.parent.parent.name], "SEQ_INFO": {"seq": frames},
                      "PRINT_CONFIG": False})


def test_mots_text_is_read_back_by_trackeval_kitti_mots_loader_with_exact_disjoint_masks_and_ids(
        run: Path, tmp_path: Path) -> None:
    out = tmp_path / "trackers" / "rtseg" / "data" / "seq.txt"
    out.parent.mkdir(parents=True)
    summary = export_run(run, "mots", out)
    assert summary["masks"] == 6 and summary["untracked_left_out"] == 1 and summary["skipped_lines"] == 0
    raw = _kitti_loader(tmp_path / "gt", out, 4)._load_raw_file("rtseg", "seq", is_gt=False)  # refuses overlaps
    expected = _expected_mots()
    got = {}
    for t in range(4):
        for mots_id, class_id, rle in zip(raw["tracker_ids"][t], raw["tracker_classes"][t], raw["tracker_dets"][t]):
            assert mots_id // 1000 == class_id and class_id in (1, 3)  # id = class_id * 1000 + instance
            got[t, int(mots_id)] = mask_utils.decode(rle).astype(bool)
    # person track 1 -> 1001, person track 5 -> 1002 (second person), car track 2 -> 3001
    ids = {1: 1001, 5: 1002, 2: 3001}
    assert set(got) == {(t, ids[k]) for t, k in expected}
    for (t, k), mask in expected.items():
        assert np.array_equal(got[t, ids[k]], mask)
    assert not got[0, 3001][10:20, 10:20].any() and got[3, 3001][10:20, 10:20].all()  # overlap to the higher score


def test_mots_challenge_numbering_and_kitti_class_ids(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "trackers" / "rtseg" / "data" / "seq.txt"
    out.parent.mkdir(parents=True)
    export_run(run, "mots", out, first_frame=1, class_ids=parse_class_ids("kitti"))
    (tmp_path / "gt" / "seq" / "gt").mkdir(parents=True)
    (tmp_path / "gt" / "seq" / "gt" / "gt.txt").write_text("", encoding="utf-8")
    loader = MOTSChallenge({"GT_FOLDER": str(tmp_path / "gt"), "TRACKERS_FOLDER": str(tmp_path / "trackers"),
                            "TRACKERS_TO_EVAL": ["rtseg"], "SEQ_INFO": {"seq": 4}, "SKIP_SPLIT_FOL": True,
                            "PRINT_CONFIG": False})
    raw = loader._load_raw_file("rtseg", "seq", is_gt=False)  # timesteps 1..4 in the file
    assert [sorted(ids.tolist()) for ids in raw["tracker_ids"]] == [[1001, 2001], [2001], [], [1001, 2001, 2002]]
    assert [sorted(c.tolist()) for c in raw["tracker_classes"]][3] == [1, 2, 2]  # car 1, person 2


def test_mots_png_holds_each_objects_id_on_its_pixels(run: Path, tmp_path: Path) -> None:
    export_run(run, "mots-png", tmp_path / "png")
    expected = _expected_mots()
    ids = {1: 1001, 5: 1002, 2: 3001}
    for t in range(4):
        image = cv2.imread(str(tmp_path / "png" / f"{t:06d}.png"), cv2.IMREAD_UNCHANGED)
        assert image.dtype == np.uint16 and image.shape == (H, W)
        want = np.zeros((H, W), np.uint16)
        for (frame, k), mask in expected.items():
            if frame == t:
                want[mask] = ids[k]
        assert np.array_equal(image, want)


def test_youtube_vis_zip_is_read_back_by_trackeval_youtube_vis_loader(run: Path, tmp_path: Path) -> None:
    gt_dir = tmp_path / "gt" / "youtube_vis_x"
    tracker_dir = tmp_path / "trackers" / "youtube_vis_x" / "rtseg" / "data"
    gt_dir.mkdir(parents=True)
    tracker_dir.mkdir(parents=True)
    categories = [{"id": 1, "name": "person"}, {"id": 7, "name": "car"}]
    gt = {"videos": [{"id": 3, "width": W, "height": H, "length": 4, "file_names": [f"v/{t}.jpg" for t in range(4)]}],
          "categories": categories, "annotations": []}
    (gt_dir / "gt.json").write_text(json.dumps(gt), encoding="utf-8")
    summary = export_run(run, "youtube-vis", tmp_path / "results.zip", video_id=3,
                         categories={"person": 1, "car": 7})
    assert summary["tracks"] == 3
    with zipfile.ZipFile(tmp_path / "results.zip") as archive:
        assert archive.namelist() == ["results.json"]
        (tracker_dir / "results.json").write_bytes(archive.read("results.json"))
    loader = YouTubeVIS({"GT_FOLDER": str(tmp_path / "gt") + "/", "TRACKERS_FOLDER": str(tmp_path / "trackers") + "/",
                         "SPLIT_TO_EVAL": "x", "PRINT_CONFIG": False})
    raw = loader._load_raw_file("rtseg", "v", is_gt=False)
    tracks = {}  # TrackEval numbers tracks itself: identify them by their first mask
    for t in range(4):
        for track_id, class_id, rle in zip(raw["tracker_ids"][t], raw["tracker_classes"][t], raw["tracker_dets"][t]):
            tracks.setdefault(int(track_id), {})[t] = (int(class_id), mask_utils.decode(rle).astype(bool))
    want = masks_by_track(FRAMES)  # YouTube-VIS keeps masks as they are (overlaps allowed)
    by_run_track = {k: {t: m for (t, kk), m in want.items() if kk == k} for k in (1, 2, 5)}
    assert len(tracks) == 3
    for frames in tracks.values():
        run_track = next(k for k, masks in by_run_track.items() if masks.keys() == frames.keys()
                         and all(np.array_equal(frames[t][1], masks[t]) for t in masks))
        assert {c for c, _ in frames.values()} == {7 if run_track == 2 else 1}
    scores = {round(float(s), 4) for s in raw["classes_to_dt_track_scores"][1]}
    assert scores == {round((0.9 + 0.9 + 0.7) / 3, 4), 0.9}  # mean score of each person track


def test_youtube_vis_track_takes_its_majority_class(tmp_path: Path) -> None:
    frames = [[Seen(4, name, box(H, W, 0, 0, 10, 10))] for name in ("car", "person", "car")]
    export_run(write_run(tmp_path / "r.jsonl", frames, W, H), "youtube-vis", tmp_path / "r.json")
    (track,) = json.loads((tmp_path / "r.json").read_text())
    assert track["category_id"] == 3 and len(track["segmentations"]) == 3


def test_coco_stills_of_every_nth_frame_load_in_pycocotools_and_rtseg_train(run: Path, tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "frames", 4, W, H)
    summary = export_run(run, "coco", tmp_path / "stills", frames=frames, every=2)
    assert summary["images"] == 2 and summary["annotations"] == 2  # frames 0 and 2; frame 2 holds none
    coco = COCO(str(tmp_path / "stills" / "annotations.json"))
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} == {"person", "car"}
    for ann in coco.loadAnns(coco.getAnnIds()):
        assert coco.imgs[ann["image_id"]]["frame"] == 0
        assert np.array_equal(coco.annToMask(ann).astype(bool), {1: PERSON_A[0], 2: CAR[0]}[ann["track_id"]])
    image = cv2.imread(str(tmp_path / "stills" / "images" / "frame_000002.jpg"))
    assert image.shape == (H, W, 3) and abs(int(image.mean()) - 20) <= 2
    dataset = CocoInstances(tmp_path / "stills" / "annotations.json", tmp_path / "stills" / "images")
    assert len(dataset) == 2 and dataset[0][1]["masks"].shape == (2, H, W)


def test_a_truncated_run_exports_every_complete_line_and_counts_the_rest(run: Path, tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    with run.open("a", encoding="utf-8") as out:
        out.write('{"frame": 4, "width": 64, "height": 48, "instances": [{"track_id": 1, "cla')
    summary = export_run(run, "mots", tmp_path / "out.txt")
    assert summary["skipped_lines"] == 1 and summary["frames"] == 4
    assert "skipped 1 incomplete or malformed line(s)" in caplog.text and "line 5" in caplog.text
    assert len((tmp_path / "out.txt").read_text().splitlines()) == 6


def test_nothing_appears_under_the_final_name_when_an_export_fails(run: Path, tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "frames", 4, W + 2, H)  # the wrong size: fails after the first image
    with pytest.raises(DataError, match="frame 0 of .* is 66x48, the run's frames are 64x48"):
        export_run(run, "coco", tmp_path / "stills", frames=frames)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "run.jsonl"]


def test_bad_usage_is_one_line(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "taken.txt").write_text("x")
    with pytest.raises(OutputError, match="exists"):
        main([str(run), "--format", "mots", "--output", str(tmp_path / "taken.txt")])
    with pytest.raises(UsageError, match="--frames"):
        main([str(run), "--format", "coco", "--output", str(tmp_path / "c")])
    with pytest.raises(UsageError, match="name=id pairs"):
        parse_class_ids("person:2")
    with pytest.raises(DataError, match="holds no frame record"):
        export_run(write_run(tmp_path / "empty.jsonl", [], W, H), "mots", tmp_path / "e.txt")
    assert main([str(run), "--format", "mots", "--output", str(tmp_path / "ok.txt")]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {tmp_path / 'ok.txt'} (mots): frames 4, ")


def test_overlap_removal_in_rle_equals_the_pixel_rule_on_random_masks() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        masks = [rng.random((h, w)) < rng.random() for _ in range(3)]
        frame = [{"score": s, "mask": encode_mask(m), "name": k}
                 for k, (s, m) in enumerate(zip(rng.random(3), masks))]
        claimed = np.zeros((h, w), bool)
        want = {}
        for inst in sorted(frame, key=lambda i: -i["score"]):
            want[inst["name"]] = masks[inst["name"]] & ~claimed
            claimed |= masks[inst["name"]]
        got = {inst["name"]: mask_utils.decode(rle).astype(bool) for inst, rle in disjoint_masks(frame)}
        assert got.keys() == {k for k, m in want.items() if m.any()}
        assert all(np.array_equal(got[k], want[k]) for k in got)
