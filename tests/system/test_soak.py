"""A shorter soak than scripts/soak.py (20,000 frames): memory flat, threads all gone, queues within bounds."""

from __future__ import annotations

from rtseg.offline.soak import run_soak


def test_soak_with_a_sink_slower_than_the_model_stays_bounded(tmp_path):
    report = run_soak(frames=2500, slow_sink=0.003, directory=tmp_path)
    assert report.error is None and report.frames_written == 2500
    assert report.rss_growth_mb < 50
    assert report.threads_left == []  # every thread the run started has ended
    for name, biggest in report.queue_max.items():
        assert biggest <= report.queue_bounds[name]
    assert report.queue_max["soak/sinks"] == report.queue_bounds["soak/sinks"]  # the slow sink really applied back-pressure
    lines = (tmp_path / "soak.jsonl").read_text().splitlines()
    assert len(lines) == 2500
    assert report.ok


def test_soak_of_eight_streams_sharing_one_model_stays_bounded(tmp_path):
    report = run_soak(frames=4000, directory=tmp_path, streams=8)
    assert report.error is None and report.frames_written == 4000
    assert report.rss_growth_mb < 50
    assert report.threads_left == []
    assert len(report.queue_max) == 8 * 3
    for name, biggest in report.queue_max.items():
        assert biggest <= report.queue_bounds[name]
    for index in range(8):
        assert len((tmp_path / f"soak{index}.jsonl").read_text().splitlines()) == 500
