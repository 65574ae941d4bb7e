"""Real peers for the event publishers' tests: Debian's Mosquitto broker, a paho subscriber, local HTTP servers.

Everything listens on 127.0.0.1 on a free port. Mosquitto is skipped where it
is not installed, unless ``RTSEG_REQUIRE_LIVE=1`` (as in CI): then its absence
fails the test (``require_mosquitto``).
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from rtseg.core.events import SceneEvent
from rtseg.core.structures import Frame
from rtseg.offline.broker import Certificates, find_mosquitto


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("RTSEG_REQUIRE_LIVE") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def require_paho() -> None:
    """paho importable (the ``events`` extra); else skip (fail under RTSEG_REQUIRE_LIVE=1)."""
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError:
        _skip_or_fail("paho-mqtt not installed (pip install 'rtseg[events]')")


def require_mosquitto() -> str:
    """The broker's path and paho importable; else skip (fail under RTSEG_REQUIRE_LIVE=1)."""
    binary = find_mosquitto()
    if binary is None:
        _skip_or_fail("mosquitto not installed (apt-get install mosquitto)")
    elif shutil.which("mosquitto_passwd") is None:
        _skip_or_fail("mosquitto_passwd not installed (apt-get install mosquitto)")
    require_paho()
    assert binary is not None
    return binary


def wait_until(condition, timeout: float, step: float = 0.02) -> bool:
    """Poll ``condition()`` until it holds (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


def make_certificates(directory: Path) -> Certificates:
    """A throwaway CA and a server certificate for IP 127.0.0.1 it signed, made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not installed")
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, request = directory / "server.pem", directory / "server.key", directory / "server.csr"
    extensions = directory / "server.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                          "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=rtseg test CA",
        "-keyout", str(ca_key), "-out", str(ca))
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(request))
    run("x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "2",
        "-extfile", str(extensions), "-out", str(cert))
    return Certificates(ca, cert, key)


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool

    def json(self) -> dict:
        return json.loads(self.payload)


class Subscriber:
    """A paho client that subscribes to ``topic`` (again after every reconnect) and keeps what arrives.

    With a ``client_id`` its session is persistent (clean_session False): the broker keeps messages for it
    while it is away.
    """

    def __init__(self, port: int, topic: str = "#", qos: int = 2, auth: tuple[str, str] | None = None,
                 client_id: str | None = None, ca: Path | None = None) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[Received] = []
        self.subscribed = threading.Event()
        self._lock = threading.Lock()
        self.topic, self.qos = topic, qos
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or "",
                                  clean_session=client_id is None, protocol=paho.MQTTv311)
        if auth:
            self.client.username_pw_set(*auth)
        if ca is not None:
            self.client.tls_set(ca_certs=str(ca))
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_disconnect = lambda *a: self.subscribed.clear()
        self.client.on_message = self._on_message
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise TimeoutError("the subscriber did not get its subscription")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe(self.topic, qos=self.qos)

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.append(Received(message.topic, bytes(message.payload), message.qos, bool(message.retain)))

    def received(self) -> list[Received]:
        with self._lock:
            return list(self.messages)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        wait_until(lambda: len(self.received()) >= count, timeout)
        return self.received()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers each POST with the next status of the server's script (the last one repeats); 'hang' never answers."""

    protocol_version = "HTTP/1.1"  # keeps connections alive, as most servers do

    def setup(self) -> None:
        super().setup()
        self.server.owner.connections.append(self.connection)  # type: ignore[attr-defined]

    def do_POST(self) -> None:
        server: WebhookServer = self.server.owner  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status = server.next_status()
        server.record(self.path, dict(self.headers), body, status)
        if status == "hang":
            server.release.wait(60)
            self.close_connection = True
            return
        self.send_response(int(status))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args) -> None:
        pass


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int | str

    def json(self) -> dict:
        return json.loads(self.body)


class WebhookServer:
    """A threaded http.server on 127.0.0.1 answering POSTs as ``script`` says, e.g. [500, 200] or ['hang']."""

    def __init__(self, script: list[int | str] | None = None, port: int = 0, tls: Certificates | None = None) -> None:
        self.script = list(script or [200])
        self.requests: list[Request] = []
        self.release = threading.Event()  # set at stop: hung handlers return
        self.connections: list[socket.socket] = []  # shut at stop, kept-alive ones too, as a server that goes away
        self._lock = threading.Lock()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.port = int(self.httpd.server_address[1])
        self.tls = tls is not None
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls.cert, tls.key)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def next_status(self) -> int | str:
        with self._lock:
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    def record(self, path: str, headers: dict[str, str], body: bytes, status: int | str) -> None:
        with self._lock:
            self.requests.append(Request(path, headers, body, status))

    def received(self) -> list[Request]:
        with self._lock:
            return list(self.requests)

    def url(self, path: str = "/events") -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        for connection in self.connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def scene_event(frame: int, kind: str = "enter", stream: str = "cam1", **fields) -> SceneEvent:
    """An event of zone 'door' (or line 'gate' for cross), numbered by ``frame`` so tests can tell them apart."""
    region, region_kind = ("gate", "line") if kind == "cross" else ("door", "zone")
    defaults: dict = {"track_id": frame, "class_name": "person"}
    if kind == "occupancy":
        defaults = {"count": frame % 5, "counts": {"person": frame % 5}}
    elif kind == "cross":
        defaults["direction"] = "in"
    defaults.update(fields)
    return SceneEvent(kind, stream, region, region_kind, frame / 30, 1_780_000_000.0 + frame / 30, frame, **defaults)


def frame_with(*events: SceneEvent) -> Frame:
    """A 1x1 frame carrying ``events``: publishers look at nothing else."""
    index = events[0].frame if events else 0
    return Frame(index, np.zeros((1, 1, 3), np.uint8), index, Fraction(1, 30), 0.0, events=list(events))


def wire_json(event: SceneEvent) -> bytes:
    """The exact payload bytes a publisher sends for ``event``."""
    return json.dumps(event.as_dict(), separators=(",", ":")).encode("utf-8")
