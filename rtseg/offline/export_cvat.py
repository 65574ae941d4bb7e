"""A run as CVAT for video 1.1 XML: one ``<track>`` per object, its masks in CVAT's own run-length encoding.

CVAT's mask RLE (as CVAT's dataset manager writes and reads it, ``cvat/apps/dataset_manager/formats/cvat.py``):
the mask is cropped to its bounding box (``left``, ``top``, ``width``, ``height`` in pixels), read row by row,
and written as the lengths of alternating runs of 0s and 1s, starting with 0s (a first run may be 0 long).

Track rules, as CVAT's own "CVAT for video" export writes them: every frame an object is seen is a keyframe
``mask`` with ``outside="0"``; the frame after each stretch of frames it is seen (unless that is past the last
frame) carries the last mask again with ``outside="1"``, ending the stretch. A track's label is the class it
showed most often. CVAT itself keeps only the first mask of an imported mask track (its importer turns a mask
track into one shape: CVAT has no mask tracks); ``layout="frames"`` writes each frame of an object as a track
of its own (a mask, then ``outside`` on the next frame: how CVAT writes a lone shape in this format), which
CVAT imports whole, at the price of the identity across frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.sax.saxutils import XMLGenerator
from xml.sax.xmlreader import AttributesImpl

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from rtseg.offline.export_formats import Tally, TrackVotes, rle_runs_batch
from rtseg.offline.export_io import RunReader, TrackStore

LAYOUTS = ("tracks", "frames")


def cvat_rle(mask: np.ndarray) -> tuple[list[int], int, int, int, int] | None:
    """(runs, left, top, width, height) of a boolean (H, W) mask in CVAT's RLE; None for an empty mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return None
    top, left = int(rows[0]), int(cols[0])
    height, width = int(rows[-1]) - top + 1, int(cols[-1]) - left + 1
    return _crop_runs(mask[top:top + height, left:left + width]), left, top, width, height


def _crop_runs(crop: np.ndarray) -> list[int]:
    """CVAT runs of a boolean crop read row by row, 0s first."""
    flat = np.ascontiguousarray(crop).ravel()
    bounds = np.concatenate(([0], np.flatnonzero(flat[1:] != flat[:-1]) + 1, [flat.size]))
    runs: list[int] = np.diff(bounds).tolist()
    return ([0] if flat[0] else []) + runs


def coco_to_cvat(counts: str, size: list[int]) -> tuple[list[int], int, int, int, int] | None:
    """:func:`cvat_rle` of a compressed COCO RLE (:func:`coco_to_cvat_batch` of one)."""
    return coco_to_cvat_batch([counts], size)[0]


