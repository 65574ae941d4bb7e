"""A run's JSON Lines as MOTS (text and PNG), YouTube-VIS results and COCO instances.

Each writer reads the run once, as a stream (:class:`rtseg.offline.export_io.RunReader`), and writes to the
path it is given (a temporary one: :func:`rtseg.offline.exports.export_run` renames it when whole).

Rules the formats impose, applied here:
  - MOTS masks of a frame never overlap (KITTI-MOTS and MOTSChallenge loaders refuse overlaps): a pixel
    two masks claim goes to the higher-scoring one; a mask left empty is dropped
  - MOTS ``id = class_id * 1000 + instance``: the n-th (track, class) pair of a class is instance n; a track
    whose class changes becomes a new MOTS object (the run showed it so); past 999 instances of a class the
    count carries into the millions (``id % 1000`` and ``id // 1000 % 1000`` stay instance and class)
  - MOTS, YouTube-VIS and CVAT hold tracks: detections without a confirmed track id are left out (counted);
    COCO holds stills and keeps them
  - YouTube-VIS: one entry per track, a mask or null per frame, the category the track showed most often
    (the first seen among equals) and its mean score
"""

from __future__ import annotations

import contextlib
import io
import json
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, NamedTuple

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from rtseg.core.errors import DataError, OutputError
from rtseg.core.masks import coco_rle
from rtseg.offline.export_io import FrameSource, RunReader, TrackStore
from rtseg.sinks.data import write_image

KITTI_CLASS_IDS: dict[str, int] = {"car": 1, "person": 2, "pedestrian": 2}  # KITTI-MOTS / MOTSChallenge ids
INSTANCES_PER_CLASS = 1000


def rle_runs(counts: str) -> np.ndarray:
    """The run lengths (0s first, column-major) of a compressed COCO RLE string (:func:`rle_runs_batch`)."""
    return rle_runs_batch([counts])[0]


