"""Benchmark rtseg's Mask R-CNN worker against stock torchvision and the full pipeline, in one run.

For every valid combination of --models x --sizes x --precisions x --batch-sizes:

- stock: torchvision's own inference as shipped, ``model(list_of_float_tensors)``
  in float32 with its 1000 proposals, on the same weights, size, score
  threshold and detections cap, run as ``GeneralizedRCNN.forward`` runs it
  (transform, backbone, RPN, ROI heads, transform.postprocess) so that its
  steps can be timed, plus the threshold and download that give the same
  product as rtseg's (boolean masks in host memory). Every row is compared
  with it, so a row with --precisions bf16 or fewer proposals shows what that
  buys and, in its agreement columns, what it costs;
- model alone: rtseg's ``MaskRCNNDetector.detect`` on the same decoded frames
  held in memory, interleaved frame by frame with stock so that changes in the
  machine's load hit both alike; measured again after the pipeline run;
- pipeline: file -> annotated MP4 (``FileSource`` + ``Mp4Sink``) on the same
  frames, with its per-stage timers (decode, preprocess, model, postprocess,
  render, encode) and the share of its wall time the model was busy, which
  unlike pipeline/model-alone fps is measured in one window of machine load.

Everything timed runs in a worker thread, as the pipeline runs its model:
on a busy 2-core machine the same model called from Python's main thread
was measured 1.2-2.9x slower (OpenMP stalls), which would flatter the
pipeline. Warm-up calls are never timed. Peak memory is the process's peak RSS so far
(``getrusage``; it never goes down, so later rows include earlier ones) and,
on CUDA, the peak allocated by torch during that combination.

  python scripts/benchmark.py --source ../shared/data/clips/car-detection.mp4 --device cpu --weights none \\
      --sizes 432 --precisions fp32,bf16 --frames 6 --json bench.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import functools
import json
import platform
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rtseg.core.config import Config, ModelConfig
from rtseg.core.errors import DeviceError
from rtseg.core.structures import Detections
from rtseg.detect.device import resolve_device, resolve_precision
from rtseg.detect.models import load_model, set_input_size
from rtseg.detect.worker import MaskRCNNDetector
from rtseg.pipeline.engine import Pipeline
from rtseg.sinks.mp4 import Mp4Sink
from rtseg.sources.files import FileSource

PIPELINE_STAGES = ("decode", "preprocess", "model", "postprocess", "render", "encode")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default="../shared/data/clips/car-detection.mp4", help="video file")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--weights", default="none", help="'none' (seeded random), 'default' (COCO) or a file")
    parser.add_argument("--models", default="maskrcnn_v1", help="comma-separated: maskrcnn_v1,maskrcnn_v2")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32,fp16,bf16")
    parser.add_argument("--batch-sizes", default="1", help="comma-separated frames per model call, e.g. 1,2,4")
    parser.add_argument("--sizes", default="432", help="comma-separated shorter sides fed to the model, e.g. 432,800")
    parser.add_argument("--frames", type=int, default=6, help="timed frames per combination")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per detector before timing")
    parser.add_argument("--score-threshold", type=float, default=0.0,
                        help="0 with random weights (their scores are low); 0.5 with real weights")
    parser.add_argument("--detections", type=int, default=8, help="detections_per_image: a realistic handful")
    parser.add_argument("--rpn-post-nms-top-n", type=int, default=ModelConfig().rpn_post_nms_top_n,
                        help="proposals for rtseg's box head (0 = the architecture's; stock always keeps its own)")
    parser.add_argument("--no-channels-last", action="store_true", help="rtseg worker in NCHW layout")
    parser.add_argument("--fp16-weights", action="store_true", help="CUDA fp16 by model.half() instead of autocast")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = PyTorch's default)")
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


def time_model_alone(detector: MaskRCNNDetector, frames: list[np.ndarray], batch_size: int,
                     stock: Stock | None) -> dict[str, Any]:
    """Per-frame times of rtseg (and stock, interleaved, alternating which goes first) on in-memory frames."""
    ours: dict[str, list[float]] = {"total": [], "preprocess": [], "model": [], "postprocess": []}
    theirs: dict[str, list[float]] = {"total": [], "preprocess": [], "model": [], "postprocess": []}
    selection = {"ours": [], "stock": []}
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
            runs = [("ours", detector), ("stock", stock)] if stock is not None else [("ours", detector)]
            for name, runner in runs if index % 2 == 0 else runs[::-1]:
                started = time.perf_counter()
                result = runner.detect(batch)
                elapsed = time.perf_counter() - started
                record = ours if name == "ours" else theirs
                (found_ours if name == "ours" else found_stock).extend(result)
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


def time_pipeline(detector: MaskRCNNDetector, model_config: ModelConfig, source: str, frames: int) -> dict[str, Any]:
    config = Config()
    config.model = model_config
    config.pipeline = dataclasses.replace(config.pipeline, max_frames=frames)
    config.output = dataclasses.replace(config.output, show=False, overwrite=True)
    with tempfile.TemporaryDirectory() as folder:
        sink = Mp4Sink(Path(folder) / "out.mp4", config.output, audio_source=source)
        summary = Pipeline(FileSource(source), detector, config, [sink]).run()
    if summary.error is not None:
        raise summary.error
    timers = summary.stage_timers
    return {
        "frames": summary.frames_written, "wall_s": summary.wall_seconds, "fps": summary.fps,
        # The same-window measure of "the other stages hide behind the model": 1.0 = never waited on.
        "inference_busy_fraction": timers["inference"].total / summary.wall_seconds,
        "stages": {name: summary_ms(list(timers[name].recent)) for name in PIPELINE_STAGES if name in timers},
    }


def combinations(args: argparse.Namespace, device: torch.device) -> Iterator[tuple[str, int, str, int]]:
    for model in args.models.split(","):
        for size in map(int, args.sizes.split(",")):
            for precision in args.precisions.split(","):
                try:
                    resolve_precision(precision, device)
                except DeviceError as exc:
                    print(f"skipping {precision} on {device}: {exc}", file=sys.stderr)
                    continue
                for batch_size in map(int, args.batch_sizes.split(",")):
                    yield model, size, precision, batch_size


def run_one(args: argparse.Namespace, frames: list[np.ndarray], device: torch.device, model: str, size: int,
            precision: str, batch_size: int) -> dict[str, Any]:
    config = dataclasses.replace(
        ModelConfig(), name=model, weights=args.weights, device=str(device), precision=precision, size=size,
        batch_size=batch_size, score_threshold=args.score_threshold, detections_per_image=args.detections,
        rpn_post_nms_top_n=args.rpn_post_nms_top_n, channels_last=not args.no_channels_last,
        fp16_weights=args.fp16_weights)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    detector = MaskRCNNDetector(config, sync_timings=True)
    stock = Stock(config, device)

    def warm_then_time(stock: Stock | None) -> dict[str, Any]:
        for _ in range(args.warmup):
            for runner in (detector, stock) if stock is not None else (detector,):
                runner.detect(frames[:batch_size])
        return time_model_alone(detector, frames, batch_size, stock)

    row: dict[str, Any] = {"model": detector.meta["architecture"],  # a checkpoint names its own
                           "size": size, "precision": precision, "batch_size": batch_size}
    row["model_alone"] = in_worker_thread(functools.partial(warm_then_time, stock))
    del stock  # its weights would otherwise count in the pipeline's memory
    if not args.no_pipeline:
        row["pipeline"] = time_pipeline(detector, config, args.source, len(frames))
        again = in_worker_thread(lambda: warm_then_time(None))
        row["model_alone"]["ours_fps_after_pipeline"] = again["ours_fps"]
        model_fps = statistics.fmean([row["model_alone"]["ours_fps"], again["ours_fps"]])
        row["pipeline_vs_model_alone"] = row["pipeline"]["fps"] / model_fps
    row["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        row["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (f"{'model':12} {'size':>4} {'prec':>4} {'batch':>5} | {'stock fps':>9} {'ours fps':>8} {'x stock':>7} | "
              f"{'matched':>7} {'IoU>=.9':>7} | {'pipe fps':>8} {'pipe/ours':>9} {'busy':>5} | {'RSS MiB':>7}")
    print(header)
    print("-" * len(header))
    for row in rows:
        alone, pipe = row["model_alone"], row.get("pipeline", {})
        print(f"{row['model']:12} {row['size']:>4} {row['precision']:>4} {row['batch_size']:>5} | "
              f"{alone['stock_fps']:>9.3f} {alone['ours_fps']:>8.3f} {alone['speedup_vs_stock']:>7.2f} | "
              f"{alone['agreement_with_stock']['matched']:>7.0%} "
              f"{alone['agreement_with_stock']['matched_mask_iou_0.9']:>7.0%} | "
              f"{pipe.get('fps', float('nan')):>8.3f} {row.get('pipeline_vs_model_alone', float('nan')):>9.2f} "
              f"{pipe.get('inference_busy_fraction', float('nan')):>5.1%} | "
              f"{row['peak_rss_mib']:>7.0f}")
    for row in rows:
        alone = row["model_alone"]
        print(f"\n{row['model']} size {row['size']} {row['precision']} batch {row['batch_size']}: "
              f"{alone['frames']} frames, {alone['nms_candidates_per_frame']:.0f} NMS candidates and "
              f"{alone['detections_per_frame']:.1f} detections per frame; agreement {alone['agreement_with_stock']}")
        print(f"  {'per frame, ms':26} {'stock p50/p95':>15} {'rtseg p50/p95':>15}")
        for step in ("preprocess", "model", "postprocess", "total"):
            s, o = alone["stock"][step], alone["ours"][step]
            print(f"  {step:26} {s['p50_ms']:>7.0f}/{s['p95_ms']:<7.0f} {o['p50_ms']:>7.0f}/{o['p95_ms']:<7.0f}")
        s, o = alone["box_selection_stock"], alone["box_selection_ours"]
        print(f"  {'  of model: box selection':26} {s['p50_ms']:>7.0f}/{s['p95_ms']:<7.0f} "
              f"{o['p50_ms']:>7.0f}/{o['p95_ms']:<7.0f}")
        if "pipeline" in row:
            stages = ", ".join(f"{name} {v['p50_ms']:.0f}/{v['p95_ms']:.0f}" for name, v in row["pipeline"]["stages"].items())
            print(f"  pipeline stages p50/p95 ms per frame: {stages}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    frames = decode(args.source, args.frames)
    rows = []
    for model, size, precision, batch_size in combinations(args, device):
        print(f"running {model} size {size} {precision} batch {batch_size} ...", file=sys.stderr, flush=True)
        rows.append(run_one(args, frames, device, model, size, precision, batch_size))
    print_table(rows)
    if args.json:
        report = {
            "command": " ".join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])]),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": {"platform": platform.platform(), "processor": platform.processor(),
                        "torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(device),
                        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
            "results": rows,
        }
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
