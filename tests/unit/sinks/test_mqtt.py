"""MqttSink against a real Mosquitto broker on 127.0.0.1: topics, payload bytes, QoS, retain, outages, credentials.

Needs Debian's ``mosquitto`` and paho-mqtt (the ``events`` extra): skipped without them, failed under
RTSEG_REQUIRE_LIVE=1 (CI). The only timings asserted are generous upper bounds that prove write() and
close() do not wait for the broker.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import pytest
from broker_helpers import (
    Subscriber,
    frame_with,
    make_certificates,
    require_mosquitto,
    require_paho,
    scene_event,
    wait_until,
    wire_json,
)

from rtseg.core.config import EventsConfig
from rtseg.core.errors import ConfigError
from rtseg.offline.broker import Mosquitto
from rtseg.offline.rtsp import free_port
from rtseg.sinks.mqtt import MqttSink
from rtseg.sinks.publish import STOP_GRACE

WRITE_BOUND = 0.05  # seconds: a write() that waited for the network would take far longer than this
LONG_WAIT = 15.0  # seconds allowed for paho to reconnect (its wait doubles 1, 2, 4 s) and deliver


@pytest.fixture(scope="module")
def mosquitto_binary() -> str:
    return require_mosquitto()


@pytest.fixture
def broker(mosquitto_binary: str, tmp_path: Path):
    broker = Mosquitto(mosquitto_binary, tmp_path / "broker")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def closing():
    """Closes every sink and subscriber a test opened, even when it fails half-way."""
    require_paho()  # every test here opens an MqttSink
    opened: list = []
    yield opened.append
    for thing in reversed(opened):
        thing.close()


def _sink(url: str, closing, **settings) -> MqttSink:
    sink = MqttSink(EventsConfig(mqtt=url, **settings), "cam1")
    closing(sink)
    return sink


def _conserved(sink: MqttSink, written: int) -> None:
    figures = sink.figures()
    assert figures.published + figures.dropped + figures.failed == written, figures


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_events_arrive_on_their_topics_with_their_json_and_qos(broker, closing, qos):
    subscriber = Subscriber(broker.port, "rtseg/#", qos=2)
    closing(subscriber)
    sink = _sink(broker.url, closing, mqtt_qos=qos)
    events = [scene_event(1), scene_event(2, "exit", dwell=3.25), scene_event(3, "cross"),
              scene_event(4, "loiter", dwell=12.0), scene_event(5, "occupancy")]
    sink.write(frame_with(*events[:2]))
    sink.write(frame_with())  # a frame without events publishes nothing
    sink.write(frame_with(*events[2:]))
    received = subscriber.wait_for(len(events))
    sink.close()

    assert [(m.topic, m.payload) for m in received] == [
        (f"rtseg/cam1/{e.kind}" + ("/door" if e.kind == "occupancy" else ""), wire_json(e)) for e in events]
    assert {m.qos for m in received} == {qos}  # the subscriber asked for 2: it gets what was published with
    assert received[1].json()["dwell"] == 3.25 and received[2].json()["line"] == "gate"
    assert sink.figures().published == len(events) and sink.figures().failed == 0
    time.sleep(0.2)
    assert len(subscriber.received()) == len(events)  # and nothing twice


def test_occupancy_is_retained_per_zone_and_nothing_else(broker, closing):
    sink = _sink(broker.url, closing, mqtt_topic="site/a/", mqtt_qos=1)
    yard = dataclasses.replace(scene_event(5, "occupancy"), region="yard")
    sink.write(frame_with(scene_event(1), scene_event(2, "occupancy"), yard, scene_event(3, "occupancy"),
                          scene_event(4)))
    assert wait_until(lambda: sink.figures().published == 5, LONG_WAIT)

    late = Subscriber(broker.port, "site/#")  # subscribes after the fact: gets retained messages only
    closing(late)
    late.wait_for(2, timeout=2.0)
    time.sleep(0.3)  # time for anything else that might (wrongly) have been retained
    received = sorted(late.received(), key=lambda m: m.topic)
    assert [(m.topic, m.payload, m.retain) for m in received] == [  # each zone's latest count only
        ("site/a/cam1/occupancy/door", wire_json(scene_event(3, "occupancy")), True),
        ("site/a/cam1/occupancy/yard", wire_json(yard), True)]


@pytest.mark.parametrize("qos", [0, 1])
def test_broker_killed_mid_run_then_restarted(mosquitto_binary, tmp_path, closing, qos):
    broker = Mosquitto(mosquitto_binary, tmp_path / "broker", persistent=True)
    broker.start()
    try:
        subscriber = Subscriber(broker.port, "rtseg/#", qos=1, client_id="watcher")
        sink = _sink(broker.url, closing, mqtt_qos=qos)
        sink.write(frame_with(*[scene_event(i) for i in range(5)]))
        assert len(subscriber.wait_for(5)) == 5
        time.sleep(1.5)  # the broker saves the watcher's session (autosave_interval 1)
        subscriber.close()
        broker.kill()
        assert wait_until(lambda: not sink.connected, 5.0)

        slowest = 0.0
        for i in range(5, 25):
            start = time.monotonic()
            sink.write(frame_with(scene_event(i)))
            slowest = max(slowest, time.monotonic() - start)
        assert slowest < WRITE_BOUND
        time.sleep(0.3)
        assert sink.figures().published == 5  # nothing went out while the broker was away

        broker.start()  # same port, the watcher's session restored from disk
        subscriber = Subscriber(broker.port, "rtseg/#", qos=1, client_id="watcher")
        closing(subscriber)
        received = subscriber.wait_for(20, timeout=LONG_WAIT)
        sink.close()
    finally:
        broker.stop()
    assert sorted(m.json()["frame"] for m in received) == list(range(5, 25))
    assert sink.figures().line() == f"mqtt {broker.url}: 25 published, 0 dropped, 0 not delivered"


@pytest.mark.parametrize("qos", [0, 1])
def test_broker_down_at_start_then_up(mosquitto_binary, tmp_path, closing, qos):
    broker = Mosquitto(mosquitto_binary, tmp_path / "broker", persistent=True)
    broker.start()  # once, so that the watcher's session exists on disk before the sink runs
    subscriber = Subscriber(broker.port, "rtseg/#", qos=1, client_id="watcher")
    time.sleep(1.5)
    subscriber.close()
    broker.kill()
    try:
        start = time.monotonic()
        sink = _sink(broker.url, closing, mqtt_qos=qos)
        for i in range(10):
            sink.write(frame_with(scene_event(i)))
        assert time.monotonic() - start < 1.0  # nothing waited for a connection
        assert not sink.connected

        broker.start()
        subscriber = Subscriber(broker.port, "rtseg/#", qos=1, client_id="watcher")
        closing(subscriber)
        received = subscriber.wait_for(10, timeout=LONG_WAIT)
        sink.close()
    finally:
        broker.stop()
    assert [m.json()["frame"] for m in received] == list(range(10))  # in order: held ones first
    assert (sink.figures().published, sink.figures().failed) == (10, 0)


def test_close_returns_in_budget_while_the_broker_is_down_and_counts_what_was_left(closing):
    sink = _sink(f"mqtt://127.0.0.1:{free_port()}", closing, timeout=0.5)
    for i in range(12):
        sink.write(frame_with(scene_event(i)))
    start = time.monotonic()
    sink.close()
    assert time.monotonic() - start < 0.5 + STOP_GRACE + 2.0
    assert sink.figures().line().endswith(": 0 published, 0 dropped, 12 not delivered")
    sink.write(frame_with(scene_event(99)))  # after close: counted, never raised
    assert sink.figures().dropped == 1


def test_full_queue_drops_and_counts_without_blocking(closing):
    sink = _sink(f"mqtt://127.0.0.1:{free_port()}", closing, queue_size=5, timeout=0.2)
    start = time.monotonic()
    sink.write(frame_with(*[scene_event(i) for i in range(20)]))
    assert time.monotonic() - start < WRITE_BOUND
    sink.close()
    figures = sink.figures()
    # The queue holds 5; the publisher thread may already hold one more, taken out to wait for the broker.
    assert figures.dropped in (14, 15)
    assert (figures.published, figures.failed) == (0, 20 - figures.dropped)
    _conserved(sink, 20)


def test_credentials_work_and_never_show(mosquitto_binary, tmp_path, closing, caplog):
    caplog.set_level(logging.DEBUG)
    password = "s3cret-pw"
    broker = Mosquitto(mosquitto_binary, tmp_path / "broker", user=("cam", password))
    broker.start()
    try:
        subscriber = Subscriber(broker.port, "rtseg/#", auth=("cam", password))
        closing(subscriber)
        good = _sink(f"mqtt://cam:{password}@127.0.0.1:{broker.port}", closing)
        bad = _sink(f"mqtt://cam:wrong-{password}@127.0.0.1:{broker.port}", closing, timeout=0.3)
        good.write(frame_with(scene_event(1)))
        bad.write(frame_with(scene_event(2)))
        assert [m.json()["frame"] for m in subscriber.wait_for(1)] == [1]
        assert wait_until(lambda: "refused" in caplog.text, LONG_WAIT)
        good.close()
        bad.close()
    finally:
        broker.stop()
    assert good.figures().line() == f"mqtt mqtt://cam:***@127.0.0.1:{broker.port}: 1 published, 0 dropped, 0 not delivered"
    assert bad.figures().line().endswith("0 published, 0 dropped, 1 not delivered")
    with pytest.raises(ConfigError) as error:
        MqttSink(EventsConfig(mqtt=f"mqtt://cam:{password}@127.0.0.1:notaport"), "cam1")
    shown = caplog.text + good.figures().line() + bad.figures().line() + str(error.value)
    assert "***" in shown and password not in shown


def test_mqtts_verifies_the_broker_certificate(mosquitto_binary, tmp_path, closing, monkeypatch):
    certificates = make_certificates(tmp_path / "tls")
    broker = Mosquitto(mosquitto_binary, tmp_path / "broker", tls=certificates)
    broker.start()
    try:
        subscriber = Subscriber(broker.port, "rtseg/#", ca=certificates.ca)
        closing(subscriber)
        untrusting = _sink(broker.url, closing, timeout=0.3)  # the system's CAs do not know ours
        monkeypatch.setenv("SSL_CERT_FILE", str(certificates.ca))  # read when the sink makes its TLS context
        trusting = _sink(broker.url, closing)
        for sink in (untrusting, trusting):
            sink.write(frame_with(scene_event(1)))
        assert [m.payload for m in subscriber.wait_for(1)] == [wire_json(scene_event(1))]
        time.sleep(0.3)
        trusting.close()
        untrusting.close()
    finally:
        broker.stop()
    assert broker.url.startswith("mqtts://")
    assert [(s.figures().published, s.figures().failed) for s in (trusting, untrusting)] == [(1, 0), (0, 1)]
    assert len(subscriber.received()) == 1
