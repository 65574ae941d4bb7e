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

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from rtseg.core.config import TrackingConfig
from rtseg.offline import check_scenes
from rtseg.offline.check_scenes import CHECK_SCENES, make_check_scene
from rtseg.offline.mot_metrics import ColourChange, ColourChanges, MotAccumulator, MotCounts, colour_changes
from rtseg.offline.progress import progress
from rtseg.offline.scenes import HEIGHT, NMS_IOU, SCENES, WIDTH, FrameData, Noise, Scene, detect, gaps, make_scene
from rtseg.track import appearance
from rtseg.track.tracker import Tracker

TARGET_SCENES = ("crossing", "occlusion", "crowd")
FAMILIES = SCENES + CHECK_SCENES  # the tuning families, then the checking generator's (rtseg.offline.check_scenes)
TARGETS = {"mota": 0.85, "idf1": 0.9, "colour_changes": 0, "ms_per_frame": 1.0}


def simulate(name: str, seed: int, frames: int, noise: Noise, with_masks: bool,
             max_gap: int) -> tuple[Scene, Iterator[FrameData]]:
    """A scene and its detections, frame by frame (simulated masks take 1 MB per object and frame).

    A checking family (:data:`~rtseg.offline.check_scenes.CHECK_SCENES`) has its own length and detector
    noise (``frames``, ``noise`` and ``max_gap`` do not apply) and no masks.
    """
    if name in CHECK_SCENES:
        if with_masks:
            raise ValueError(f"{name}: the checking scenes have no masks (match: iou only)")
        scene = make_check_scene(name, seed)
        rng = np.random.default_rng([seed, 7919, CHECK_SCENES.index(name), 1])
        return scene, (check_scenes.detect(scene, t, rng) for t in range(len(scene.boxes)))
    scene = make_scene(name, seed, frames, max_gap)
    rng = np.random.default_rng([seed, SCENES.index(name), 1])
    return scene, (detect(scene, t, noise, rng, with_masks) for t in range(frames))


def simulated_looks(objects: int, rng: np.random.Generator) -> np.ndarray:
    """(objects, appearance.SIZE) distinct random appearances, as :func:`rtseg.track.appearance.colour_histograms`
    gives them (square-rooted shares): for running the tracker with ``appearance`` on simulated scenes."""
    return np.sqrt(rng.dirichlet(np.full(appearance.SIZE, 0.2), objects))


