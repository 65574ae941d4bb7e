"""Measuring the cluster: one archive on 1 and 2 Ray workers against the single-machine engine.

``scripts/bench_cluster.py`` is the command; figures go to docs/benchmarks.md. Each run starts
from a fresh output folder and includes loading the model (each Ray worker loads its own).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rtseg.api import Outputs, process
from rtseg.cluster.archive import ArchiveResult, ArchiveRun
from rtseg.cluster.runtime import DetectorFactory, build_detector, connected
from rtseg.core.config import Config
from rtseg.pipeline.planner import detector_settings, plan_run


def make_archive(clip: Path, folder: Path, copies: int) -> list[Path]:
    """``copies`` copies of one clip: equal work per file, so throughput ratios compare like with like."""
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copyfile(clip, folder / f"file{i:02d}{clip.suffix}")) for i in range(copies)]


def model_config(size: int, frames: int, detections: int) -> Config:
    """The real Mask R-CNN on the CPU, random weights (none can be downloaded here), small input."""
    config = Config()
    config.model = dataclasses.replace(config.model, weights="none", device="cpu", size=size,
                                       detections_per_image=detections)
    config.pipeline = dataclasses.replace(config.pipeline, max_frames=frames)
    config.output = dataclasses.replace(config.output, show=False)
    return config


def _row(mode: str, files: int, frames: int, wall: float, **extra: Any) -> dict[str, Any]:
    return {"mode": mode, "files": files, "frames": frames, "wall_s": round(wall, 2),
            "files_per_s": round(files / wall, 4), "frames_per_s": round(frames / wall, 3), **extra}


def engine_run(archive: Path, out: Path, config: Config, factory: DetectorFactory | None) -> dict[str, Any]:
    """The single-machine engine: one process, one model, ``pipeline.max_open_files`` files at once."""
    started = time.monotonic()
    detector = build_detector(factory, detector_settings(config))
    result = process(str(archive), Outputs(output=out), config=config, detector=detector)
    streams = result.summary.streams
    return _row("engine", sum(s.status == "done" for s in streams), result.summary.frames_written,
                time.monotonic() - started)


def cluster_run(ray: Any, archive: Path, out: Path, config: Config, workers: int,
                factory: DetectorFactory | None) -> dict[str, Any]:
    """The archive on ``workers`` Ray workers sharing this machine's CPUs equally."""
    cpus = ray.cluster_resources().get("CPU", 1.0) / workers
    config = dataclasses.replace(config, cluster=dataclasses.replace(
        config.cluster, workers=workers, cpus_per_worker=cpus, gpus_per_worker=0.0))
    plan = plan_run([str(archive)], Outputs(output=out), config, cluster=True)
    started = time.monotonic()
    result: ArchiveResult = ArchiveRun(ray, plan, config, factory).run()
    wall = time.monotonic() - started
    ended = [*result.done, *result.cut]  # --frames cuts each clip: processed as asked
    frames = sum(r["frames"] for r in ended)
    per_frame = sum(result.file_seconds) / frames if frames else 0.0
    overhead = sum(result.overheads) / len(result.overheads) if result.overheads else 0.0
    clip_30s = 30 * 25 * per_frame  # a 30-second clip at 25 frames/s on one of these workers
    working = wall - (result.ready_seconds or 0.0)  # after the first worker had loaded its model
    return _row(f"cluster-{workers}", len(ended), frames, wall, ready_s=round(result.ready_seconds or 0.0, 2),
                frames_per_s_after_ready=round(frames / working, 3), overhead_ms_per_file=round(1000 * overhead, 1),
                overhead_share=round(result.overhead_share, 4), file_s_mean=round(sum(result.file_seconds) /
                                                                                 max(1, len(result.file_seconds)), 2),
                overhead_share_of_30s_clip=float(f"{overhead / clip_30s:.2g}") if clip_30s else None)


def compare(clip: Path, work: Path, copies: int, config: Config, factory: DetectorFactory | None = None,
            on_row: Callable[[dict[str, Any]], None] = lambda row: None) -> dict[str, Any]:
    """Engine, then 1 and 2 workers on one local Ray instance (its start-up is reported, not counted).

    ``factory`` replaces Mask R-CNN (a stub that sleeps, as a GPU leaves the CPU free, shows scaling that the
    machine's CPUs cannot). ``on_row`` gets each run's row as soon as it is done: the three runs take minutes.
    """
    archive = work / "archive"
    make_archive(clip, archive, copies)
    report: dict[str, Any] = {"load_before": os.getloadavg(), "rows": []}
    report["rows"].append(engine_run(archive, work / "out-engine", config, factory))
    on_row(report["rows"][-1])
    started = time.monotonic()
    with connected("auto", num_cpus=os.cpu_count(), object_store_memory=100 * 1024 * 1024) as ray:
        report["ray_start_s"] = round(time.monotonic() - started, 2)
        for workers in (1, 2):
            report["rows"].append(cluster_run(ray, archive, work / f"out-{workers}", config, workers, factory))
            on_row(report["rows"][-1])
    rows = {row["mode"]: row for row in report["rows"]}
    report["ratio_2_over_1_workers"] = round(rows["cluster-2"]["frames_per_s"] / rows["cluster-1"]["frames_per_s"], 3)
    report["ratio_2_over_1_workers_after_ready"] = round(rows["cluster-2"]["frames_per_s_after_ready"]
                                                         / rows["cluster-1"]["frames_per_s_after_ready"], 3)
    report["ratio_1_worker_over_engine"] = round(rows["cluster-1"]["frames_per_s"] / rows["engine"]["frames_per_s"], 3)
    report["load_after"] = os.getloadavg()
    return report
