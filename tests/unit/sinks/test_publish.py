"""What every event publisher shares: figures, secret masking, checks before any work, the bounded queue.

The publishers against real brokers and servers are in test_mqtt.py and test_webhook.py.
"""

from __future__ import annotations

import sys
import threading
import time

import pytest
from broker_helpers import frame_with, scene_event

from rtseg.core.config import EventsConfig
from rtseg.core.errors import ConfigError
from rtseg.core.redaction import mask_credentials
from rtseg.offline.rtsp import free_port
from rtseg.sinks.mqtt import PAHO_MISSING, parse_mqtt_url, topic_prefix
from rtseg.sinks.publish import PublisherFigures, Redactor, backoff
from rtseg.sinks.publishing import open_publishers


def test_figures_line():
    figures = PublisherFigures("mqtt mqtt://cam:***@127.0.0.1:1883", 120, 0, 3)
    assert figures.line() == "mqtt mqtt://cam:***@127.0.0.1:1883: 120 published, 0 dropped, 3 not delivered"


@pytest.mark.parametrize(("text", "masked"), [
    ("mqtt://cam:pw@host:1883", "mqtt://cam:***@host:1883"),
    ("https://h/hook?token=abc&site=a", "https://h/hook?token=***&site=a"),
    ("https://h/hook?site=a&api_key=abc#x", "https://h/hook?site=a&api_key=***#x"),
    ("https://h/h?Password=abc&X-Amz-Signature=f00&secret_id=9", "https://h/h?Password=***&X-Amz-Signature=***&secret_id=***"),
    ("https://u:p@h/h?access_token=abc failed", "https://u:***@h/h?access_token=*** failed"),
    ("https://h/h?site=a&page=2", "https://h/h?site=a&page=2"),  # nothing secret: left as it is
    ("https://tok-123@h/hook", "https://***@h/hook"),  # a token alone before the '@'
])
def test_mask_credentials_in_publishers_urls(text, masked):
    assert mask_credentials(text) == masked


def test_redactor_also_masks_bare_secret_values():
    redact = Redactor("https://u:p%40ss@h/hook?token=tok-123&site=a")
    assert redact("header was tok-123; password p@ss; site a") == "header was ***; password ***; site a"
    assert Redactor("https://tok-456@h/hook")("Authorization: tok-456") == "Authorization: ***"


def test_backoff_doubles_from_half_a_second_to_thirty():
    assert [backoff(n) for n in range(1, 9)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_mqtt_url():
    assert parse_mqtt_url("mqtt://broker.lan") == ("broker.lan", 1883, None, None, False)
    assert parse_mqtt_url("mqtt://cam:p%40ss@10.0.0.2:1884/") == ("10.0.0.2", 1884, "cam", "p@ss", False)
    assert parse_mqtt_url("mqtts://cam@broker") == ("broker", 8883, "cam", None, True)


@pytest.mark.parametrize("url", ["http://cam:s3cret@host", "broker:1883", "mqtt://cam:s3cret@host:99999",
                                 "mqtt://cam:s3cret@", "mqtt://cam:s3cret@host/topic", "mqtt://:s3cret@host",
                                 "tcp://host:1883"])
def test_invalid_mqtt_urls_are_one_masked_line(url):
    with pytest.raises(ConfigError) as error:
        parse_mqtt_url(url)
    message = str(error.value)
    assert message.startswith("events.mqtt") and "\n" not in message and "s3cret" not in message


def test_topics_cannot_hold_wildcards():
    assert topic_prefix(EventsConfig(mqtt_topic="rtseg"), "cam1") == "rtseg/cam1"
    assert topic_prefix(EventsConfig(mqtt_topic="/site/a/"), "cam1") == "site/a/cam1"
    assert topic_prefix(EventsConfig(mqtt_topic=""), "cam1") == "cam1"
    for prefix, stream in (("rtseg/#", "cam1"), ("rtseg", "cam+1")):
        with pytest.raises(ConfigError, match="may not contain"):
            topic_prefix(EventsConfig(mqtt_topic=prefix), stream)


def test_paho_missing_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)  # makes `import paho.mqtt.client` fail
    from rtseg.sinks.mqtt import MqttSink

    with pytest.raises(ConfigError) as error:
        MqttSink(EventsConfig(mqtt="mqtt://127.0.0.1"), "cam1")
    assert str(error.value) == PAHO_MISSING == "events.mqtt needs paho-mqtt: pip install 'rtseg[events]'"


def test_open_publishers_checks_everything_before_starting_anything():
    pytest.importorskip("paho.mqtt.client")
    assert open_publishers(EventsConfig(), "cam1") == []
    threads = threading.active_count()
    with pytest.raises(ConfigError, match="events.webhook"):
        open_publishers(EventsConfig(mqtt=f"mqtt://127.0.0.1:{free_port()}", webhook="file:///tmp/x"), "cam1")
    assert threading.active_count() == threads  # no MQTT client was started for the valid half


def test_publishers_are_sinks_that_never_wait():
    pytest.importorskip("paho.mqtt.client")
    config = EventsConfig(mqtt=f"mqtt://127.0.0.1:{free_port()}", webhook=f"http://127.0.0.1:{free_port()}/",
                          timeout=0.3, queue_size=3)
    publishers = open_publishers(config, "cam1")
    assert [type(p).__name__ for p in publishers] == ["MqttSink", "WebhookSink"]
    start = time.monotonic()
    for publisher in publishers:
        publisher.write(frame_with(*[scene_event(i) for i in range(10)]))
        publisher.write(frame_with())
    assert time.monotonic() - start < 0.1
    for publisher in publishers:
        publisher.close()
        publisher.close()  # twice is harmless
        figures = publisher.figures()
        assert figures.published == 0 and figures.dropped >= 6
        assert figures.published + figures.dropped + figures.failed == 10