def coco_to_cvat_batch(counts: list[str], size: list[int],
                       boxes: np.ndarray | None = None) -> list[tuple[list[int], int, int, int, int] | None]:
    """:func:`cvat_rle` of each compressed COCO RLE of one frame size, none decoded beyond its box and all at
    once (numpy's cost is in its calls, not its elements). The box is pycocotools' ``toBbox``. COCO's run ends
    (column-major) are moved to where they fall in the box read column by column (an end above the box to the
    column's top, below it to the column's bottom; before or after the box's columns to its start or end),
    which gives the box column by column; a transposing copy reads it row by row. ``boxes``: their ``toBbox``,
    if known."""
    height = size[0]
    if boxes is None:
        boxes = mask_utils.toBbox([{"size": size, "counts": c.encode("ascii")} for c in counts])
    boxes = boxes.astype(np.int64)
    results: list[tuple[list[int], int, int, int, int] | None] = [None] * len(counts)
    todo = [k for k, (w, h) in enumerate(boxes[:, 2:].tolist()) if w > 0 and h > 0]
    if not todo:
        return results
    runs, bounds = rle_runs_batch([counts[k] for k in todo])
    x, y, w, h = boxes[todo].T
    per_mask = np.diff(bounds)
    area = w * h
    ends = np.cumsum(runs)
    ends -= np.repeat(np.concatenate(([0], ends))[bounds[:-1]], per_mask)
    column, row = np.divmod(ends, height)
    tx, ty, tw, th = (np.repeat(v, per_mask) for v in (x, y, w, h))
    ends = np.clip((column - tx) * th + np.clip(row - ty, 0, th), 0, tw * th)
    starts = np.concatenate(([0], ends[:-1]))
    starts[bounds[:-1]] = 0
    ones = (np.arange(ends.size) - np.repeat(bounds[:-1], per_mask)) % 2 == 1
    by_column = np.repeat(ones, ends - starts)
    offsets = np.concatenate(([0], np.cumsum(area)))
    column_bytes, by_row = by_column.view(np.uint8), np.empty(by_column.size, np.uint8)
    for a, b, rows, columns in zip(offsets[:-1].tolist(), offsets[1:].tolist(), h.tolist(), w.tolist()):
        cv2.transpose(column_bytes[a:b].reshape(columns, rows), dst=by_row[a:b].reshape(rows, columns))
    change = by_row[1:] != by_row[:-1]
    change[offsets[1:-1] - 1] = True  # each box starts a run (its first may be a 0 long run of 0s: lead below)
    edges = np.concatenate(([0], np.flatnonzero(change) + 1, [by_row.size]))
    lengths = np.diff(edges).tolist()
    first = np.searchsorted(edges, offsets).tolist()
    lead = by_row[offsets[:-1]].astype(bool).tolist()
    for k, index in enumerate(todo):
        piece = lengths[first[k]:first[k + 1]]
        results[index] = ([0] + piece if lead[k] else piece), int(x[k]), int(y[k]), int(w[k]), int(h[k])
    return results


def decode_cvat_rle(runs: list[int], left: int, top: int, width: int, height: int,
                    frame_width: int, frame_height: int) -> np.ndarray:
    """The boolean (frame_height, frame_width) mask of a CVAT RLE (the inverse of :func:`cvat_rle`)."""
    values = np.arange(len(runs)) % 2 == 1
    crop = np.repeat(values, runs)
    if crop.size != width * height:
        raise ValueError(f"the runs cover {crop.size} pixels, the {width}x{height} box {width * height}")
    mask = np.zeros((frame_height, frame_width), bool)
    mask[top:top + height, left:left + width] = crop.reshape(height, width)
    return mask


_NUMBERS = [str(v) for v in range(4096)]  # the decimal text of the commonest run lengths, looked up
_CHUNK_MASKS, _CHUNK_PIXELS = 32, 1 << 20  # masks and box pixels converted at once: the arrays stay small


def _rle_text(runs: list[int]) -> str:
    try:
        return ", ".join([_NUMBERS[v] for v in runs])
    except IndexError:
        return ", ".join(map(str, runs))


def _mask_attrs(frames: list[tuple[int, str]], size: list[int]) -> Iterator[str | None]:
    """The attributes of each frame's mask, in order (None for an empty mask), as XML attribute text, converted
    in batches of at most about :data:`_CHUNK_PIXELS` box pixels."""
    start = 0
    while start < len(frames):
        counts = [c for _, c in frames[start:start + _CHUNK_MASKS]]
        boxes = mask_utils.toBbox([{"size": size, "counts": c.encode("ascii")} for c in counts])
        pixels = np.cumsum(boxes[:, 2] * boxes[:, 3])
        take = max(1, int(np.searchsorted(pixels, _CHUNK_PIXELS, side="right")))
        for encoded in coco_to_cvat_batch(counts[:take], size, boxes[:take]):
            if encoded is None:
                yield None
                continue
            runs, left, top, width, height = encoded
            yield (f'rle="{_rle_text(runs)}" left="{left}" top="{top}" width="{width}" height="{height}" '
                   f'z_order="0"')
        start += take


def _stretches(frames: list[tuple[int, str]]) -> Iterator[list[tuple[int, str]]]:
    """Runs of consecutive frames."""
    start = 0
    for k in range(1, len(frames) + 1):
        if k == len(frames) or frames[k][0] != frames[k - 1][0] + 1:
            yield frames[start:k]
            start = k


