"""``rtseg import``: corrected labels (CVAT XML, MOTS text) with their frames, as the COCO data ``rtseg train`` reads.

    rtseg import corrected.xml --frames clip.mp4 --output data/clip/
    rtseg import corrected.xml --frames clip.mp4 --classes person,car --output data/clip/
    rtseg import gt.txt --frames frames/ --gt-classes kitti --output data/kitti/
    rtseg train --data data/clip/annotations.json --images data/clip/images --val-data ... --output-dir runs/clip

Writes ``OUTPUT/annotations.json`` (COCO instances, masks as COCO RLE) and ``OUTPUT/images/`` (the frames that
hold at least one object, ``frame_NNNNNN.jpg``), under a temporary name until complete.

CVAT: "CVAT for video 1.1" (``<track>``) and "CVAT for images 1.1" (``<image>``) XML; every ``mask`` and
``polygon`` that is not ``outside`` is an object in its frame (CVAT's video export lists every frame of a
track, interpolated ones included); boxes, lines and points carry no mask and are counted, not imported.
MOTS: ``frame id class_id height width rle`` lines; class 10 (ignore regions) are left out.

Classes are matched by name, case aside: ``--classes`` gives the category list (ids 1, 2, ... in that order;
give a model's classes to fine-tune it); without it, the CVAT file's labels (or the MOTS classes) are taken as
they come. A label that is not among the classes is one line naming it, its object and frame.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from pycocotools import mask as mask_utils

from rtseg.core.commandline import ArgumentParser, run_command
from rtseg.core.errors import DataError, UsageError
from rtseg.core.masks import encode_mask
from rtseg.offline.eval_masks import IGNORE_CLASS, KITTI_GT_CLASSES, parse_gt_classes
from rtseg.offline.export_cvat import decode_cvat_rle
from rtseg.offline.export_formats import read_mots_lines
from rtseg.offline.export_io import FrameSource, atomic_output
from rtseg.sinks.data import write_image

_NO_MASK = ("box", "polyline", "points", "ellipse", "cuboid", "skeleton")


class _Label:
    """One imported object: its frame, class name, a COCO RLE and where it came from (for error lines)."""

    def __init__(self, frame: int, name: str, rle: dict[str, Any], origin: str) -> None:
        self.frame, self.name, self.rle, self.origin = frame, name, rle, origin


def _polygon(points: str, width: int, height: int) -> dict[str, Any]:
    xy = [float(v) for pair in points.split(";") for v in pair.split(",")]
    rle = mask_utils.merge(mask_utils.frPyObjects([xy], height, width))
    return encode_mask(mask_utils.decode(rle).astype(bool))


def read_cvat(path: Path, counts: dict[str, int]) -> tuple[list[str], int, int, Iterator[_Label]]:
    """(labels declared in the meta, frame width, height, the objects) of a CVAT 1.1 XML file, parsed as a stream."""
    try:
        events = ElementTree.iterparse(str(path), events=("start", "end"))
        labels: list[str] = []
        width = height = 0
        for event, el in events:
            if event == "end" and el.tag == "label" and el.findtext("name"):
                labels.append(str(el.findtext("name")))
            elif event == "end" and el.tag == "original_size":
                width, height = int(el.findtext("width") or 0), int(el.findtext("height") or 0)
            elif event == "end" and el.tag == "meta":
                break
            elif event == "start" and el.tag in ("track", "image"):
                raise DataError(f"{path} has no <meta> before its annotations: not a CVAT 1.1 export")
    except (OSError, ElementTree.ParseError, ValueError) as exc:
        raise DataError(f"cannot read CVAT XML {path}: {exc}") from exc

    def objects() -> Iterator[_Label]:
        track: dict[str, str] | None = None
        image: dict[str, str] | None = None
        try:
            for event, el in events:
                if event == "start" and el.tag == "track":
                    track = dict(el.attrib)
                elif event == "start" and el.tag == "image":
                    image = dict(el.attrib)
                elif event == "end" and el.tag in ("track", "image"):
                    track = image = None
                    el.clear()
                elif event == "end" and (track is not None or image is not None) and el.tag in ("mask", "polygon"):
                    if el.get("outside", "0") == "1":
                        continue
                    frame = int(el.get("frame") if track is not None else image["id"])  # type: ignore[index]
                    name = track["label"] if track is not None else el.get("label", "")
                    w = int(image["width"]) if image is not None else width
                    h = int(image["height"]) if image is not None else height
                    if el.tag == "mask":
                        runs = [int(v) for v in el.get("rle", "").split(",")]
                        rle = encode_mask(decode_cvat_rle(runs, int(el.get("left", 0)), int(el.get("top", 0)),
                                                          int(el.get("width", 0)), int(el.get("height", 0)), w, h))
                    else:
                        rle = _polygon(el.get("points", ""), w, h)
                    where = f"track {track['id']}" if track is not None else f"image {image['name']}"  # type: ignore[index]
                    yield _Label(frame, name, rle, f"{where}, frame {frame}")
                elif event == "end" and el.tag in _NO_MASK:
                    counts["shapes_without_mask_left_out"] = counts.get("shapes_without_mask_left_out", 0) + 1
        except (ElementTree.ParseError, ValueError, KeyError) as exc:
            raise DataError(f"cannot read CVAT XML {path}: {exc}") from exc

    return labels, width, height, objects()


def read_mots(path: Path, first_frame: int, classes: dict[int, str], counts: dict[str, int]) -> Iterator[_Label]:
    """The objects of a MOTS text file, frames renumbered from 0; ``classes`` names the class ids."""
    for line in read_mots_lines(path, first_frame):
        if line.class_id == IGNORE_CLASS:
            counts["ignore_regions_left_out"] = counts.get("ignore_regions_left_out", 0) + 1
            continue
        rle = {"size": [line.height, line.width], "counts": line.counts}
        yield _Label(line.frame, classes.get(line.class_id, f"class {line.class_id}"), rle,
                     f"object {line.object_id}, line {line.number}")


def _category_of(classes: list[str]) -> dict[str, int]:
    return {name.lower(): k for k, name in enumerate(classes, start=1)}


def import_labels(labels: str | Path, frames: str | Path, output: str | Path, *, classes: list[str] | None = None,
                  first_frame: int = 0, gt_classes: dict[int, str] | None = None,
                  overwrite: bool = False) -> dict[str, Any]:
    """Turn corrected ``labels`` (CVAT XML, or MOTS text: ``.txt``) and their ``frames`` (the video or a folder of
    frames) into a COCO data set in ``output``; returns a summary. ``first_frame`` and ``gt_classes``: the MOTS
    file's frame numbering and class names (default KITTI-MOTS: 1 car, 2 person)."""
    path = Path(labels)
    if not path.is_file():
        raise DataError(f"labels not found: {path}")
    counts: dict[str, int] = {}
    source = FrameSource(frames)
    if path.suffix.lower() == ".txt":
        mots_classes = gt_classes or dict(KITTI_GT_CLASSES)
        declared = [mots_classes[k] for k in sorted(mots_classes)]
        objects = read_mots(path, first_frame, mots_classes, counts)
    else:
        declared, _, _, objects = read_cvat(path, counts)
    names = classes or declared
    if not names:
        raise DataError(f"{path} declares no labels: give the classes with --classes")
    category = _category_of(names)
    by_frame: dict[int, list[_Label]] = {}
    for obj in objects:
        if obj.name.lower() not in category:
            raise DataError(f"label {obj.name!r} ({obj.origin}) is not one of the classes: {', '.join(names)}")
        by_frame.setdefault(obj.frame, []).append(obj)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    with atomic_output(output, overwrite) as temporary:
        (temporary / "images").mkdir(parents=True)
        for frame in sorted(by_frame):
            height, width = by_frame[frame][0].rle["size"]
            name = f"frame_{frame:06d}.jpg"
            write_image(temporary / "images" / name, source.frame(frame, width, height))
            images.append({"id": len(images) + 1, "file_name": name, "width": width, "height": height,
                           "frame": frame})
            for obj in by_frame[frame]:
                rle = {"size": obj.rle["size"], "counts": obj.rle["counts"].encode("ascii")}
                area = int(mask_utils.area(rle))
                if not area:
                    counts["empty_masks_left_out"] = counts.get("empty_masks_left_out", 0) + 1
                    continue
                annotations.append({"id": len(annotations) + 1, "image_id": len(images),
                                    "category_id": category[obj.name.lower()], "segmentation": obj.rle, "area": area,
                                    "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": 0})
        data = {"info": {"description": f"imported by rtseg from {path.name}"}, "images": images,
                "annotations": annotations,
                "categories": [{"id": k, "name": n, "supercategory": ""} for k, n in enumerate(names, start=1)]}
        (temporary / "annotations.json").write_text(json.dumps(data), encoding="utf-8")
    return {"output": str(output), "images": len(images), "annotations": len(annotations), "classes": names,
            **counts}


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="rtseg import", description="Turn corrected CVAT XML or MOTS labels and their frames "
                            "into the COCO data set rtseg train reads.", epilog=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("labels", help="CVAT for video / for images 1.1 XML, or MOTS text (.txt)")
    parser.add_argument("--frames", required=True, help="the video the labels are of, or a folder of its frames")
    parser.add_argument("--output", required=True, help="folder for annotations.json and images/")
    parser.add_argument("--classes", help="comma-separated class names, category ids 1, 2, ... in this order "
                        "(default: the labels the file declares)")
    parser.add_argument("--first-frame", type=int, default=0, choices=(0, 1),
                        help="MOTS: number of the first frame (0 KITTI-MOTS, default; 1 MOTSChallenge)")
    parser.add_argument("--gt-classes", help="MOTS: 'kitti' (1 car, 2 person, default) or id=name pairs")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    return parser


def main(argv: list[str]) -> int:
    """Command line entry: import, then one line of what was written."""
    args = _parser().parse_args(argv)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    if args.classes is not None and not classes:
        raise UsageError("--classes names no class")
    summary = import_labels(args.labels, args.frames, args.output, classes=classes, first_frame=args.first_frame,
                            gt_classes=parse_gt_classes(args.gt_classes) if args.gt_classes else None,
                            overwrite=args.overwrite)
    print(f"wrote {summary['output']}: {summary['images']} images, {summary['annotations']} annotations of "
          f"{', '.join(summary['classes'])}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, sys.argv[1:]))
