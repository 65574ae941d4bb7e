"""Analytics events to an MQTT broker (paho-mqtt 2, the ``events`` extra).

Each event is published to ``PREFIX/STREAM/KIND`` (``events.mqtt_topic``) with
its JSON object (``SceneEvent.as_dict``) as payload, at ``events.mqtt_qos``;
occupancy events go to ``PREFIX/STREAM/occupancy/ZONE`` and are retained, so a
client that subscribes later learns every zone's current count at once (a broker
keeps one retained message per topic).

paho's own network thread connects (asynchronously: a broker that is down at
start fails nothing), reconnects with a doubling wait (1 s to 30 s) and
resends unacknowledged QoS 1/2 messages after a reconnect. Our publisher thread
hands it events only while connected: while the broker is away they wait in the
bounded queue (counted dropped once it is full), and QoS 0 messages lost in
paho's buffer when the connection broke are handed again after the reconnect.
"""

from __future__ import annotations

import collections
import json
import logging
import ssl
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from rtseg.core.config import EventsConfig
from rtseg.core.errors import ConfigError
from rtseg.core.events import SceneEvent
from rtseg.core.redaction import mask_credentials
from rtseg.sinks.publish import POLL, Publisher, Redactor

if TYPE_CHECKING:
    from paho.mqtt.client import MQTTMessageInfo

log = logging.getLogger(__name__)

WINDOW = 100  # messages handed to paho and not yet confirmed; beyond it the thread waits (bounds paho's buffer)
KEEPALIVE = 30  # seconds; a broker that stops answering is noticed after about 1.5 times this
RECONNECT_MIN, RECONNECT_MAX = 1, 30  # paho's reconnect wait: doubling from min to max seconds
STOP_LOOP = 1.0  # seconds close() waits for paho's network thread to end
PAHO_MISSING = "events.mqtt needs paho-mqtt: pip install 'rtseg[events]'"


