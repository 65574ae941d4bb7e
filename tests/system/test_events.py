"""Events from a whole run to a real Mosquitto broker and a real webhook server on 127.0.0.1, through their faults:
the broker killed and restarted mid-run, a webhook answering 500 and then hanging. The run writes every frame,
the JSON Lines file holds every event, what the broker missed is counted in the summary, and the events after the
restart arrive."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from broker_helpers import Subscriber, WebhookServer, require_mosquitto
from helpers import make_clip

from rtseg.api import PreparedRun
from rtseg.core.config import Config, apply_overrides
from rtseg.offline.broker import Mosquitto
from rtseg.offline.stubs import FrameTrigger, SquareDetector
from rtseg.pipeline.planner import Outputs, plan_run

FRAMES, FPS = 60, 20  # a three-second clip, played at its own pace as a camera would be
ANALYTICS = {"zones": [{"name": "left", "points": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}],
             "lines": [{"name": "gate", "points": [[0.7, 0], [0.7, 1]]}], "occupancy_seconds": 0.1}


def _run(tmp_path: Path, events: dict, trigger: FrameTrigger):
    clip = make_clip(tmp_path / "clip.mp4", frames=FRAMES, width=160, height=96, fps=FPS)
    config = apply_overrides(Config(), {"analytics": ANALYTICS, "events": events, "output": {"show": False}}, "test")
    plan = plan_run([str(clip)], Outputs(events=tmp_path / "events.jsonl"), config, realtime=True)
    result = PreparedRun(plan, config, detector=SquareDetector(), extra_sinks=[trigger]).run()
    written = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    return result.summary, written


@pytest.fixture
def mosquitto(tmp_path):
    broker = Mosquitto(require_mosquitto(), tmp_path / "broker")
    broker.start()
    yield broker
    broker.stop()


def test_a_broker_killed_and_restarted_mid_run_costs_no_frame_and_gets_the_later_events(mosquitto, tmp_path):
    watchers: list[Subscriber] = [Subscriber(mosquitto.port, "rtseg/#", qos=1)]

    def restart() -> None:
        mosquitto.start()  # same port
        watchers.append(Subscriber(mosquitto.port, "rtseg/#", qos=1))  # before rtseg's client is back (1 s wait)

    trigger = FrameTrigger({15: mosquitto.kill, 30: restart})
    try:
        summary, written = _run(tmp_path, {"mqtt": mosquitto.url, "mqtt_qos": 1}, trigger)
        after = [e for e in written if e["frame"] > 40]  # written well after the restart
        watchers[-1].wait_for(len(after), timeout=15)
    finally:
        for watcher in watchers:
            watcher.close()
    assert trigger.frames == list(range(FRAMES)) and summary.frames_written == FRAMES  # nothing stalled or lost
    received = [json.loads(m.payload) for watcher in watchers for m in watcher.received()]
    assert len(after) > 5 and all(event in received for event in after)
    name, counts = _figures(summary.streams[0].publishing[0])
    assert name == f"mqtt mqtt://127.0.0.1:{mosquitto.port}"
    # Every event is accounted for; with room in the queue, those of the outage waited and went out after it.
    assert counts["published"] + counts["dropped"] + counts["not delivered"] == len(written)
    assert counts["published"] >= len(written) - 2  # at most what was in flight when the broker died is lost


def _figures(line: str) -> tuple[str, dict[str, int]]:
    """'NAME: 3 published, 0 dropped, 1 not delivered' as the name and the counts."""
    name, _, figures = line.partition(": ")
    return name, {what: int(n) for n, what in (part.split(" ", 1) for part in figures.split(", "))}


def test_a_webhook_that_fails_then_hangs_never_slows_the_run(tmp_path):
    server = WebhookServer([500, 200, 200, "hang"])
    try:
        trigger = FrameTrigger({})
        summary, written = _run(tmp_path, {"webhook": server.url(), "webhook_retries": 2, "timeout": 1.0,
                                           "queue_size": 8}, trigger)
    finally:
        server.stop()
    assert trigger.frames == list(range(FRAMES)) and summary.frames_written == FRAMES
    bodies = [r.json() for r in server.received()]
    assert bodies[0] == bodies[1] == written[0]  # the 500 was retried with the same event
    assert bodies[2] == written[1]  # then the next one; the fourth request hangs and everything after waits
    name, counts = _figures(summary.streams[0].publishing[0])
    assert name == f"webhook {server.url()}" and counts["published"] == 2
    assert counts["published"] + counts["dropped"] + counts["not delivered"] == len(written)
    assert counts["dropped"] > 0  # the bounded queue filled behind the hung request
