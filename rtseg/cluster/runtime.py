"""Ray as rtseg uses it: importing the optional extra, joining or starting a cluster, sizing and watching workers."""

from __future__ import annotations

import importlib
import logging
import math
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rtseg.core.commandline import setup_logging
from rtseg.core.config import ClusterConfig, ModelConfig
from rtseg.core.errors import UsageError
from rtseg.core.redaction import mask_credentials
from rtseg.detect.base import Detector
from rtseg.detect.maskrcnn import MaskRCNNDetector

log = logging.getLogger(__name__)

INSTALL_HINT = 'pip install -e ".[cluster]"'
# A zero-argument callable that builds the workers' detector in place of Mask R-CNN (stubs in tests and benchmarks);
# the CLI takes it from this variable as 'module:callable'. It is pickled to the workers, so it must be importable.
DETECTOR_ENV = "RTSEG_CLUSTER_DETECTOR"
# Ray's single-node mode: every server it starts listens on 127.0.0.1 (read when ray is first imported).
_SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_PING_RETRY_SECONDS = 0.5
_DEFAULT_GCS_PORT = 6379  # what 'ray start --head' listens on unless told otherwise

DetectorFactory = Callable[[], Detector]


def import_ray(single_node: bool = False) -> Any:
    """The ``ray`` module, or one line saying how to install it; ``single_node`` keeps Ray on 127.0.0.1."""
    if single_node and "ray" not in sys.modules:
        os.environ.setdefault(_SINGLE_NODE_ENV, "0")
    try:
        import ray
    except ImportError as exc:
        raise UsageError(f"--cluster needs Ray, which is not installed: {INSTALL_HINT}") from exc
    return ray


@contextmanager
def connected(address: str, **local_settings: Any) -> Iterator[Any]:
    """Ray, joined at ``address`` or, for 'auto', started here on 127.0.0.1; an already connected Ray is reused.

    ``local_settings`` go to ``ray.init`` when a local instance is started (num_cpus, object_store_memory, ...).
    Only what this call started is shut down at the end.
    """
    ray = import_ray(single_node=address == "auto")
    if ray.is_initialized():
        yield ray
        return
    if address != "auto":
        check_reachable(address)
    try:
        if address == "auto":
            ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING, **local_settings)
        else:
            ray.init(address=address, logging_level=logging.WARNING)
    except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
        raise UsageError(f"cannot join the Ray cluster at {address}: {str(exc).splitlines()[0]}") from exc
    try:
        yield ray
    finally:
        ray.shutdown()


def check_reachable(address: str, timeout: float = 3.0) -> None:
    """One line within seconds for an address nothing answers at: ``ray.init`` itself retries for about 20 s,
    printing a warning each time, before it gives up. ``ray://`` client addresses are probed the same way."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        host, port = address.removeprefix("ray://"), str(_DEFAULT_GCS_PORT)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = f"no answer within {timeout:g} s" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise UsageError(f"cannot join the Ray cluster at {address}: nothing answers at {host}:{port} ({reason}); "
                         "start it with 'ray start --head' there, or use --cluster auto") from exc


def detector_factory_from_env() -> DetectorFactory | None:
    """The detector factory named by ``RTSEG_CLUSTER_DETECTOR`` ('module:callable'), or None for Mask R-CNN."""
    path = os.environ.get(DETECTOR_ENV, "").strip()
    if not path:
        return None
    module_name, _, attribute = path.partition(":")
    try:
        factory: DetectorFactory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise UsageError(f"{DETECTOR_ENV}={path}: not an importable 'module:callable' ({exc})") from exc
    return factory


def build_detector(factory: DetectorFactory | None, settings: ModelConfig) -> Detector:
    """The worker's detector: the factory's stand-in, or Mask R-CNN with the planned settings."""
    return factory() if factory is not None else MaskRCNNDetector(settings)


def setup_worker_logging() -> None:
    """Workers log to stderr, which Ray collects and shows on the driver: masked like the CLI's own lines."""
    setup_logging()


def short_error(exc: BaseException) -> str:
    """One masked line for a Ray error (its first line carries the cause; the rest is a remote traceback)."""
    text = str(exc).strip().splitlines()
    return mask_credentials(text[0] if text else exc.__class__.__name__)


@dataclass(frozen=True)
class WorkerShape:
    """How many workers a run starts and what each reserves."""

    count: int
    cpus: float
    gpus: float