def rle_runs_batch(counts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(the run lengths of all the compressed COCO RLE strings, one after another; where each string's runs
    start, and after the last, its end), decoded as pycocotools' ``rleFrString`` does: 5 bits a character, a
    continuation bit, sign extension, runs after the second as differences from the run two before. Vectorised
    over characters and strings alike; a string that ends inside a number is refused."""
    lengths = np.fromiter(map(len, counts), np.int64, len(counts))
    char_bounds = np.concatenate(([0], np.cumsum(lengths)))
    chars = np.frombuffer("".join(counts).encode("ascii"), np.uint8).astype(np.int64) - 48
    last = (chars & 0x20) == 0
    ends = np.flatnonzero(last)
    if not last[char_bounds[1:][lengths > 0] - 1].all():
        raise ValueError("a COCO RLE string ends inside a number")
    starts = np.concatenate(([0], ends + 1))[:-1]
    widths = ends - starts + 1
    if widths.size and widths.max() > 12:
        raise ValueError("a COCO RLE string holds a number of over 60 bits")
    shift = 5 * (np.arange(chars.size) - np.repeat(starts, widths))
    deltas = np.add.reduceat((chars & 0x1F) << shift, starts) if ends.size else np.zeros(0, np.int64)
    deltas -= ((chars[ends] & 0x10) != 0).astype(np.int64) << (5 * widths)
    bounds = np.searchsorted(ends, char_bounds)
    local = np.arange(ends.size) - np.repeat(bounds[:-1], np.diff(bounds))
    odd = (local & 1) == 1
    runs = deltas.copy()
    for parity in (odd, ~odd & (local > 0)):  # runs two apart add up, separately for odd and even positions
        total = np.cumsum(np.where(parity, deltas, 0))
        before = np.concatenate(([0], total))[bounds[:-1]]
        runs[parity] = (total - np.repeat(before, np.diff(bounds)))[parity]
    return runs, bounds


def _toggles(runs: np.ndarray) -> np.ndarray:
    """Positions at which a run-length-encoded binary sequence changes value (a 1 at 0 toggles at 0)."""
    ends = np.cumsum(runs)[:-1]
    return ends[runs[1:] > 0] if runs.size > 1 else ends


def _subtract(rle: dict[str, Any], inside: dict[str, Any]) -> dict[str, Any]:
    """``rle`` less ``inside`` (a part of it), in RLE: a mask less a part of it is their exclusive or, whose
    value changes exactly where one of them changes. No pixel is decoded."""
    height, width = rle["size"]
    changes = np.setxor1d(_toggles(rle_runs(rle["counts"].decode("ascii"))),
                          _toggles(rle_runs(inside["counts"].decode("ascii"))))
    runs = np.diff(np.concatenate(([0], changes, [height * width])))
    out: dict[str, Any] = mask_utils.frPyObjects({"counts": runs.tolist(), "size": [height, width]}, height, width)
    return out


def disjoint_masks(instances: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(instance, pycocotools RLE) of each instance, highest score first, overlaps given to the higher score and
    emptied masks dropped. Only masks whose boxes touch are compared; all of it in RLE, nothing decoded."""
    ordered = sorted(instances, key=lambda inst: -float(inst["score"]))
    rles = [coco_rle(inst["mask"]) for inst in ordered]
    if len(rles) > 1:
        boxes = mask_utils.toBbox(rles)
        x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 0] + boxes[:, 2], boxes[:, 1] + boxes[:, 3]
        touch = ((x1[:, None] < x2[None]) & (x1[None] < x2[:, None]) & (y1[:, None] < y2[None])
                 & (y1[None] < y2[:, None]))
        for k in range(1, len(rles)):
            earlier = [rles[j] for j in np.flatnonzero(touch[k, :k])]
            if not earlier:
                continue
            claimed = mask_utils.merge(earlier) if len(earlier) > 1 else earlier[0]
            shared = mask_utils.merge([rles[k], claimed], intersect=True)
            if mask_utils.area(shared) > 0:
                rles[k] = _subtract(rles[k], shared)
    return [(inst, rle) for inst, rle in zip(ordered, rles) if mask_utils.area(rle) > 0]


class MotsIds:
    """MOTS object ids of (track, class) pairs: ``class_id * 1000 + n`` for the n-th pair of its class."""

    def __init__(self) -> None:
        self._ids: dict[tuple[int, int], int] = {}
        self._count: Counter[int] = Counter()

    def __call__(self, track_id: int, class_id: int) -> int:
        key = (track_id, class_id)
        if key not in self._ids:
            self._count[class_id] += 1
            n = self._count[class_id]
            carry, instance = divmod(n, INSTANCES_PER_CLASS)
            self._ids[key] = carry * INSTANCES_PER_CLASS ** 2 + class_id * INSTANCES_PER_CLASS + instance
        return self._ids[key]


