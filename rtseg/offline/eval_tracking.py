"""Score a tracker on the synthetic scenes of :mod:`rtseg.offline.scenes`: MOTA, IDF1, colour changes, cost.

The tracker runs on the simulated detections as in the pipeline; its confirmed ids
are scored against the ground truth (IoU >= 0.5): MOTA, IDF1, ID switches, and
colour changes (:func:`rtseg.offline.mot_metrics.colour_changes`), counted two ways.
An object is detected in a frame when the simulated detector made a detection of it
(not a fragment) that the tracker takes in (score >= low_score); its colour is the id
the tracker gave that detection, or neutral grey (-1).

  run   colour changes of continuously detected objects: within each run of
        consecutive frames in which the object is detected every frame, from the
        run's first frame in an id colour (frames before that are a new track
        awaiting confirmation, min_hits), every frame whose id differs from the
        previous frame's (A->B is 1, A->grey->A is 2).
  life  the same plus, each time the object is detected again after a gap (missed,
        occluded), 1 if it comes back in an id other than the last one it had:
        colour changes over the object's whole life.

The "run" changes are also tallied by what became of the id the object lost
(:data:`CAUSES`). :func:`benchmark` times ``Tracker.update`` alone on 20 objects,
by the wall clock and by the CPU time of the thread (which a busy machine does not
inflate).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import numpy as np

from rtseg.core.config import TrackingConfig
from rtseg.offline.mot_metrics import ColourChange, ColourChanges, MotAccumulator, MotCounts, colour_changes
from rtseg.offline.scenes import NMS_IOU, SCENES, Noise, detect, gaps, make_scene
from rtseg.track.tracker import Tracker

TARGET_SCENES = ("crossing", "occlusion", "crowd")
TARGETS = {"mota": 0.85, "idf1": 0.9, "colour_changes": 0, "ms_per_frame": 1.0}


def run_scene(name: str, seed: int, frames: int, noise: Noise, config: TrackingConfig) -> dict:
    """Track one simulated scene; return its counts, colour changes and gap statistics."""
    scene = make_scene(name, seed, frames, config.max_age)
    rng = np.random.default_rng([seed, SCENES.index(name), 1])
    tracker = Tracker(config)
    acc = MotAccumulator()
    colours = []
    owners = []  # per frame: confirmed id -> object of the detection it was given (-1: a false detection)
    objects: set[int] = set()
    for t in range(frames):  # frame by frame: simulated masks take 1 MB per object and frame
        f = detect(scene, t, noise, rng, config.match == "mask_iou")
        objects.update(f.gt_objects.tolist())
        ids = tracker.update(f.boxes, f.scores, f.class_ids, f.masks)
        out = ids >= 0
        acc.update(f.gt_objects.tolist(), f.gt_boxes, ids[out].tolist(), f.boxes[out])
        # An object counts as detected when it has a detection the tracker takes in (>= low_score);
        # its colour is a function of the id, so the ids are compared (-1: neutral grey).
        colours.append({int(o): int(i) for o, i, sc in zip(f.det_object, ids, f.scores)
                        if o >= 0 and sc >= config.low_score})
        owners.append({int(i): int(o) for o, i in zip(f.det_object[out], ids[out])})
    counts = acc.counts()
    changes = list(colour_changes(colours, -1))
    counted = ColourChanges.tally(changes)
    lengths = [g for object_gaps in gaps(scene).values() for g in object_gaps]
    gap, long_gaps = max(lengths, default=0), sum(g > config.max_age for g in lengths)
    return {"scene": name, "seed": seed, "frames": frames, "objects": len(objects),
            "longest_gap": gap, "gaps_over_max_age": long_gaps, "colour_changes": counted.continuous,
            "colour_changes_life": counted.lifetime, "colour_change_causes": change_causes(changes, owners),
            **dataclasses.asdict(counts), "mota": counts.mota, "idf1": counts.idf1}


CAUSES = {
    "false_detection": "its id went to a false detection (clutter or a fragment)",
    "other_object": "its id went to another object's detection",
    "unmatched": "its id matched no detection that frame (the object's went to another track or none)",
    "back_from_grey": "back from grey to an id",
    "blips": "of those, back to its own id after one grey frame (each such blip is 2 changes)",
}


def change_causes(changes: list[ColourChange], owners: list[dict[int, int]]) -> dict[str, int]:
    """Tally the colour changes of continuously detected objects by what became of the id they lost.

    ``owners[t]`` maps each confirmed id given out in frame t to the simulated object whose
    detection got it (-1 for a false detection). A change from grey (-1) ends an earlier
    change to grey; ``blips`` counts those that return to the object's id of two frames before.
    """
    causes = dict.fromkeys(CAUSES, 0)
    went_grey = {(c.key, c.frame): c.before for c in changes if c.continuous and c.after == -1}
    for c in changes:
        if not c.continuous:
            continue
        if c.before == -1:
            causes["back_from_grey"] += 1
            causes["blips"] += went_grey.get((c.key, c.frame - 1)) == c.after
        else:
            owner = owners[c.frame].get(c.before)
            causes["unmatched" if owner is None else "false_detection" if owner < 0 else "other_object"] += 1
    return causes


def benchmark(config: TrackingConfig, frames: int, noise: Noise) -> dict:
    """Milliseconds per ``Tracker.update`` on the 20-object scene (detection simulation not timed)."""
    scene = make_scene("steady", 0, frames, max_gap=frames)  # all 20 objects, however hidden
    rng = np.random.default_rng(12345)
    tracker = Tracker(config)
    times = np.empty(frames)
    cpu = np.empty(frames)
    detections = np.empty(frames)
    for t in range(frames):
        f = detect(scene, t, noise, rng, config.match == "mask_iou")
        detections[t] = len(f.boxes)
        start, start_cpu = time.perf_counter(), time.thread_time()
        tracker.update(f.boxes, f.scores, f.class_ids, f.masks)
        times[t], cpu[t] = time.perf_counter() - start, time.thread_time() - start_cpu
    ms, cpu_ms = times * 1e3, cpu * 1e3
    return {"objects": 20, "frames": frames, "detections_per_frame": float(detections.mean()),
            "ms_per_frame": float(ms.mean()), "ms_median": float(np.median(ms)), "ms_p95": float(np.percentile(ms, 95)),
            "cpu_ms_per_frame": float(cpu_ms.mean()), "cpu_ms_median": float(np.median(cpu_ms))}


def _total(rows: list[dict]) -> dict:
    """Counts and colour changes summed over ``rows`` (results of run_scene)."""
    fields = [f.name for f in dataclasses.fields(MotCounts)]
    return {"counts": sum((MotCounts(**{k: r[k] for k in fields}) for r in rows), MotCounts()),
            "objects": sum(r["objects"] for r in rows), "gap": max(r["longest_gap"] for r in rows),
            "long_gaps": sum(r["gaps_over_max_age"] for r in rows),
            "colour": ColourChanges(sum(r["colour_changes"] for r in rows), sum(r["colour_changes_life"] for r in rows)),
            "causes": {k: sum(r["colour_change_causes"][k] for r in rows) for k in CAUSES}}


def _row(label: str, rows: list[dict]) -> str:
    t = _total(rows)
    c, colour = t["counts"], t["colour"]
    return (f"{label:<28}{t['objects']:>8}{c.num_gt:>9}{t['gap']:>5}/{t['long_gaps']:<3}{c.mota:>8.3f}{c.idf1:>8.3f}"
            f"{c.idsw:>6}{c.fp:>7}{c.fn:>7}{colour.continuous:>6}{colour.lifetime:>6}")


def _summary(rows: list[dict]) -> dict:
    t = _total(rows)
    c = t["counts"]
    return {"mota": c.mota, "idf1": c.idf1, "idsw": c.idsw, "colour_changes": t["colour"].continuous,
            "colour_changes_life": t["colour"].lifetime, "colour_change_causes": t["causes"], **dataclasses.asdict(c)}


def evaluate(scenes: Sequence[str], seeds: Sequence[int], frames: int, noise: Noise, config: TrackingConfig,
             bench_frames: int, say: Callable[[str], None] = print) -> dict:
    """Run every scene once per seed, ``say`` the table, totals and benchmark; return every figure as a dict."""
    say(f"detector noise: box jitter {noise.jitter:g} px, {noise.miss:.0%} missed, {noise.low_score:.0%} scored low "
        f"(besides partly hidden objects), {noise.false_positives:g} false positives/frame "
        f"({noise.fragments:.0%} of them fragments of objects), then per-class NMS at IoU {NMS_IOU:g}")
    say("tracker: " + ", ".join(f"{f.name}={getattr(config, f.name)}" for f in dataclasses.fields(config)))
    say(f"seeds {' '.join(map(str, seeds))}, {frames} frames each; "
        "gap = longest occlusion in frames / gaps longer than max_age;\n"
        "colour changes: run = while continuously detected (target 0), "
        "life = over whole lives, also counting a new id after a gap\n")
    say(f"{'scene':<28}{'objects':>8}{'GT boxes':>9}{'gap':>9}{'MOTA':>8}{'IDF1':>8}{'IDSW':>6}{'FP':>7}{'FN':>7}"
        f"{'run':>6}{'life':>6}")

    results = [run_scene(s, seed, frames, noise, config) for s in scenes for seed in seeds]

    summary: dict[str, dict] = {}
    for s in scenes:
        rows = [r for r in results if r["scene"] == s]
        for r in rows:
            say(_row(f"{s} seed {r['seed']}", [r]))
        say(_row(f"{s} (all seeds)", rows))
        summary[s] = _summary(rows)
    target_rows = [r for r in results if r["scene"] in TARGET_SCENES]
    verdicts: dict[str, bool] = {}
    if target_rows:
        say("-" * 104)
        if len(seeds) > 1:
            for seed in seeds:
                say(_row(f"target scenes seed {seed}", [r for r in target_rows if r["seed"] == seed]))
                summary[f"target_scenes_seed_{seed}"] = _summary([r for r in target_rows if r["seed"] == seed])
        say(_row("target scenes", target_rows))
        summary["target_scenes"] = {"scenes": sorted({r["scene"] for r in target_rows}), **_summary(target_rows)}
        verdicts.update(mota=summary["target_scenes"]["mota"] >= TARGETS["mota"],
                        idf1=summary["target_scenes"]["idf1"] >= TARGETS["idf1"])
    everything = _total(results)
    all_colour = everything["colour"]
    verdicts["colour_changes"] = all_colour.continuous <= TARGETS["colour_changes"]
    say(f"\ncolour changes, all scenes run: {all_colour.continuous} while continuously detected, "
        f"{all_colour.lifetime} over whole lives")
    if all_colour.continuous:
        say("while continuously detected, an object changed colour because")
        for key, text in CAUSES.items():
            say(f"{everything['causes'][key]:>8}  {text}")

    bench = None
    if bench_frames:
        bench = benchmark(config, bench_frames, noise)
        say(f"tracker cost, 20 objects ({bench['detections_per_frame']:.1f} detections/frame, {bench['frames']} frames): "
            f"{bench['ms_per_frame']:.3f} ms/frame mean, {bench['ms_median']:.3f} median, {bench['ms_p95']:.3f} p95 "
            f"(wall clock; CPU time of the tracking thread {bench['cpu_ms_per_frame']:.3f} mean, "
            f"{bench['cpu_ms_median']:.3f} median: the difference is time spent waiting for a busy CPU)")
        verdicts["ms_per_frame"] = bench["ms_per_frame"] <= TARGETS["ms_per_frame"]
    say("targets: " + ", ".join(f"{k} {'met' if ok else 'MISSED'}" for k, ok in verdicts.items()))
    return {"noise": dataclasses.asdict(noise), "tracking": dataclasses.asdict(config), "seeds": list(seeds),
            "frames": frames, "runs": results, "summary": summary, "benchmark": bench,
            "targets": TARGETS, "targets_met": verdicts}