def shape_workers(settings: ClusterConfig, resources: dict[str, float], units: int) -> WorkerShape:
    """Workers for ``units`` files or cameras on a cluster with ``resources`` (``ray.cluster_resources()``).

    ``gpus_per_worker < 0`` means one GPU each when the cluster has any. A worker
    that cannot fit at all is a usage error; more workers than fit are cut to what fits.
    """
    cpus, gpus = settings.cpus_per_worker, settings.gpus_per_worker
    have_cpus, have_gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    if gpus < 0:
        gpus = 1.0 if have_gpus >= 1 else 0.0
    for kind, need, have, key in (("CPU", cpus, have_cpus, "cpus_per_worker"), ("GPU", gpus, have_gpus, "gpus_per_worker")):
        if need > have:
            raise UsageError(f"a worker needs {need:g} {kind}(s) but the Ray cluster has {have:g}; "
                             f"lower cluster.{key}")
    fits = min((math.floor(have / need + 1e-9) for need, have in ((cpus, have_cpus), (gpus, have_gpus)) if need > 0),
               default=units)
    wanted = settings.workers or fits
    if wanted > fits:
        log.warning("cluster.workers is %d but only %d worker(s) fit the cluster's resources; starting %d",
                    wanted, fits, fits)
    return WorkerShape(max(1, min(wanted, fits, units)), cpus, gpus)


@dataclass
class WorkerTally:
    """What one worker did, for the closing summary."""

    name: str
    node: str = "?"
    pid: int = 0
    units: int = 0  # files finished (archives) or segments recorded (fleets)
    frames: int = 0
    busy_seconds: float = 0.0
    failed_attempts: int = 0
    deaths: int = 0
    gone: bool = False  # dead and not coming back (restarts exhausted, or its node left)

    def line(self, unit: str) -> str:
        text = f"{self.name} on {self.node}: {self.units} {unit}(s), {self.frames} frames in {self.busy_seconds:.1f} s"
        if self.busy_seconds:
            text += f" ({self.frames / self.busy_seconds:.2f} frames/s)"
        if self.failed_attempts:
            text += f", {self.failed_attempts} failed attempt(s)"
        if self.deaths:
            text += f", died {self.deaths} time(s)" + (", gone" if self.gone else ", restarted by Ray")
        return text


@dataclass
class WorkerPool:
    """Long-lived Ray actors, one per worker, and which of them are ready for work.

    A worker that died is pinged until Ray has restarted it (its ``ready`` call
    answers) or Ray gives it up (the call fails for good); meanwhile its work goes
    elsewhere. Every actor is killed at ``close``, so a reused cluster gets its
    resources back.
    """

    ray: Any
    actors: list[Any]
    tallies: list[WorkerTally] = field(default_factory=list)
    pings: dict[Any, int] = field(default_factory=dict)  # a pending ready() call -> worker index
    ready: list[int] = field(default_factory=list)  # indexes of workers waiting for work

    @classmethod
    def start(cls, ray: Any, worker_class: type, shape: WorkerShape, max_restarts: int,
              arguments: Callable[[int], tuple[Any, ...]]) -> WorkerPool:
        remote = ray.remote(worker_class).options(
            num_cpus=shape.cpus, num_gpus=shape.gpus, max_restarts=max_restarts, max_task_retries=0,
            max_concurrency=2)  # one thread works, the other answers status() and stop()
        actors = [remote.remote(*arguments(i)) for i in range(shape.count)]
        pool = cls(ray, actors, [WorkerTally(f"worker-{i}") for i in range(shape.count)])
        for i in range(shape.count):
            pool.ping(i)
        return pool

    def ping(self, index: int) -> None:
        self.pings[self.actors[index].ready.remote()] = index

    def answer(self, ref: Any) -> None:
        """Take a ready() answer: the worker joins ``ready``, is pinged again, or is gone."""
        index = self.pings.pop(ref)
        tally = self.tallies[index]
        try:
            info = self.ray.get(ref)
        except self.ray.exceptions.ActorDiedError as exc:
            tally.gone = True
            log.warning("%s is gone: %s", tally.name, short_error(exc))
            return
        except self.ray.exceptions.RayActorError:  # restarting: not reachable yet
            time.sleep(_PING_RETRY_SECONDS)
            self.ping(index)
            return
        tally.node, tally.pid = info.node, info.pid
        self.ready.append(index)

    def died(self, index: int) -> None:
        """A call on the worker failed because its process died: count it and wait for Ray to restart it."""
        tally = self.tallies[index]
        tally.deaths += 1
        if index in self.ready:
            self.ready.remove(index)
        self.ping(index)

    def restart(self, index: int) -> None:
        """A worker out of reach while it may still be working: Ray kills and restarts it, then as ``died``."""
        try:
            self.ray.kill(self.actors[index], no_restart=False)
        except Exception as exc:  # noqa: BLE001 - one already gone needs no killing; the ping tells what it is now
            log.debug("restart %s: %s", self.tallies[index].name, exc)
        self.died(index)

    @property
    def alive(self) -> bool:
        return any(not t.gone for t in self.tallies)

    def close(self) -> None:
        for actor in self.actors:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception as exc:  # noqa: BLE001 - an actor already gone needs no killing
                log.debug("kill: %s", exc)
