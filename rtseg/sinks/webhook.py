"""Analytics events to an HTTP(S) endpoint: one JSON POST per event, standard library only.

Each event's JSON object (``SceneEvent.as_dict``) is POSTed with
``Content-Type: application/json``. A request has ``events.timeout`` seconds in
all; a failed one is tried again up to ``events.webhook_retries`` times with a
doubling wait (0.5 s, 1 s, 2 s, ... at most 30 s). Timeouts, connection errors,
5xx, 408 and 429 are retried; any other answer outside 2xx (a 404, a 401, a
redirect) would fail the same way again and is counted not delivered at once.
A user name and password in the URL are sent as HTTP Basic authentication.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import socket
import ssl
import threading
from urllib.parse import unquote, urlsplit

from rtseg.core.config import EventsConfig
from rtseg.core.errors import ConfigError
from rtseg.core.events import SceneEvent
from rtseg.core.redaction import mask_credentials
from rtseg.sinks.publish import Publisher, Redactor, backoff

log = logging.getLogger(__name__)

RETRIED_STATUS = frozenset({408, 429})  # besides 5xx: the server asks to be tried again later
STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)  # a kept-alive connection closed


def check_webhook(config: EventsConfig) -> None:
    """Every check WebhookSink's constructor makes before it starts anything."""
    _Target(config.webhook)


class _Target:
    """Where and how to POST: the parsed URL; ConfigError with one masked line for anything but http(s)."""

    def __init__(self, url: str) -> None:
        shown = mask_credentials(url)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ConfigError(f"events.webhook must be an http:// or https:// URL, not {shown}")
        try:
            self.port = parts.port
        except ValueError:
            raise ConfigError(f"events.webhook has an invalid port: {shown}") from None
        if not parts.hostname:
            raise ConfigError(f"events.webhook names no host: {shown}")
        # Made once, here: loading the system's CAs per connection would cost every reconnect.
        self.tls = ssl.create_default_context() if parts.scheme == "https" else None
        self.host = parts.hostname
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.headers = {"Content-Type": "application/json", "User-Agent": "rtseg"}
        if parts.username:
            user_pass = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self.headers["Authorization"] = "Basic " + base64.b64encode(user_pass.encode()).decode("ascii")

    def connect(self, timeout: float) -> http.client.HTTPConnection:
        if self.tls is not None:
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self.tls)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)


class WebhookSink(Publisher):
    """POSTs each event of one stream to ``events.webhook``; see the module's docstring."""

    def __init__(self, config: EventsConfig, stream: str) -> None:
        self._target = _Target(config.webhook)
        super().__init__(f"webhook {config.webhook}", config, Redactor(config.webhook))
        # ``stream`` is not needed: each event names its stream; the parameter keeps both publishers alike.
        self._retries = int(config.webhook_retries)
        self._conn: http.client.HTTPConnection | None = None
        self._conn_used = False  # the connection has served a request: the server may have closed it since
        self._conn_lock = threading.Lock()
        self._start()

    def _run(self) -> None:
        try:
            while not self._abort.is_set():
                event = self._take()
                if event is None:
                    if self._stopping():
                        break
                    continue
                self._deliver(event)
        finally:
            self._drop_connection()

    def _deliver(self, event: SceneEvent) -> None:
        """POST one event, retrying as the module's docstring says; counts it published or failed."""
        body = json.dumps(event.as_dict(), separators=(",", ":")).encode("utf-8")
        failures = 0
        while True:
            outcome = self._post(body)
            if outcome is None:
                self._count(published=1)
                self._recovered()
                return
            failures += 1
            retry, what = outcome
            if self._abort.is_set():  # close() ran out of time: counted, and close() logs the figures
                self._count(failed=1)
                return
            if not retry:
                self._count(failed=1)
                self._trouble(f"{what}, an answer that is not retried: such events are not delivered")
                return
            if failures > self._retries:
                self._count(failed=1)
                self._trouble(f"{what}; an event is given up after {failures} tries")
                return
            self._trouble(f"{what}; {self._waiting_note()}")
            if self._abort.wait(backoff(failures)):
                self._count(failed=1)
                return

    def _post(self, body: bytes) -> tuple[bool, str] | None:
        """One POST within the time budget: None when answered 2xx, else (whether to retry, what happened)."""
        for fresh_try in (False, True):
            reused = self._conn_used
            expired = threading.Event()
            deadline = threading.Timer(self._timeout, self._expire, (expired,))  # the whole request, not each read
            deadline.daemon = True
            try:
                conn = self._connection()
                deadline.start()
                conn.request("POST", self._target.path, body=body, headers=self._target.headers)
                response = conn.getresponse()
                response.read()
                self._conn_used = True
                if response.will_close:
                    self._drop_connection()
            except (OSError, http.client.HTTPException) as error:
                self._drop_connection()
                if expired.is_set() or isinstance(error, TimeoutError):
                    return True, f"no answer within {self._timeout:g} s"
                if self._abort.is_set():
                    return True, "stopped by close()"
                if isinstance(error, STALE) and reused and not fresh_try:
                    continue  # the server closed the kept-alive connection while it was idle: one more try, fresh
                return True, self._redact(f"POST failed ({type(error).__name__}: {error})")
            finally:
                deadline.cancel()
            status = response.status
            if 200 <= status < 300:
                return None
            what = f"the server answered {status} {response.reason}"
            return status >= 500 or status in RETRIED_STATUS, self._redact(what)
        raise AssertionError("unreachable")

    def _connection(self) -> http.client.HTTPConnection:
        with self._conn_lock:
            if self._conn is None:
                self._conn = self._target.connect(self._timeout)
                self._conn_used = False
            return self._conn

    def _drop_connection(self) -> None:
        with self._conn_lock:
            conn, self._conn = self._conn, None
            self._conn_used = False
        if conn is not None:
            conn.close()

    def _expire(self, expired: threading.Event) -> None:
        expired.set()
        self._interrupt()

    def _interrupt(self) -> None:
        """Shut the socket of the request in progress: its blocked read or write returns at once with an error."""
        with self._conn_lock:
            sock = self._conn.sock if self._conn is not None else None
        if isinstance(sock, socket.socket):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
