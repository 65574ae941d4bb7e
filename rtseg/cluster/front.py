"""``rtseg --cluster auto|ADDRESS``: an archive or a camera fleet on Ray, from the CLI's sources and outputs."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from rtseg.api import source_list
from rtseg.cluster.archive import ArchiveResult, ArchiveRun
from rtseg.cluster.fleet import FleetResult, FleetRun
from rtseg.cluster.runtime import DetectorFactory, connected, detector_factory_from_env, import_ray
from rtseg.core.config import Config, StreamConfig
from rtseg.core.errors import UsageError
from rtseg.pipeline.planner import Outputs, plan_run


def run_cluster(address: str, sources: Sequence[str | StreamConfig], outputs: Outputs, config: Config, *,
                progress: bool = False, detector_factory: DetectorFactory | None = None,
                **local_settings: Any) -> ArchiveResult | FleetResult:
    """Everything checked first (Ray installed, outputs, Ray reachable), then the run; blocks until it ends.

    The run is planned by the same planner as every other front door (``plan_run(..., cluster=True)``):
    cameras make a fleet, archives and video files are spread one file per task.
    """
    import_ray(single_node=address == "auto")
    sources = source_list(sources, config)
    if not sources:
        raise UsageError("no source: give --source or a config file with a streams: list")
    config = dataclasses.replace(config, output=dataclasses.replace(config.output, show=False))
    plan = plan_run(sources, outputs, config, cluster=True)
    factory = detector_factory or detector_factory_from_env()
    if plan.streams and plan.streams[0].live:
        with connected(address, **local_settings) as ray:
            return FleetRun(ray, plan, config, factory).run()
    if not plan.streams:
        return ArchiveResult(skipped=plan.skipped, manifest=plan.manifest)
    with connected(address, **local_settings) as ray:
        return ArchiveRun(ray, plan, config, factory, progress).run()