def parse_mqtt_url(url: str) -> tuple[str, int, str | None, str | None, bool]:
    """``(host, port, username, password, tls)`` of ``mqtt://[user:password@]host[:port]`` (or ``mqtts://``).

    Raises ConfigError with one line (credentials masked) for anything else.
    """
    shown = mask_credentials(url)
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ConfigError(f"events.mqtt must look like mqtt://[user:password@]host[:port] (or mqtts://), not {shown}")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"events.mqtt has an invalid port: {shown}") from None
    if not parts.hostname:
        raise ConfigError(f"events.mqtt names no host: {shown}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"events.mqtt takes no path or query (the topic is events.mqtt_topic): {shown}")
    if parts.password is not None and not parts.username:
        raise ConfigError(f"events.mqtt has a password but no user name: {shown}")
    tls = parts.scheme == "mqtts"
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return parts.hostname, port or (8883 if tls else 1883), username, password, tls


def event_topic(prefix: str, event: SceneEvent) -> str:
    """``PREFIX/STREAM/KIND``; occupancy per zone (``.../occupancy/ZONE``), so each zone's count is retained."""
    return f"{prefix}/{event.kind}/{event.region}" if event.kind == "occupancy" else f"{prefix}/{event.kind}"


def topic_prefix(config: EventsConfig, stream: str) -> str:
    """``PREFIX/STREAM``; ConfigError if a part holds an MQTT wildcard, which no published topic may."""
    for what, value in (("events.mqtt_topic", config.mqtt_topic), ("the stream name", stream)):
        if any(c in value for c in "+#\0"):
            raise ConfigError(f"{what} may not contain '+', '#' or NUL in an MQTT topic: {value!r}")
    prefix = config.mqtt_topic.strip("/")
    return f"{prefix}/{stream}" if prefix else stream


def check_mqtt(config: EventsConfig, stream: str) -> None:
    """Every check MqttSink's constructor makes before it starts anything (URL, topic, paho installed)."""
    parse_mqtt_url(config.mqtt)
    topic_prefix(config, stream)
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError:
        raise ConfigError(PAHO_MISSING) from None


class MqttSink(Publisher):
    """Publishes each event of one stream to ``PREFIX/STREAM/KIND``; see the module's docstring."""

    def __init__(self, config: EventsConfig, stream: str) -> None:
        host, port, username, password, tls = parse_mqtt_url(config.mqtt)
        self._prefix = topic_prefix(config, stream)
        try:
            import paho.mqtt.client as paho
            from paho.mqtt.enums import CallbackAPIVersion
        except ImportError:
            raise ConfigError(PAHO_MISSING) from None
        super().__init__(f"mqtt {config.mqtt}", config, Redactor(config.mqtt))
        self._paho = paho
        self._qos = int(config.mqtt_qos)
        self._connected = threading.Event()
        # QoS 1/2: mid -> event, until the broker acknowledges (on_publish). QoS 0: (info, event) until written.
        self._acked_mids: set[int] = set()  # acknowledgements that came before publish() returned our mid
        self._waiting: dict[int, SceneEvent] = {}
        self._written: collections.deque[tuple[MQTTMessageInfo, SceneEvent]] = collections.deque()

        client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        if username is not None:
            client.username_pw_set(username, password)
        if tls:
            client.tls_set_context(ssl.create_default_context())
        client.connect_timeout = min(self._timeout, 30.0)
        client.reconnect_delay_set(RECONNECT_MIN, RECONNECT_MAX)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client
        client.connect_async(host, port, keepalive=KEEPALIVE)
        client.loop_start()
        self._start()

    @property
    def connected(self) -> bool:
        """Whether the broker has accepted the connection and not lost it since."""
        return self._connected.is_set()

    # --- paho's network thread ------------------------------------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._trouble(f"the broker refused the connection ({reason_code}); {self._waiting_note()}")
            return
        self._connected.set()
        self._recovered()

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self._trouble(f"cannot connect to the broker; {self._waiting_note()}")

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self._connected.clear()
        if not self._closing.is_set():
            self._trouble(f"connection lost ({reason_code}); {self._waiting_note()}")

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        if self._qos == 0:  # QoS 0 is confirmed through its info, when paho has written it
            return
        with self._lock:
            if self._waiting.pop(mid, None) is not None:
                self._published += 1
            else:
                self._acked_mids.add(mid)

    # --- our publisher thread --------------------------------------------------------------------------------
    def _run(self) -> None:
        # Events taken from the queue and not yet handed to paho: one held while the broker is away, plus QoS 0
        # messages paho lost when the connection broke (sent again first, in their order).
        held: collections.deque[SceneEvent] = collections.deque()
        while not self._abort.is_set():
            self._reap_written(held)
            if not held:
                event = self._take()
                if event is None:
                    if self._stopping() and not self._in_flight():
                        break
                    continue
                held.append(event)
            if not self._connected.is_set() or self._in_flight() >= WINDOW:
                self._abort.wait(POLL)
                continue
            event = held[0]
            info = self._client.publish(event_topic(self._prefix, event), _payload(event), qos=self._qos,
                                        retain=event.kind == "occupancy")
            if self._qos > 0:
                # paho keeps a QoS 1/2 message even when it could not send it now (rc NO_CONN: the connection
                # broke just after our check) and sends it after the reconnect: it is in paho's hands either way.
                held.popleft()
                with self._lock:
                    if info.mid in self._acked_mids:
                        self._acked_mids.discard(info.mid)
                        self._published += 1
                    else:
                        self._waiting[info.mid] = event
            elif info.rc == self._paho.MQTT_ERR_SUCCESS:
                held.popleft()
                self._written.append((info, event))
            else:  # QoS 0 refused (not connected after all): keep it and try again once reconnected
                self._abort.wait(POLL)
        self._reap_written(held)
        self._count(failed=len(held))

    def _reap_written(self, held: collections.deque[SceneEvent]) -> None:
        """Count QoS 0 messages paho has written; put those it lost with a broken connection back in front."""
        lost: list[SceneEvent] = []
        while self._written:
            info, event = self._written[0]
            try:
                if not info.is_published():
                    break
                self._count(published=1)
            except (RuntimeError, ValueError):  # rc CONN_LOST: dropped from paho's buffer unsent
                lost.append(event)
            self._written.popleft()
        held.extendleft(reversed(lost))

    def _in_flight(self) -> int:
        with self._lock:
            return len(self._waiting) + len(self._written)

    def _shutdown(self) -> None:
        """Disconnect (flushing what paho holds), stop paho's thread within STOP_LOOP, count the unconfirmed."""
        self._client.disconnect()
        stopper = threading.Thread(target=self._client.loop_stop, name="rtseg-mqtt-stop", daemon=True)
        stopper.start()
        stopper.join(STOP_LOOP)  # paho's thread is a daemon: if it hangs in a connect, it cannot keep us
        written = sum(1 for info, _ in self._written if _written_out(info))
        with self._lock:
            self._published += written
            self._failed += len(self._waiting) + len(self._written) - written
            self._waiting.clear()
            self._written.clear()


def _written_out(info: MQTTMessageInfo) -> bool:
    try:
        return info.is_published()
    except (RuntimeError, ValueError):
        return False


def _payload(event: SceneEvent) -> bytes:
    return json.dumps(event.as_dict(), separators=(",", ":")).encode("utf-8")
