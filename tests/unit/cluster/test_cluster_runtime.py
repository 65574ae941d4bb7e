"""Without a Ray cluster: the missing extra, sizing workers, segment numbering, the cluster config section."""

from __future__ import annotations

import sys

import pytest

from rtseg.cli import main
from rtseg.cluster.runtime import INSTALL_HINT, WorkerShape, shape_workers, short_error
from rtseg.cluster.workers import next_segment, segment
from rtseg.core.config import ClusterConfig, load_config
from rtseg.core.errors import ConfigError, UsageError


def test_without_the_extra_the_cluster_flag_is_one_line_naming_the_install(monkeypatch, capsys, clip, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError, as when it is not installed
    code = main(["--source", str(clip), "--output", str(tmp_path / "out"), "--cluster", "auto"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [f"rtseg: error: --cluster needs Ray, which is not installed: {INSTALL_HINT}"]
    assert INSTALL_HINT == 'pip install -e ".[cluster]"'
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("settings", "resources", "units", "expected"), [
    (ClusterConfig(workers=2, cpus_per_worker=1, gpus_per_worker=0.5), {"CPU": 2, "GPU": 1}, 6, WorkerShape(2, 1, 0.5)),
    (ClusterConfig(cpus_per_worker=2), {"CPU": 8, "GPU": 2}, 10, WorkerShape(2, 2, 1.0)),  # auto: one GPU each
    (ClusterConfig(cpus_per_worker=2), {"CPU": 8}, 10, WorkerShape(4, 2, 0.0)),  # no GPU: as many as the CPUs hold
    (ClusterConfig(cpus_per_worker=1, gpus_per_worker=0.25), {"CPU": 16, "GPU": 1}, 3, WorkerShape(3, 1, 0.25)),
    (ClusterConfig(workers=8, cpus_per_worker=1, gpus_per_worker=0), {"CPU": 3, "GPU": 1}, 20, WorkerShape(3, 1, 0)),
])
def test_workers_are_sized_to_the_cluster_and_the_work(settings, resources, units, expected):
    assert shape_workers(settings, resources, units) == expected


def test_a_worker_that_cannot_fit_is_a_usage_error():
    with pytest.raises(UsageError, match="needs 1 GPU.*has 0; lower cluster.gpus_per_worker"):
        shape_workers(ClusterConfig(gpus_per_worker=1), {"CPU": 8}, 4)
    with pytest.raises(UsageError, match="needs 4 CPU.*has 2"):
        shape_workers(ClusterConfig(cpus_per_worker=4), {"CPU": 2}, 4)


def test_a_new_segment_never_takes_the_name_of_an_earlier_one(tmp_path):
    finals = [tmp_path / "gate.mp4", tmp_path / "gate.jsonl"]
    assert next_segment(finals) == 0 and segment(finals, 0) == finals
    finals[0].write_bytes(b"x")
    assert next_segment(finals) == 1
    assert segment(finals, 1) == [tmp_path / "gate-1.mp4", tmp_path / "gate-1.jsonl"]
    (tmp_path / "gate-1.jsonl").write_text("")  # any of a camera's files takes its number
    assert next_segment(finals) == 2


def test_the_cluster_section_is_read_and_checked(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("cluster: {workers: 4, gpus_per_worker: 0.5, cpus_per_worker: 3, max_attempts: 5}\n")
    settings = load_config(good).cluster
    assert (settings.workers, settings.gpus_per_worker, settings.cpus_per_worker, settings.max_attempts) == (4, 0.5, 3.0, 5)
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster: {max_attempts: 0, gpus: 1}\n")
    with pytest.raises(ConfigError, match=r"cluster.max_attempts: 0 is below the minimum 1; cluster.gpus: unknown key"):
        load_config(bad)


def test_a_workers_error_reaches_the_drivers_log_with_its_credentials_masked():
    """A Ray error's first line, as the fleet and archive drivers log it, in each form a camera URL has a secret."""
    error = RuntimeError("cannot open rtsp://SECRET@cam/1, nor rtsp://cam/1?user=a&password=SECRET\n"
                         "Traceback (most recent call last): ... rtsp://admin:SECRET@cam/1")
    assert short_error(error) == "cannot open rtsp://***@cam/1, nor rtsp://cam/1?user=a&password=***"