class _Xml:
    """CVAT's XML layout, written as a stream (the same generator CVAT's own exporter uses)."""

    def __init__(self, out: Any) -> None:
        self._gen = XMLGenerator(out, "utf-8")
        self._out = out
        self._level = 0

    def open(self, tag: str, attrs: dict[str, str] | None = None) -> None:
        self._gen.ignorableWhitespace("\n" + "  " * self._level)
        self._gen.startElement(tag, AttributesImpl(attrs or {}))
        self._level += 1

    def close(self, tag: str, inline: bool = False) -> None:
        self._level -= 1
        if not inline:
            self._gen.ignorableWhitespace("\n" + "  " * self._level)
        self._gen.endElement(tag)

    def leaf(self, tag: str, text: str = "", attrs: dict[str, str] | None = None) -> None:
        self.open(tag, attrs)
        self._gen.characters(text)
        self.close(tag, inline=True)

    def raw_leaf(self, tag: str, attrs: str) -> None:
        """An empty element whose attributes are given as XML text (what :meth:`leaf` writes for them, made
        without the generator: numbers need no escaping, and it is the hot path)."""
        self._out.write(f"\n{'  ' * self._level}<{tag} {attrs}></{tag}>")

    def start(self) -> None:
        self._gen.startDocument()

    def end(self) -> None:
        self._gen.ignorableWhitespace("\n")
        self._gen.endDocument()


def _meta(xml: _Xml, name: str, frames: int, labels: list[str], width: int, height: int) -> None:
    xml.open("meta")
    xml.open("task")
    for tag, text in (("name", name), ("size", str(frames)), ("mode", "interpolation"), ("overlap", "0"),
                      ("start_frame", "0"), ("stop_frame", str(max(frames - 1, 0)))):
        xml.leaf(tag, text)
    xml.open("labels")
    for label in labels:
        xml.open("label")
        xml.leaf("name", label)
        xml.leaf("type", "mask")
        xml.leaf("attributes")
        xml.close("label")
    xml.close("labels")
    xml.open("original_size")
    xml.leaf("width", str(width))
    xml.leaf("height", str(height))
    xml.close("original_size")
    xml.close("task")
    xml.close("meta")


def _shape(xml: _Xml, frame: int, outside: bool, attrs: str) -> None:
    xml.raw_leaf("mask", f'frame="{frame}" keyframe="1" outside="{int(outside)}" occluded="0" {attrs}')


def write_cvat_video(reader: RunReader, path: Path, scratch: Path, layout: str = "tracks") -> dict[str, Any]:
    """CVAT for video 1.1 XML of the run's tracked masks (module docstring: the track rules and ``layout``)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown CVAT layout {layout!r}: one of {', '.join(LAYOUTS)}")
    store, votes, tally = TrackStore(scratch), TrackVotes(), Tally()
    try:
        votes.read(reader, store, tally)
        size = [reader.height, reader.width]
        with path.open("w", encoding="utf-8") as out:
            xml = _Xml(out)
            xml.start()
            xml.open("annotations")
            xml.leaf("version", "1.1")
            _meta(xml, reader.path.stem, votes.frames, sorted(votes.class_id_of), reader.width, reader.height)
            next_id = 0
            for track, frames in store.tracks():
                shapes = _mask_attrs(frames, size)
                pieces = _stretches(frames) if layout == "tracks" else ([f] for f in frames)
                if layout == "tracks":
                    xml.open("track", {"id": str(track), "label": votes.label(track), "source": "auto"})
                for piece in pieces:
                    if layout == "frames":
                        xml.open("track", {"id": str(next_id), "label": votes.label(track), "source": "auto"})
                        next_id += 1
                    attrs = None
                    for frame, _ in piece:
                        attrs = next(shapes) or attrs
                        if attrs is not None:
                            _shape(xml, frame, False, attrs)
                            tally.counts["masks"] += 1
                    end = piece[-1][0] + 1
                    if attrs is not None and end < votes.frames:
                        _shape(xml, end, True, attrs)
                    if layout == "frames":
                        xml.close("track")
                if layout == "tracks":
                    xml.close("track")
                tally.counts["tracks"] += 1
            xml.close("annotations")
            xml.end()
    finally:
        store.close()
    return {"frames": votes.frames, **tally.summary()}
