"""Score a run's mask tracks against MOTS or YouTube-VIS ground truth with TrackEval's own code.

    python -m rtseg.offline.eval_masks run.jsonl --gt gt.txt                       MOTS text, frames from 0
    python -m rtseg.offline.eval_masks run.jsonl --gt MOTS20-02.txt --first-frame 1 --gt-classes 2=person
    python -m rtseg.offline.eval_masks run.jsonl --gt valid.json --video-id 3 --save report.json

Figures, per class and over all classes (detections pooled, "overall", and the mean of the classes,
"class_mean"): HOTA with DetA, AssA and LocA (means over TrackEval's 19 IoU thresholds), MOTSA and sMOTSA
(TrackEval's CLEAR MOTA and sMOTA on mask IoU), IDF1, ID switches, and the counts behind them.

The run is exported as the ground truth's own format (:mod:`rtseg.offline.export_formats`: MOTS masks made
disjoint, YouTube-VIS tracks with their majority class) into a scratch folder, and TrackEval's KITTI-MOTS or
YouTube-VIS dataset loads both files, matches and scores them: the numbers are TrackEval's. MOTS classes are
matched by name (``--gt-classes``, default: the ids the run itself gave its classes); run classes the ground
truth lacks are left out. A MOTS ground truth ``class_id`` 10 is an ignore region, as in KITTI-MOTS.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from rtseg.core.commandline import ArgumentParser, run_command
from rtseg.core.errors import DataError, OutputError, UsageError
from rtseg.offline.export_formats import read_mots_lines, write_mots, write_youtube_vis
from rtseg.offline.export_io import RunReader, atomic_output

IGNORE_CLASS = 10  # KITTI-MOTS: an ignore region
SEQUENCE = "run"
KITTI_GT_CLASSES = {1: "car", 2: "person"}


def _mots_gt(path: Path, out: Path, first_frame: int, width: int, height: int) -> tuple[int, set[int]]:
    """Copy a MOTS ground truth to ``out`` with frames from 0, checking its frame size; (frames, class ids)."""
    last, classes = -1, set()
    with out.open("w", encoding="utf-8") as copy:
        for line in read_mots_lines(path, first_frame):
            if (line.width, line.height) != (width, height):
                raise DataError(f"the ground truth's frames are {line.width}x{line.height} ({path} line "
                                f"{line.number}), the run's {width}x{height}")
            last = max(last, line.frame)
            if line.class_id != IGNORE_CLASS:
                classes.add(line.class_id)
            copy.write(f"{line.frame} {line.object_id} {line.class_id} {line.height} {line.width} {line.counts}\n")
    return last + 1, classes


def _scan_run(reader: RunReader) -> tuple[int, dict[str, int]]:
    """(frames, class name -> the run's class id) of a run."""
    frames = 0
    ids: dict[str, int] = {}
    for record in reader:
        frames = max(frames, int(record["frame"]) + 1)
        for inst in record["instances"]:
            ids.setdefault(inst["class_name"], int(inst["class_id"]))
    return frames, ids


def _kitti_mots_dataset(root: Path, frames: int, classes: dict[int, str]) -> Any:
    """TrackEval's KITTI-MOTS dataset over one sequence, with ``classes`` (id -> name) instead of car/pedestrian."""
    from trackeval.datasets import KittiMOTS  # a development extra: only evaluations need it

    dataset = KittiMOTS({"GT_FOLDER": str(root / "gt"), "TRACKERS_FOLDER": str(root / "trackers"),
                         "TRACKERS_TO_EVAL": ["rtseg"], "SEQ_INFO": {SEQUENCE: frames}, "PRINT_CONFIG": False,
                         "CLASSES_TO_EVAL": ["car"]})
    # The loader keeps its class table in these attributes; pointing them at ours is all it takes to score
    # any classes (its preprocessing, matching and ignore regions are untouched).
    dataset.valid_classes = dataset.class_list = list(classes.values())
    dataset.class_name_to_class_id = {name: str(i) for i, name in classes.items()} | {"ignore": str(IGNORE_CLASS)}
    dataset.should_classes_combine = True
    return dataset


def _youtube_vis_dataset(root: Path) -> Any:
    from trackeval.datasets import YouTubeVIS  # a development extra: only evaluations need it

    return YouTubeVIS({"GT_FOLDER": str(root / "gt") + "/", "TRACKERS_FOLDER": str(root / "trackers") + "/",
                       "SPLIT_TO_EVAL": "run", "TRACKERS_TO_EVAL": ["rtseg"], "PRINT_CONFIG": False})


def _figures(result: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The reported figures of one class's (or a combination's) TrackEval results."""
    hota, clear, ident = result["HOTA"], result["CLEAR"], result["Identity"]
    return {"HOTA": float(np.mean(hota["HOTA"])), "DetA": float(np.mean(hota["DetA"])),
            "AssA": float(np.mean(hota["AssA"])), "LocA": float(np.mean(hota["LocA"])),
            "MOTSA": float(clear["MOTA"]), "sMOTSA": float(clear["sMOTA"]), "IDF1": float(ident["IDF1"]),
            "ID_switches": int(clear["IDSW"]), "TP": int(clear["CLR_TP"]), "FN": int(clear["CLR_FN"]),
            "FP": int(clear["CLR_FP"]), "IDTP": int(ident["IDTP"]), "IDFN": int(ident["IDFN"]),
            "IDFP": int(ident["IDFP"])}


def _score(dataset: Any) -> dict[str, Any]:
    """TrackEval's HOTA, CLEAR and Identity over the dataset's one sequence, per class and combined."""
    from trackeval.eval import eval_sequence
    from trackeval.metrics import CLEAR, HOTA, Identity

    with contextlib.redirect_stdout(io.StringIO()):
        metrics = [HOTA(), CLEAR({"PRINT_CONFIG": False}), Identity({"PRINT_CONFIG": False})]
        names = [m.get_name() for m in metrics]
        seq = dataset.seq_list[0]
        per_class = eval_sequence(seq, dataset, "rtseg", dataset.class_list, metrics, names)
        combined = {m.get_name(): {cls: m.combine_sequences({seq: per_class[cls][m.get_name()]})
                                   for cls in dataset.class_list} for m in metrics}
        overall = {name: m.combine_classes_det_averaged(combined[name]) for m, name in zip(metrics, names)}
        class_mean = {name: m.combine_classes_class_averaged(combined[name]) for m, name in zip(metrics, names)}
    return {"overall": _figures(overall), "class_mean": _figures(class_mean),
            "per_class": {cls: _figures({name: combined[name][cls] for name in names}) for cls in dataset.class_list}}


def evaluate_mots(run: str | Path, ground_truth: str | Path, first_frame: int = 0,
                  gt_classes: dict[int, str] | None = None) -> dict[str, Any]:
    """Score ``run`` against a MOTS text ground truth (``first_frame``: 0 KITTI-MOTS, 1 MOTSChallenge);
    ``gt_classes`` names its class ids (None: the ids the run gave its classes)."""
    reader = RunReader(run)
    run_frames, run_ids = _scan_run(reader)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        (root / "gt" / "label_02").mkdir(parents=True)
        (root / "trackers" / "rtseg" / "data").mkdir(parents=True)
        gt_frames, gt_ids = _mots_gt(Path(ground_truth), root / "gt" / "label_02" / f"{SEQUENCE}.txt", first_frame,
                                     reader.width, reader.height)
        names = gt_classes if gt_classes is not None else {i: n for n, i in run_ids.items()}
        classes = {i: names.get(i, f"class {i}") for i in sorted(gt_ids)}
        if not classes:
            raise DataError(f"{ground_truth} holds no object (only ignore regions, or nothing)")
        with (root / "trackers" / "rtseg" / "data" / f"{SEQUENCE}.txt").open("w", encoding="utf-8") as out:
            summary = write_mots(reader, out, 0, {name: i for i, name in classes.items()})
        report = _score(_kitti_mots_dataset(root, max(run_frames, gt_frames), classes))
    report.update(ground_truth=str(ground_truth), format="mots", run=str(run), frames=max(run_frames, gt_frames),
                  run_classes_left_out=summary["unknown_classes"], skipped_lines=reader.skipped)
    return report


def evaluate_youtube_vis(run: str | Path, ground_truth: str | Path, video_id: int | None = None) -> dict[str, Any]:
    """Score ``run`` against one video (``video_id``; None: the only one) of a YouTube-VIS ground truth JSON;
    classes are matched by name."""
    try:
        gt = json.loads(Path(ground_truth).read_text(encoding="utf-8"))
        videos = {int(v["id"]): v for v in gt["videos"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"cannot read YouTube-VIS ground truth {ground_truth}: {exc}") from exc
    if video_id is None:
        if len(videos) != 1:
            raise UsageError(f"{ground_truth} holds {len(videos)} videos: say which with --video-id")
        video_id = next(iter(videos))
    if video_id not in videos:
        raise DataError(f"{ground_truth} has no video {video_id} (it has {', '.join(map(str, sorted(videos)))})")
    video = videos[video_id]
    reader = RunReader(run)
    run_frames, _ = _scan_run(reader)
    if (int(video["width"]), int(video["height"])) != (reader.width, reader.height):
        raise DataError(f"the ground truth's video {video_id} is {video['width']}x{video['height']}, the run's frames "
                        f"{reader.width}x{reader.height}")
    length = len(video["file_names"])
    if run_frames > length:
        raise DataError(f"the run has {run_frames} frames, the ground truth's video {video_id} {length}")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        gt_dir, tracker_dir = root / "gt" / "youtube_vis_run", root / "trackers" / "youtube_vis_run" / "rtseg" / "data"
        gt_dir.mkdir(parents=True)
        tracker_dir.mkdir(parents=True)
        # YouTube-VIS annotations repeat their video's size; TrackEval reads it there, so fill it in where missing.
        annotations = [{"height": video["height"], "width": video["width"], **a} for a in gt["annotations"]
                       if a["video_id"] == video_id]
        one = {**gt, "videos": [video], "annotations": annotations}
        (gt_dir / "gt.json").write_text(json.dumps(one), encoding="utf-8")
        categories = {c["name"]: int(c["id"]) for c in gt["categories"]}
        summary = write_youtube_vis(reader, tracker_dir / "results.json", root, video_id, categories)
        if run_frames < length:  # every track's list must span the video
            _pad(tracker_dir / "results.json", length)
        report = _score(_youtube_vis_dataset(root))
    report.update(ground_truth=str(ground_truth), format="youtube-vis", video_id=video_id, run=str(run),
                  frames=length, run_classes_left_out=summary["unknown_classes"], skipped_lines=reader.skipped)
    return report


def _pad(path: Path, length: int) -> None:
    tracks = json.loads(path.read_text(encoding="utf-8"))
    for track in tracks:
        track["segmentations"] += [None] * (length - len(track["segmentations"]))
    path.write_text(json.dumps(tracks), encoding="utf-8")


def synthetic_truth_as_mots(truth: dict[str, Any], out: Path, min_visible: float = 0.5) -> dict[int, str]:
    """Write the ground truth of a synthetic video (:func:`rtseg.offline.synthetic.write_video`) as MOTS text
    (frames from 0, ``id = category * 1000 + track``); shapes less visible than ``min_visible`` become ignore
    regions (don't care, as in :mod:`rtseg.offline.eval_pipeline`). Returns its class ids' names."""
    with out.open("w", encoding="utf-8") as mots:
        for frame in truth["frames"]:
            for inst in frame["instances"]:
                class_id = inst["category_id"] if inst["visible_fraction"] >= min_visible else IGNORE_CLASS
                rle = inst["segmentation"]
                mots.write(f"{frame['frame_index']} {class_id * 1000 + inst['track_id']} {class_id} "
                           f"{rle['size'][0]} {rle['size'][1]} {rle['counts']}\n")
    return {int(c["id"]): str(c["name"]) for c in truth["categories"]}


def parse_gt_classes(text: str) -> dict[int, str]:
    """``kitti`` (1 car, 2 person) or ``id=name`` pairs."""
    if text == "kitti":
        return dict(KITTI_GT_CLASSES)
    classes = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        number, _, name = item.partition("=")
        if not number.strip().isdigit() or not name.strip():
            raise UsageError(f"--gt-classes takes 'kitti' or id=name pairs (2=person,1=car), got {item!r}")
        classes[int(number)] = name.strip()
    return classes


def format_report(report: dict[str, Any]) -> str:
    """A table: one row per class, then the pooled and the class-mean rows."""
    keys = ("HOTA", "DetA", "AssA", "LocA", "MOTSA", "sMOTSA", "IDF1")
    lines = [f"{'':14}" + "".join(f"{k:>8}" for k in keys) + f"{'IDSW':>6}{'TP':>7}{'FN':>7}{'FP':>7}"]
    rows = [*report["per_class"].items(), ("overall", report["overall"]), ("class mean", report["class_mean"])]
    for name, r in rows:
        lines.append(f"{name[:14]:<14}" + "".join(f"{r[k]:>8.3f}" for k in keys)
                     + f"{r['ID_switches']:>6}{r['TP']:>7}{r['FN']:>7}{r['FP']:>7}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="rtseg evaluate-tracks", description="Score a run's mask tracks "
                            "(rtseg --save-json) against MOTS or YouTube-VIS ground truth: HOTA, DetA, AssA, LocA, "
                            "MOTSA, sMOTSA, IDF1, ID switches (TrackEval).", epilog=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="the JSON Lines file rtseg --save-json wrote")
    parser.add_argument("--gt", required=True, help="ground truth: MOTS text (.txt) or YouTube-VIS JSON (.json)")
    parser.add_argument("--first-frame", type=int, default=0, choices=(0, 1),
                        help="MOTS: number of the ground truth's first frame (0 KITTI-MOTS, default; 1 MOTSChallenge)")
    parser.add_argument("--gt-classes", help="MOTS: 'kitti' (1 car, 2 person) or id=name pairs naming the ground "
                        "truth's class ids (default: the ids the run gave its classes)")
    parser.add_argument("--video-id", type=int, help="YouTube-VIS: the video the run shows (default: the only one)")
    parser.add_argument("--save", help="also write the report to this JSON file")
    return parser


def main(argv: list[str]) -> int:
    """Command line entry: score, print the table, optionally save the report."""
    args = _parser().parse_args(argv)
    save = Path(args.save) if args.save else None
    if save is not None and not save.parent.is_dir():
        raise OutputError(f"cannot save the report: folder {save.parent} does not exist")
    if Path(args.gt).suffix.lower() == ".json":
        report = evaluate_youtube_vis(args.run, args.gt, args.video_id)
    else:
        gt_classes = parse_gt_classes(args.gt_classes) if args.gt_classes else None
        report = evaluate_mots(args.run, args.gt, args.first_frame, gt_classes)
    print(format_report(report))
    if report["skipped_lines"]:
        print(f"skipped {report['skipped_lines']} incomplete or malformed line(s) of the run")
    if save is not None:
        with atomic_output(save, overwrite=True) as temporary:
            temporary.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"saved {save}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, sys.argv[1:]))
