"""``rtseg --cluster auto|ADDRESS``: an archive or a camera fleet on Ray, from the CLI's sources and outputs."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from rtseg.cluster.archive import ArchiveResult, ArchiveRun, plan_archive
from rtseg.cluster.fleet import FleetResult, FleetRun, plan_fleet
from rtseg.cluster.runtime import DetectorFactory, connected, detector_factory_from_env, import_ray
from rtseg.core.config import Config, StreamConfig
from rtseg.core.errors import UsageError
from rtseg.pipeline.plans import Outputs, expand_sources
from rtseg.sources.factory import parse_source


def is_fleet(sources: Sequence[str | StreamConfig], config: Config) -> bool:
    """Cameras (live sources) make a fleet; archives and video files are spread one file per task."""
    kinds = {parse_source(t.source).kind == "file" for t in expand_sources(sources, config)}
    if len(kinds) > 1:
        raise UsageError("with --cluster, give either archives of videos or cameras, not both in one run")
    return kinds == {False}


def run_cluster(address: str, sources: Sequence[str | StreamConfig], outputs: Outputs, config: Config, *,
                progress: bool = False, detector_factory: DetectorFactory | None = None,
                **local_settings: Any) -> ArchiveResult | FleetResult:
    """Everything checked first (Ray installed, outputs, Ray reachable), then the run; blocks until it ends."""
    import_ray(single_node=address == "auto")
    unsupported = [flag for flag, value in (("--save-frames", outputs.save_frames), ("--save-crops", outputs.save_crops),
                                            ("--save-stats", outputs.save_stats)) if value is not None]
    if unsupported:
        raise UsageError(f"{', '.join(unsupported)} not available with --cluster (it writes --output and --save-json)")
    sources = list(sources) or list(config.streams)
    if not sources:
        raise UsageError("no source: give --source or a config file with a streams: list")
    config = dataclasses.replace(config, output=dataclasses.replace(config.output, show=False))
    factory = detector_factory or detector_factory_from_env()
    if is_fleet(sources, config):
        cameras = plan_fleet(sources, outputs)
        with connected(address, **local_settings) as ray:
            return FleetRun(ray, cameras, config, factory).run()
    tasks, skipped, manifest = plan_archive(sources, outputs, config)
    if not tasks:
        return ArchiveResult(skipped=skipped, manifest=manifest)
    with connected(address, **local_settings) as ray:
        result = ArchiveRun(ray, tasks, config, manifest, factory, progress).run()
    result.skipped = skipped
    return result