def detection_looks(frame: FrameData, object_looks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each detection's appearance: its object's, a fifth of it replaced by noise (lighting, background
    pixels in the mask); a false detection's is random."""
    noise = rng.dirichlet(np.full(appearance.SIZE, 0.2), len(frame.boxes))
    own = np.where(frame.det_object[:, None] >= 0, object_looks[np.maximum(frame.det_object, 0)] ** 2, noise)
    return np.sqrt(0.8 * own + 0.2 * noise).astype(np.float32)


def run_scene(name: str, seed: int, frames: int, noise: Noise, config: TrackingConfig, tracker_name: str = "rtseg",
              with_hota: bool = False, simulated: tuple[Scene, Iterable[FrameData]] | None = None) -> dict[str, Any]:
    """Track one simulated scene with ``tracker_name`` (see :func:`make_tracker`); return its counts, colour
    changes, gap statistics, the tracker's CPU milliseconds per frame and, ``with_hota``, HOTA / DetA / AssA.

    ``simulated``: the scene and detections, when already made (:func:`simulate`) for another tracker.
    """
    scene, detections = simulated or simulate(name, seed, frames, noise, config.match == "mask_iou", config.max_age)
    frames = len(scene.boxes)
    tracker = make_tracker(tracker_name, config)
    seconds = 0.0
    acc = MotAccumulator()
    colours = []
    owners = []  # per frame: confirmed id -> object of the detection it was given (-1: a false detection)
    objects: set[int] = set()
    class_errors = tracked = 0  # tracked detections of objects, and those showing a class not the object's
    look_rng = np.random.default_rng([seed, FAMILIES.index(name), 2])
    object_looks = simulated_looks(len(scene.classes), look_rng)
    for f in detections:
        objects.update(f.gt_objects.tolist())
        looks = detection_looks(f, object_looks, look_rng) if config.appearance else None
        start = time.thread_time()  # CPU time of this thread: a busy machine does not inflate it
        ids = tracker.update(f.boxes, f.scores, f.class_ids, f.masks, looks)
        seconds += time.thread_time() - start
        out = ids >= 0
        acc.update(f.gt_objects.tolist(), f.gt_boxes, ids[out].tolist(), f.boxes[out])
        # An object counts as detected when it has a detection the tracker takes in (>= low_score);
        # its colour is a function of the id, so the ids are compared (-1: neutral grey).
        colours.append({int(o): int(i) for o, i, sc in zip(f.det_object, ids, f.scores)
                        if o >= 0 and sc >= config.low_score})
        owners.append({int(i): int(o) for o, i in zip(f.det_object[out], ids[out])})
        shown = out & (f.det_object >= 0)
        tracked += int(shown.sum())
        class_errors += int((tracker.labels()[0][shown] != scene.classes[f.det_object[shown]]).sum())
    counts = acc.counts()
    changes = list(colour_changes(colours, -1))
    counted = ColourChanges.tally(changes)
    lengths = [g for object_gaps in gaps(scene).values() for g in object_gaps]
    gap, long_gaps = max(lengths, default=0), sum(g > config.max_age for g in lengths)
    return {"scene": name, "seed": seed, "frames": frames, "objects": len(objects),
            "longest_gap": gap, "gaps_over_max_age": long_gaps, "colour_changes": counted.continuous,
            "colour_changes_life": counted.lifetime, "colour_change_causes": change_causes(changes, owners),
            "tracked_detections": tracked, "class_errors": class_errors,
            **dataclasses.asdict(counts), "mota": counts.mota, "idf1": counts.idf1,
            "tracker": tracker_name, "ms_per_frame": seconds * 1e3 / max(frames, 1),
            **(acc.hota() if with_hota else {})}


PEERS = ("bytetrack", "ocsort", "botsort")


def make_tracker(name: str, config: TrackingConfig) -> Tracker | BoxmotPeer:
    """rtseg's tracker ("rtseg") or one of boxmot's motion-only trackers (:data:`PEERS`), set up alike."""
    return Tracker(config) if name == "rtseg" else BoxmotPeer(name, config)


class BoxmotPeer:
    """One of boxmot's motion-only trackers behind rtseg's tracker interface (``update`` gives each
    detection's id, -1 for none; ``labels`` each detection's own class and score).

    The settings rtseg's tracker has are passed on: ``max_age`` (and as ByteTrack's and BoT-SORT's
    track buffer), ``min_hits``, ``high_score`` (the first association's and new tracks' threshold),
    ``low_score`` (the second association's floor; OC-SORT with its ByteTrack-style second pass on),
    ``iou_threshold`` (OC-SORT's); all class-agnostic (``per_class`` off). BoT-SORT runs without
    re-identification and without camera-motion compensation (the simulated camera is static).
    Everything else is boxmot's default. Needs ``pip install --no-deps boxmot lapx``.
    """

    def __init__(self, name: str, config: TrackingConfig) -> None:
        common = {"max_age": config.max_age, "min_hits": config.min_hits, "per_class": False}
        if name == "bytetrack":
            from boxmot.trackers.box.bytetrack.tracker import ByteTrack
            self._tracker = ByteTrack(min_conf=config.low_score, track_thresh=config.high_score,
                                      track_buffer=config.max_age, **common)
        elif name == "ocsort":
            from boxmot.trackers.box.ocsort.tracker import OcSort
            self._tracker = OcSort(min_conf=config.low_score, use_byte=True, det_thresh=config.high_score,
                                   iou_threshold=config.iou_threshold, **common)
        elif name == "botsort":
            from boxmot.trackers.box.botsort.tracker import BotSort
            self._tracker = BotSort(track_high_thresh=config.high_score, track_low_thresh=config.low_score,
                                    new_track_thresh=config.high_score, track_buffer=config.max_age, use_cmc=False,
                                    use_embeddings=False, **common)
        else:
            raise ValueError(f"unknown tracker {name!r}: rtseg or one of {', '.join(PEERS)}")
        self._frame = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        self._shown = (np.zeros(0, np.int64), np.zeros(0))

    def update(self, boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray,
               masks: np.ndarray | None = None, looks: np.ndarray | None = None) -> np.ndarray:
        """Ids as :meth:`rtseg.track.tracker.Tracker.update` gives them (``masks`` and ``looks`` unused)."""
        dets = np.concatenate([boxes, scores[:, None], class_ids[:, None]], axis=1).astype(np.float32)
        out = np.asarray(self._tracker.update(dets.reshape(-1, 6), self._frame))
        ids = np.full(len(boxes), -1, np.int64)
        if len(out):
            ids[out[:, 7].astype(np.int64)] = out[:, 4].astype(np.int64)
        self._shown = (np.asarray(class_ids, np.int64), np.asarray(scores, np.float64))
        return ids

    def labels(self) -> tuple[np.ndarray, np.ndarray]:
        return self._shown


CAUSES = {
    "false_detection": "its id went to a false detection (clutter or a fragment)",
    "other_object": "its id went to another object's detection",
    "unmatched": "its id matched no detection that frame (the object's went to another track or none)",
    "back_from_grey": "back from grey to an id",
    "blips": "of those, back to its own id after one grey frame (each such blip is 2 changes)",
}


def change_causes(changes: list[ColourChange[int, int]], owners: list[dict[int, int]]) -> dict[str, int]:
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


def benchmark(config: TrackingConfig, frames: int, noise: Noise) -> dict[str, Any]:
    """Milliseconds per ``Tracker.update`` on the 20-object scene (detection simulation not timed); with
    ``appearance``, also those of describing 20 detections' masks in a 1280x720 frame (``appearance_ms``)."""
    scene = make_scene("steady", 0, frames, max_gap=frames)  # all 20 objects, however hidden
    rng = np.random.default_rng(12345)
    object_looks = simulated_looks(len(scene.classes), rng)
    tracker = Tracker(config)
    times = np.empty(frames)
    cpu = np.empty(frames)
    detections = np.empty(frames)
    for t in range(frames):
        f = detect(scene, t, noise, rng, config.match == "mask_iou")
        looks = detection_looks(f, object_looks, rng) if config.appearance else None
        detections[t] = len(f.boxes)
        start, start_cpu = time.perf_counter(), time.thread_time()
        tracker.update(f.boxes, f.scores, f.class_ids, f.masks, looks)
        times[t], cpu[t] = time.perf_counter() - start, time.thread_time() - start_cpu
    ms, cpu_ms = times * 1e3, cpu * 1e3
    return {"objects": 20, "frames": frames, "detections_per_frame": float(detections.mean()),
            "ms_per_frame": float(ms.mean()), "ms_median": float(np.median(ms)), "ms_p95": float(np.percentile(ms, 95)),
            "cpu_ms_per_frame": float(cpu_ms.mean()), "cpu_ms_median": float(np.median(cpu_ms)),
            **({"appearance_ms": _histogram_ms(scene, rng)} if config.appearance else {})}


def _histogram_ms(scene: Scene, rng: np.random.Generator, repeats: int = 50) -> float:
    """Mean milliseconds of :func:`rtseg.track.appearance.colour_histograms` for the scene's first frame's
    boxes, as filled masks over a random frame of the scenes' size."""
    boxes = scene.boxes[0][np.isfinite(scene.boxes[0]).all(axis=1)]
    image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    masks = np.zeros((len(boxes), HEIGHT, WIDTH), bool)
    for mask, (x0, y0, x1, y1) in zip(masks, np.clip(boxes, 0, [WIDTH, HEIGHT, WIDTH, HEIGHT]).astype(int)):
        mask[y0:y1, x0:x1] = True
    start = time.perf_counter()
    for _ in range(repeats):
        appearance.colour_histograms(image, boxes, masks)
    return (time.perf_counter() - start) * 1e3 / repeats


def _total(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts and colour changes summed over ``rows`` (results of run_scene)."""
    fields = [f.name for f in dataclasses.fields(MotCounts)]
    return {"counts": sum((MotCounts(**{k: r[k] for k in fields}) for r in rows), MotCounts()),
            "objects": sum(r["objects"] for r in rows), "gap": max(r["longest_gap"] for r in rows),
            "long_gaps": sum(r["gaps_over_max_age"] for r in rows),
            "colour": ColourChanges(sum(r["colour_changes"] for r in rows), sum(r["colour_changes_life"] for r in rows)),
            "causes": {k: sum(r["colour_change_causes"][k] for r in rows) for k in CAUSES},
            "tracked": sum(r["tracked_detections"] for r in rows), "class_errors": sum(r["class_errors"] for r in rows)}


def _row(label: str, rows: list[dict[str, Any]]) -> str:
    t = _total(rows)
    c, colour = t["counts"], t["colour"]
    return (f"{label:<28}{t['objects']:>8}{c.num_gt:>9}{t['gap']:>5}/{t['long_gaps']:<3}{c.mota:>8.3f}{c.idf1:>8.3f}"
            f"{c.idsw:>6}{c.fp:>7}{c.fn:>7}{colour.continuous:>6}{colour.lifetime:>6}")


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    t = _total(rows)
    c = t["counts"]
    return {"mota": c.mota, "idf1": c.idf1, "idsw": c.idsw, "colour_changes": t["colour"].continuous,
            "colour_changes_life": t["colour"].lifetime, "colour_change_causes": t["causes"], **dataclasses.asdict(c)}


def evaluate(scenes: Sequence[str], seeds: Sequence[int], frames: int, noise: Noise, config: TrackingConfig,
             bench_frames: int, say: Callable[[str], None] = print) -> dict[str, Any]:
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

    runs = [(s, seed) for s in scenes for seed in seeds]
    results = [run_scene(s, seed, frames, noise, config) for s, seed in progress(runs, "scene runs", len(runs))]

    summary: dict[str, dict[str, Any]] = {}
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
    say(f"class shown wrong on {everything['class_errors']} of {everything['tracked']} tracked detections of objects")
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


def compare(scenes: Sequence[str], seeds: Sequence[int], frames: int, noise: Noise, config: TrackingConfig,
            trackers: Sequence[str], say: Callable[[str], None] = print) -> dict[str, dict[str, dict[str, Any]]]:
    """Run every tracker on every scene and seed (the same detections for all); ``say`` one table per
    scene family and return its figures: {scene: {tracker: summary}}."""
    say(f"seeds {' '.join(map(str, seeds))}, {frames} frames each (the checking families: {check_scenes.FRAMES}); "
        "colour changes while continuously detected "
        "per 10,000 ground-truth boxes (object-frames); ms: the tracker's CPU time per frame")
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for scene in scenes:
        say(f"\n{scene}")
        say(f"{'tracker':<12}{'MOTA':>8}{'IDF1':>8}{'HOTA':>8}{'DetA':>8}{'AssA':>8}{'IDSW':>6}{'colour/10k':>12}{'ms':>8}")
        table[scene] = {}
        simulated = {}
        for seed in seeds:  # the same detections for every tracker, made once
            made, detections = simulate(scene, seed, frames, noise, False, config.max_age)
            simulated[seed] = (made, list(detections))
        for name in trackers:
            rows = [run_scene(scene, seed, frames, noise, config, name, with_hota=True, simulated=simulated[seed])
                    for seed in progress(seeds, f"{scene}: {name}", len(seeds))]
            summary = _summary(rows)
            gt = summary["num_gt"]
            summary.update({key: float(np.average([r[key] for r in rows], weights=[r["num_gt"] for r in rows]))
                            for key in ("hota", "deta", "assa")},
                           colour_per_10k=1e4 * summary["colour_changes"] / gt if gt else float("nan"),
                           ms_per_frame=float(np.mean([r["ms_per_frame"] for r in rows])))
            table[scene][name] = summary
            say(f"{name:<12}{summary['mota']:>8.3f}{summary['idf1']:>8.3f}{summary['hota']:>8.3f}{summary['deta']:>8.3f}"
                f"{summary['assa']:>8.3f}{summary['idsw']:>6}{summary['colour_per_10k']:>12.2f}"
                f"{summary['ms_per_frame']:>8.3f}")
    return table


# Each of the tracker's additions to ByteTrack switched off on its own, for ablate(): the name, what is changed,
# and the module constants (rtseg.track's private tuning knobs) or tracking settings that change it.
# Patching private constants is for this measurement only; no setting exposes them.
ABLATIONS: dict[str, tuple[str, tuple[tuple[str, str, float], ...], dict[str, Any]]] = {
    "defaults": ("rtseg as it ships", (), {}),
    "class_aware": ("class-aware association (tracking.class_agnostic: false)", (), {"class_agnostic": False}),
    "other_class_share_1": ("another class counts its whole overlap", (("association", "_OTHER_CLASS", 1.0),), {}),
    "no_score_bonus": ("no score tie-breaker", (("association", "_SCORE_BONUS", 0.0),), {}),
    "no_continuity_bonus": ("no continuity bonus", (("association", "_SEEN_BONUS", 0.0),), {}),
    "bonus_against_one_miss": ("continuity bonus also against tracks missed one frame (the rule before issue 27)",
                               (("association", "_DRIFT_MISSES", 0),), {}),
    "no_growth_misfit": ("a larger box counts as far off as a smaller (occlusion-only-shrinks off)",
                         (("association", "_GROWTH_MISFIT", 1.0),), {}),
    "no_sliver_step": ("no step 4 (slivers inside the prediction)", (("association", "_INSIDE_FALLBACK", 2.0),), {}),
    "no_refind": ("no step 5 (finding lost tracks by Mahalanobis distance)", (("association", "_REFIND_GATE", 1e-9),), {}),
    "no_last_resort": ("no step 6 (last resort)", (("association", "_LAST_RESORT_SIZE", -1.0),), {}),
    "no_cut_boxes": ("boxes never taken as cut short by occlusion", (("motion", "_TRUNCATION", 1.0),), {}),
    "no_manoeuvre_noise": ("no velocity noise growing with speed", (("motion", "_STD_MANOEUVRE", 0.0),), {}),
    "full_velocity_noise": ("ByteTrack's velocity noise (not half)", (("motion", "_STD_VELOCITY", 1 / 160),), {}),
    "no_low_score_claims": ("strict ByteTrack order (tracking.low_score_claims: false)", (), {"low_score_claims": False}),
    "low_iou_0.5": ("ByteTrack's second-stage IoU 0.5 (tracking.low_iou_threshold)", (), {"low_iou_threshold": 0.5}),
    "min_hits_3": ("tracking.min_hits 3", (), {"min_hits": 3}),
}


def ablate(scenes: Sequence[str], seeds: Sequence[int], frames: int, noise: Noise, config: TrackingConfig,
           names: Sequence[str] = tuple(ABLATIONS), say: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """Run rtseg with each of :data:`ABLATIONS` in turn on the same detections; ``say`` ID switches and IDF1
    per family and return them: {ablation: {scene: summary}}."""
    from unittest import mock  # the knobs are module constants, patched for the run only

    from rtseg.track import association, motion
    modules = {"association": association, "motion": motion}
    simulated = {(s, seed): simulate(s, seed, frames, noise, False, config.max_age) for s in scenes for seed in seeds}
    made = {key: (scene, list(detections)) for key, (scene, detections) in simulated.items()}
    say(f"{'ablation':<24}" + "".join(f"{s[:16]:>18}" for s in scenes) + "   (ID switches / IDF1)")
    table: dict[str, dict[str, Any]] = {}
    for name in names:
        _, patches, settings = ABLATIONS[name]
        cfg = dataclasses.replace(config, **settings)
        with contextlib.ExitStack() as stack:
            for module, attr, value in patches:
                stack.enter_context(mock.patch.object(modules[module], attr, value))
            table[name] = {s: _summary([run_scene(s, seed, frames, noise, cfg, simulated=made[s, seed]) for seed in seeds])
                           for s in scenes}
        say(f"{name:<24}" + "".join(f"{r['idsw']:>11} {r['idf1']:.3f}" for r in table[name].values()))
    return table
