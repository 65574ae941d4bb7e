"""Benchmark rtseg's Mask R-CNN worker against stock torchvision and the whole pipeline, in one run.

For every combination of models x sizes x detections x precisions x batch sizes x tracking:

- stock: torchvision's own inference as shipped, ``model(list_of_float_tensors)``
  in float32 with its 1000 proposals, on the same weights, size, score
  threshold and detections cap, run as ``GeneralizedRCNN.forward`` runs it
  (transform, backbone, RPN, ROI heads, transform.postprocess) so that its
  steps can be timed, plus the threshold and download that give the same
  product as rtseg's (boolean masks in host memory). Every row is compared
  with it, so a bf16 row shows what bf16 buys and, in its agreement columns,
  what it costs;
- model alone: rtseg's ``MaskRCNNDetector.detect`` on the same decoded frames
  held in memory, interleaved frame by frame with stock so that changes in the
  machine's load hit both alike; measured again after the pipeline run;
- pipeline: file -> annotated MP4 through ``rtseg.api.process`` (what the CLI
  runs) on the same frames, with its per-stage timers and the share of its
  wall time the model was busy, which unlike pipeline / model-alone fps is
  measured in one window of machine load. ``pipeline / stock`` is the "default
  CLI against stock torchvision alone" ratio when the precision is ``auto``.

Everything timed runs in a worker thread, as the pipeline runs its model (on a
busy machine OpenMP from Python's main thread stalls, which would flatter the
pipeline). Warm-up calls are never timed. Each row records the machine's load
average before and after, the threads used (torch intra-op, decoder, encoder),
and the precision ``auto`` chose and why. Peak memory is the process's peak RSS
so far (later rows include earlier ones) and, on CUDA, torch's peak allocation.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import functools
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

from rtseg.api import Outputs, process
from rtseg.core.config import Config, ModelConfig, codec_threads
from rtseg.core.errors import DeviceError
from rtseg.core.media import SAMPLE_CLIP
from rtseg.core.structures import Detections
from rtseg.detect.device import choose_precision, resolve_device
from rtseg.detect.maskrcnn import MaskRCNNDetector
from rtseg.detect.models import load_model, set_input_size
from rtseg.sources.files import FileSource

_Found = TypeVar("_Found")  # what a timed detector returns per image

PIPELINE_STAGES = ("decode", "preprocess", "model", "postprocess", "tracking", "render", "encode")
STEPS = ("total", "preprocess", "model", "postprocess")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=str(SAMPLE_CLIP), help="video file (default: the sample, samples/car.mp4)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--weights", default="none", help="'none' (seeded random), 'default' (COCO) or a file")
    parser.add_argument("--models", default="maskrcnn_v1", help="comma-separated: maskrcnn_v1,maskrcnn_v2")
    parser.add_argument("--precisions", default="auto,fp32",
                        help="comma-separated: auto (what the CLI picks), fp32, fp16, bf16")
    parser.add_argument("--batch-sizes", default="1", help="comma-separated frames per model call, e.g. 1,2,4")
    parser.add_argument("--sizes", default="432", help="comma-separated shorter sides fed to the model, e.g. 256,432")
    parser.add_argument("--detections", default="8", help="comma-separated detections_per_image caps, e.g. 8,75")
    parser.add_argument("--tracking", default="off", help="comma-separated pipeline tracking: off, on")
    parser.add_argument("--frames", type=int, default=6, help="timed frames per combination")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per detector before timing")
    parser.add_argument("--score-threshold", type=float, default=0.0,
                        help="0 with random weights (their scores are low); 0.5 with real weights")
    parser.add_argument("--rpn-post-nms-top-n", type=int, default=ModelConfig().rpn_post_nms_top_n,
                        help="proposals for rtseg's box head (0 = the architecture's; stock always keeps its own)")
    parser.add_argument("--no-channels-last", action="store_true", help="rtseg worker in NCHW layout")
    parser.add_argument("--fp16-weights", action="store_true", help="CUDA fp16 by model.half() instead of autocast")
    parser.add_argument("--threads", type=int, default=0, help="model.threads: torch intra-op threads (0 = default)")
    parser.add_argument("--codec-threads", type=int, default=0,
                        help="pipeline.decoder_threads and output.encoder_threads (0 = automatic)")
    parser.add_argument("--no-stock", action="store_true", help="skip stock torchvision (rtseg rows only)")
    parser.add_argument("--no-pipeline", action="store_true", help="skip the file -> MP4 runs")
    parser.add_argument("--json", help="write the results here")
    return parser.parse_args(argv)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else 0.0


def summary_ms(values: Sequence[float]) -> dict[str, float]:
    return {"mean_ms": 1000 * statistics.fmean(values) if values else 0.0,
            "p50_ms": 1000 * percentile(values, 50), "p95_ms": 1000 * percentile(values, 95)}


def decode(source: str, count: int) -> list[np.ndarray]:
    reader = FileSource(source)
    try:
        frames = []
        for frame in reader.frames():
            frames.append(frame.image)
            if len(frames) == count:
                break
        return frames
    finally:
        reader.close()


@contextlib.contextmanager
def timed_method(obj: Any, name: str, sink: list[float], before: Callable[..., None] | None = None) -> Iterator[None]:
    """Temporarily wrap ``obj.name`` so that every call's duration is appended to ``sink``."""
    original = getattr(obj, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if before is not None:
            before(*args)
        started = time.perf_counter()
        result = original(*args, **kwargs)
        sink.append(time.perf_counter() - started)
        return result

    setattr(obj, name, wrapper)
    try:
        yield
    finally:
        delattr(obj, name)


class Stock:
    """torchvision's inference exactly as ``model(images)`` runs it, timed step by step."""

    def __init__(self, config: ModelConfig, device: torch.device) -> None:
        loaded = load_model(config.name, config.weights, box_score_thresh=config.score_threshold,
                            box_detections_per_img=config.detections_per_image)
        set_input_size(loaded, config.size, config.max_size)
        self.model = loaded.model.to(device).eval()
        self.device, self.mask_threshold = device, config.mask_threshold
        self.last_timings: dict[str, float] = {}

    def _clock(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    @torch.inference_mode()
    def detect(self, images: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        model = self.model
        started = self._clock()
        tensors = [torch.from_numpy(image).to(self.device).permute(2, 0, 1).float() / 255 for image in images]
        batch, _ = model.transform(tensors)
        preprocessed = self._clock()
        features = model.backbone(batch.tensors)
        proposals, _ = model.rpn(batch, features)
        raw, _ = model.roi_heads(features, proposals, batch.image_sizes)
        modelled = self._clock()
        raw = model.transform.postprocess(raw, batch.image_sizes, [image.shape[:2] for image in images])
        results = [{"boxes": r["boxes"].float().cpu().numpy(), "scores": r["scores"].float().cpu().numpy(),
                    "labels": r["labels"].cpu().numpy(), "masks": (r["masks"][:, 0] > self.mask_threshold).cpu().numpy()}
                   for r in raw]
        self.last_timings = {"preprocess": preprocessed - started, "model": modelled - preprocessed,
                             "postprocess": self._clock() - modelled}
        return results


def in_worker_thread(work: Callable[[], Any]) -> Any:
    """``work()`` run in a fresh thread (see the module docstring for why), its exception re-raised here."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="benchmark-model")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def matches(theirs: dict[str, np.ndarray], ours: Detections) -> list[tuple[int, int]]:
    """Greedy one-to-one pairs (stock index, rtseg index) of the same class, best box IoU (>= 0.5) first."""
    if not len(theirs["labels"]) or not len(ours):
        return []
    ious = box_iou(torch.from_numpy(theirs["boxes"]), torch.from_numpy(ours.boxes)).numpy()
    ious[theirs["labels"][:, None] != ours.class_ids[None, :]] = 0
    pairs = []
    while ious.size and ious.max() >= 0.5:
        i, j = np.unravel_index(ious.argmax(), ious.shape)
        pairs.append((int(i), int(j)))
        ious[i, :] = 0
        ious[:, j] = 0
    return pairs


def agreement(ours: list[Detections], theirs: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """rtseg's detections against stock's on the same frames: the parity tests' measures."""
    total = sum(len(t["labels"]) for t in theirs)
    pairs = [(t, o, matches(t, o)) for o, t in zip(ours, theirs)]
    ious = [mask_iou(t["masks"][i], o.host_masks()[j]) for t, o, found in pairs for i, j in found]
    box_error = max((float(np.abs(t["boxes"][i] - o.boxes[j]).max()) for t, o, found in pairs for i, j in found),
                    default=0.0)
    return {"stock_detections": total, "matched": len(ious) / total if total else 1.0,
            "matched_mask_iou_0.9": sum(iou >= 0.9 for iou in ious) / total if total else 1.0,
            "mean_matched_mask_iou": statistics.fmean(ious) if ious else 1.0, "max_matched_box_error_px": box_error}


def _timed_detect(detect: Callable[[Sequence[np.ndarray]], list[_Found]], batch: Sequence[np.ndarray],
                  found: list[_Found]) -> float:
    """Seconds ``detect(batch)`` took; its results are added to ``found`` (after the clock stops)."""
    started = time.perf_counter()
    result = detect(batch)
    elapsed = time.perf_counter() - started
    found.extend(result)
    return elapsed


def time_model_alone(detector: MaskRCNNDetector, frames: list[np.ndarray], batch_size: int,
                     stock: Stock | None) -> dict[str, Any]:
    """Per-frame times of rtseg (and stock, interleaved, alternating which goes first) on in-memory frames."""
    ours: dict[str, list[float]] = {step: [] for step in STEPS}
    theirs: dict[str, list[float]] = {step: [] for step in STEPS}
    selection: dict[str, list[float]] = {"ours": [], "stock": []}
    candidates: list[int] = []

    def count_candidates(class_logits: torch.Tensor, *_: Any) -> None:
        scores = F.softmax(class_logits.float(), -1)[:, 1:]
        candidates.append(int((scores > detector.model.roi_heads.score_thresh).sum()))

    found_ours: list[Detections] = []
    found_stock: list[dict[str, np.ndarray]] = []
    with contextlib.ExitStack() as patches:
        patches.enter_context(timed_method(detector, "best_boxes", selection["ours"], count_candidates))
        if stock is not None:
            patches.enter_context(timed_method(stock.model.roi_heads, "postprocess_detections", selection["stock"]))
        for index, start in enumerate(range(0, len(frames) - batch_size + 1, batch_size)):
            batch = frames[start: start + batch_size]
            runs: list[tuple[str, MaskRCNNDetector | Stock]] = [("ours", detector)]
            if stock is not None:
                runs.append(("stock", stock))
            for name, runner in runs if index % 2 == 0 else runs[::-1]:
                if isinstance(runner, Stock):
                    elapsed = _timed_detect(runner.detect, batch, found_stock)
                else:
                    elapsed = _timed_detect(runner.detect, batch, found_ours)
                record = ours if name == "ours" else theirs
                record["total"] += [elapsed / len(batch)] * len(batch)
                for step, seconds in runner.last_timings.items():
                    record[step] += [seconds / len(batch)] * len(batch)
    frames_done = len(ours["total"])
    report: dict[str, Any] = {
        "frames": frames_done,
        "ours": {step: summary_ms(values) for step, values in ours.items()},
        "ours_fps": frames_done / sum(ours["total"]),
        "box_selection_ours": summary_ms(selection["ours"]),
        "nms_candidates_per_frame": statistics.fmean(candidates) if candidates else 0.0,
        "detections_per_frame": statistics.fmean(len(d) for d in found_ours) if found_ours else 0.0,
    }
    if stock is not None:
        report |= {
            "stock": {step: summary_ms(values) for step, values in theirs.items()},
            "stock_fps": frames_done / sum(theirs["total"]),
            "box_selection_stock": summary_ms(selection["stock"]),
            "agreement_with_stock": agreement(found_ours, found_stock),
        }
        report["speedup_vs_stock"] = report["ours_fps"] / report["stock_fps"]
    return report


def pipeline_config(model_config: ModelConfig, frames: int, tracking: bool, codec_thread_count: int) -> Config:
    """The CLI's configuration for a file -> MP4 run of ``frames`` frames with this model and tracking setting."""
    config = Config()
    config.model = model_config
    config.pipeline = dataclasses.replace(config.pipeline, max_frames=frames, decoder_threads=codec_thread_count)
    config.output = dataclasses.replace(config.output, show=False, overwrite=True,
                                        encoder_threads=codec_thread_count)
    config.tracking = dataclasses.replace(config.tracking, enabled=tracking)
    return config


def time_pipeline(detector: MaskRCNNDetector, config: Config, source: str) -> dict[str, Any]:
    """One file -> MP4 run through ``rtseg.api.process`` with ``detector``: fps, model busy share, stage times."""
    with tempfile.TemporaryDirectory() as folder:
        summary = process(source, Outputs(output=Path(folder) / "out.mp4"), config=config, detector=detector).summary
    if summary.error is not None:
        raise summary.error
    timers = summary.stage_timers
    return {
        "frames": summary.frames_written, "wall_s": summary.wall_seconds, "fps": summary.fps,
        # The same-window measure of "the other stages hide behind the model": 1.0 = never waited on.
        "inference_busy_fraction": timers["inference"].total / summary.wall_seconds,
        "latency_p95_ms": 1000 * summary.latency.percentile(95),
        "stages": {name: summary_ms(list(timers[name].recent)) for name in PIPELINE_STAGES if name in timers},
    }


@dataclasses.dataclass(frozen=True)
class Combination:
    model: str
    size: int
    detections: int
    precision: str
    batch_size: int
    tracking: bool


def combinations(args: argparse.Namespace, device: torch.device) -> Iterator[Combination]:
    for model in args.models.split(","):
        for size in map(int, args.sizes.split(",")):
            for detections in map(int, args.detections.split(",")):
                for precision in args.precisions.split(","):
                    try:
                        choose_precision(precision, device)
                    except DeviceError as exc:
                        print(f"skipping {precision} on {device}: {exc}", file=sys.stderr)
                        continue
                    for batch_size in map(int, args.batch_sizes.split(",")):
                        for tracking in args.tracking.split(","):
                            yield Combination(model, size, detections, precision, batch_size, tracking == "on")


def threads_used(args: argparse.Namespace) -> dict[str, Any]:
    """What each stage ran with: torch's intra-op pool, and FFmpeg's thread_count (0 = FFmpeg's own choice)."""
    return {"cores": os.cpu_count(), "torch_intra_op": torch.get_num_threads(),
            "decoder": codec_threads(args.codec_threads), "encoder": codec_threads(args.codec_threads)}


def run_one(args: argparse.Namespace, frames: list[np.ndarray], device: torch.device, combo: Combination) -> dict[str, Any]:
    config = dataclasses.replace(
        ModelConfig(), name=combo.model, weights=args.weights, device=str(device), precision=combo.precision,
        size=combo.size, batch_size=combo.batch_size, score_threshold=args.score_threshold,
        detections_per_image=combo.detections, rpn_post_nms_top_n=args.rpn_post_nms_top_n,
        channels_last=not args.no_channels_last, fp16_weights=args.fp16_weights, threads=args.threads)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    load_before = os.getloadavg()
    detector = MaskRCNNDetector(config, sync_timings=True)
    stock = None if args.no_stock else Stock(config, device)

    def warm_then_time(stock: Stock | None) -> dict[str, Any]:
        for _ in range(args.warmup):
            for runner in (detector, stock) if stock is not None else (detector,):
                runner.detect(frames[:combo.batch_size])
        return time_model_alone(detector, frames, combo.batch_size, stock)

    row: dict[str, Any] = {**dataclasses.asdict(combo), "model": detector.meta["architecture"],  # a checkpoint names its own
                           "precision_note": detector.precision_note, "threads": threads_used(args)}
    row["model_alone"] = in_worker_thread(functools.partial(warm_then_time, stock))
    del stock  # its weights would otherwise count in the pipeline's memory
    if not args.no_pipeline:
        row["pipeline"] = time_pipeline(detector, pipeline_config(config, len(frames), combo.tracking,
                                                                  args.codec_threads), args.source)
        again = in_worker_thread(lambda: warm_then_time(None))
        row["model_alone"]["ours_fps_after_pipeline"] = again["ours_fps"]
        model_fps = statistics.fmean([row["model_alone"]["ours_fps"], again["ours_fps"]])
        row["pipeline_vs_model_alone"] = row["pipeline"]["fps"] / model_fps
        if "stock_fps" in row["model_alone"]:
            row["pipeline_vs_stock"] = row["pipeline"]["fps"] / row["model_alone"]["stock_fps"]
    row["load_average"] = {"before": load_before[0], "after": os.getloadavg()[0]}
    row["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        row["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return row


def _cell(value: float | None, form: str) -> str:
    return "—" if value is None else format(value, form)


def table(rows: list[dict[str, Any]]) -> list[str]:
    """The rows as a Markdown table, as docs/benchmarks.md quotes them."""
    lines = ["| model | size | dets | precision | track | stock fps | ours fps | ours / stock | matched | "
             "IoU ≥ .9 | pipeline fps | pipeline / stock | pipeline / ours | busy | render p50 ms | load |",
             "|" + "---|" * 16]
    for row in rows:
        alone, pipe, agree = row["model_alone"], row.get("pipeline", {}), row["model_alone"].get("agreement_with_stock", {})
        chosen = row["precision_note"].split()[1]
        precision = chosen if row["precision"] == chosen else f"{row['precision']} = {chosen}"
        lines.append(" | ".join([
            f"| {row['model']}", str(row["size"]), str(row["detections"]), precision,
            "on" if row["tracking"] else "off", _cell(alone.get("stock_fps"), ".3f"), _cell(alone["ours_fps"], ".3f"),
            _cell(alone.get("speedup_vs_stock"), ".2f"), _cell(agree.get("matched"), ".0%"),
            _cell(agree.get("matched_mask_iou_0.9"), ".0%"), _cell(pipe.get("fps"), ".3f"),
            _cell(row.get("pipeline_vs_stock"), ".2f"), _cell(row.get("pipeline_vs_model_alone"), ".2f"),
            _cell(pipe.get("inference_busy_fraction"), ".1%"),
            _cell(pipe.get("stages", {}).get("render", {}).get("p50_ms"), ".0f"),
            f"{row['load_average']['before']:.1f}–{row['load_average']['after']:.1f} |"]))
    return lines


def details(row: dict[str, Any]) -> list[str]:
    """Per-step times of one row, stock against rtseg, and the pipeline's stages."""
    alone = row["model_alone"]
    lines = [f"{row['model']} size {row['size']} {row['detections']} dets {row['precision_note']}, batch "
             f"{row['batch_size']}, tracking {'on' if row['tracking'] else 'off'}, threads {row['threads']}: "
             f"{alone['frames']} frames, {alone['nms_candidates_per_frame']:.0f} NMS candidates and "
             f"{alone['detections_per_frame']:.1f} detections per frame; "
             f"agreement {alone.get('agreement_with_stock', '—')}"]
    lines.append(f"  {'per frame, ms':26} {'stock p50/p95':>15} {'rtseg p50/p95':>15}")
    for step in STEPS:
        s, o = alone.get("stock", {}).get(step), alone["ours"][step]
        stock = f"{s['p50_ms']:>7.0f}/{s['p95_ms']:<7.0f}" if s else f"{'—':>15}"
        lines.append(f"  {step:26} {stock} {o['p50_ms']:>7.0f}/{o['p95_ms']:<7.0f}")
    if "pipeline" in row:
        stages = ", ".join(f"{name} {v['p50_ms']:.0f}/{v['p95_ms']:.0f}" for name, v in row["pipeline"]["stages"].items())
        lines.append(f"  pipeline stages p50/p95 ms per frame: {stages}; latency p95 "
                     f"{row['pipeline']['latency_p95_ms']:.0f} ms")
    return lines


def machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "processor": platform.processor(), "cores": os.cpu_count(),
            "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device)
    frames = decode(args.source, args.frames)
    rows = []
    started = datetime.datetime.now().isoformat(timespec="seconds")
    for combo in combinations(args, device):
        print(f"running {combo} ...", file=sys.stderr, flush=True)
        rows.append(run_one(args, frames, device, combo))
    print("\n".join(table(rows)))
    for row in rows:
        print("\n" + "\n".join(details(row)))
    if args.json:
        report = {"command": " ".join(["scripts/benchmark.py", *(argv if argv is not None else sys.argv[1:])]),
                  "date": started, "machine": machine(), "results": rows}
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0
