"""The event publishers a configuration asks for, checked together before any of them starts."""

from __future__ import annotations

from rtseg.core.config import EventsConfig
from rtseg.sinks.mqtt import MqttSink, check_mqtt
from rtseg.sinks.publish import Publisher
from rtseg.sinks.webhook import WebhookSink, check_webhook


def open_publishers(config: EventsConfig, stream: str) -> list[Publisher]:
    """The publishers ``config`` asks for (MQTT, webhook), for one stream; raises ConfigError before starting any."""
    if config.mqtt:
        check_mqtt(config, stream)
    if config.webhook:
        check_webhook(config)
    publishers: list[Publisher] = []
    if config.mqtt:
        publishers.append(MqttSink(config, stream))
    if config.webhook:
        publishers.append(WebhookSink(config, stream))
    return publishers