class Tally:
    """What an export left out, said in its summary."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.unknown_classes: set[str] = set()

    def summary(self) -> dict[str, Any]:
        return {**self.counts, "unknown_classes": sorted(self.unknown_classes)}


def _mots_instances(record: dict[str, Any], class_ids: Mapping[str, int] | None,
                    tally: Tally) -> list[tuple[dict[str, Any], dict[str, Any], int]]:
    """(instance, disjoint RLE, MOTS class id) of the tracked instances of ``record`` that the class map keeps."""
    kept = []
    for inst in record["instances"]:
        if inst["track_id"] is None:
            tally.counts["untracked_left_out"] += 1
        elif class_ids is not None and inst["class_name"] not in class_ids:
            tally.counts["other_classes_left_out"] += 1
            tally.unknown_classes.add(inst["class_name"])
        else:
            kept.append(inst)
    pairs = disjoint_masks(kept)
    tally.counts["emptied_by_overlap"] += len(kept) - len(pairs)
    return [(inst, rle, int(inst["class_id"]) if class_ids is None else class_ids[inst["class_name"]])
            for inst, rle in pairs]


class MotsLine(NamedTuple):
    """One line of MOTS text, its frame counted from 0."""

    number: int  # line number in the file
    frame: int
    object_id: int
    class_id: int
    height: int
    width: int
    counts: str


def read_mots_lines(path: Path, first_frame: int) -> Iterator[MotsLine]:
    """The lines of a MOTS text file (``first_frame``: the file's first frame number), one DataError line for
    one that is not ``frame id class_id height width rle`` or numbers a frame before the first."""
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 6 or not all(f.isdigit() for f in fields[:5]):
                    raise DataError(f"{path} line {number} is not MOTS text (frame id class_id height width rle)")
                frame, object_id, class_id, height, width = (int(f) for f in fields[:5])
                if frame < first_frame:
                    raise DataError(f"{path} line {number}: frame {frame} is before the first frame ({first_frame}; "
                                    "MOTSChallenge counts from 1: --first-frame 1)")
                yield MotsLine(number, frame - first_frame, object_id, class_id, height, width, fields[5])
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read MOTS file {path}: {exc}") from exc


def write_mots(reader: RunReader, out: IO[str], first_frame: int = 0,
               class_ids: Mapping[str, int] | None = None) -> dict[str, Any]:
    """MOTS text: ``frame id class_id height width rle`` per tracked mask, frames counted from ``first_frame``
    (0: KITTI-MOTS, 1: MOTSChallenge); ``class_ids`` maps class names to MOTS class ids (None: the run's ids)."""
    ids, tally = MotsIds(), Tally()
    for record in reader:
        lines = []
        for inst, rle, class_id in _mots_instances(record, class_ids, tally):
            height, width = rle["size"]
            lines.append(f"{record['frame'] + first_frame} {ids(int(inst['track_id']), class_id)} {class_id} "
                         f"{height} {width} {rle['counts'].decode('ascii')}\n")
        out.write("".join(lines))
        tally.counts["masks"] += len(lines)
    return {"frames": reader.records, **tally.summary()}


def write_mots_png(reader: RunReader, folder: Path, first_frame: int = 0,
                   class_ids: Mapping[str, int] | None = None) -> dict[str, Any]:
    """MOTS PNG: one 16-bit PNG per frame, ``{frame:06d}.png``, each pixel its object's MOTS id, 0 background."""
    folder.mkdir()
    ids, tally = MotsIds(), Tally()
    for record in reader:
        image = np.zeros((int(record["height"]), int(record["width"])), np.uint16)
        for inst, rle, class_id in _mots_instances(record, class_ids, tally):
            mots_id = ids(int(inst["track_id"]), class_id)
            if mots_id > np.iinfo(np.uint16).max:
                raise DataError(f"MOTS id {mots_id} does not fit a 16-bit PNG (track {inst['track_id']}, frame "
                                f"{record['frame']}); export --format mots instead")
            image[mask_utils.decode(rle).astype(bool)] = mots_id
            tally.counts["masks"] += 1
        path = folder / f"{record['frame'] + first_frame:06d}.png"
        if not cv2.imwrite(str(path), image):
            raise OutputError(f"cannot write image {path}")
    return {"frames": reader.records, **tally.summary()}


class TrackVotes:
    """Per track: how often it showed each class, and its scores; per class name, the run's class id."""

    def __init__(self) -> None:
        self.classes: dict[int, Counter[str]] = defaultdict(Counter)
        self.scores: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
        self.class_id_of: dict[str, int] = {}
        self.frames = 0

    def read(self, reader: RunReader, store: TrackStore, tally: Tally) -> None:
        for record in reader:
            rows = []
            for inst in record["instances"]:
                if inst["track_id"] is None:
                    tally.counts["untracked_left_out"] += 1
                    continue
                track = int(inst["track_id"])
                self.classes[track][inst["class_name"]] += 1
                self.scores[track][0] += float(inst["score"])
                self.scores[track][1] += 1
                self.class_id_of.setdefault(inst["class_name"], int(inst["class_id"]))
                rows.append((track, int(record["frame"]), inst["mask"]["counts"]))
            store.add(rows)
            self.frames = max(self.frames, int(record["frame"]) + 1)

    def label(self, track: int) -> str:
        """The class the track showed most often (the first seen among equals)."""
        return self.classes[track].most_common(1)[0][0]

    def score(self, track: int) -> float:
        total, count = self.scores[track]
        return round(total / count, 4)


def write_youtube_vis(reader: RunReader, path: Path, scratch: Path, video_id: int = 1,
                      categories: Mapping[str, int] | None = None, zipped: bool = False) -> dict[str, Any]:
    """YouTube-VIS results: a JSON list of ``{video_id, category_id, score, segmentations}``, one per track,
    ``segmentations`` a COCO RLE or null per frame; ``categories`` maps class names to the benchmark's category
    ids (None: the run's class ids). ``zipped``: ``path`` is a zip holding ``results.json``, as the server takes."""
    store, votes, tally = TrackStore(scratch), TrackVotes(), Tally()
    try:
        votes.read(reader, store, tally)
        size = [reader.height, reader.width]
        with (zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) if zipped else contextlib.nullcontext()) as archive:
            raw = archive.open("results.json", "w") if archive else path.open("wb")
            with io.TextIOWrapper(raw, encoding="utf-8") as out:
                out.write("[")
                first = True
                for track, frames in store.tracks():
                    name = votes.label(track)
                    if categories is not None and name not in categories:
                        tally.counts["tracks_of_other_classes_left_out"] += 1
                        tally.unknown_classes.add(name)
                        continue
                    segmentations: list[dict[str, Any] | None] = [None] * votes.frames
                    for frame, counts in frames:
                        segmentations[frame] = {"size": size, "counts": counts}
                    entry = {"video_id": video_id, "score": votes.score(track),
                             "category_id": votes.class_id_of[name] if categories is None else categories[name],
                             "segmentations": segmentations}
                    out.write(("" if first else ",\n") + json.dumps(entry, separators=(",", ":")))
                    first = False
                    tally.counts["tracks"] += 1
                out.write("]\n")
    finally:
        store.close()
    return {"frames": votes.frames, **tally.summary()}


def write_coco(reader: RunReader, folder: Path, frames: FrameSource, every: int = 1,
               image_suffix: str = ".jpg") -> dict[str, Any]:
    """COCO instances of every ``every``-th frame in ``folder/annotations.json``, the frames as images in
    ``folder/images/`` (a still's own name, else ``frame_NNNNNN.jpg``). Category ids are the run's class ids;
    each annotation also keeps the detection's ``score`` and ``track_id`` (COCO readers ignore them)."""
    images_dir = folder / "images"
    images_dir.mkdir(parents=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    categories: dict[int, str] = {}
    for record in reader:
        index = int(record["frame"])
        if index % every:
            continue
        width, height = int(record["width"]), int(record["height"])
        name = record.get("image") or f"frame_{index:06d}{image_suffix}"
        write_image(images_dir / name, frames.frame(index, width, height, record.get("image")))
        images.append({"id": len(images) + 1, "file_name": name, "width": width, "height": height, "frame": index})
        for inst in record["instances"]:
            rle = coco_rle(inst["mask"])
            categories.setdefault(int(inst["class_id"]), inst["class_name"])
            annotations.append({"id": len(annotations) + 1, "image_id": len(images),
                                "category_id": int(inst["class_id"]), "segmentation": inst["mask"],
                                "area": int(mask_utils.area(rle)),
                                "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": 0,
                                "score": inst["score"], "track_id": inst["track_id"]})
    data = {"info": {"description": f"rtseg run {reader.path.name}, every {every} frame(s)"}, "images": images,
            "annotations": annotations,
            "categories": [{"id": c, "name": n, "supercategory": ""} for c, n in sorted(categories.items())]}
    (folder / "annotations.json").write_text(json.dumps(data), encoding="utf-8")
    return {"frames": reader.records, "images": len(images), "annotations": len(annotations)}
