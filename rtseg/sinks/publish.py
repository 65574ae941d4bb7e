"""Publishing analytics events to other systems (MQTT, webhooks) without ever slowing the pipeline.

A publisher is a sink: the stream's sink thread calls ``write(frame)`` once per
frame, and that call only puts the frame's events into a bounded queue
(``events.queue_size``) and returns. A background thread of the publisher takes
them out and delivers them; a broker or server that is slow, down or hanging
costs that thread time, never the sink thread. While the queue is full new
events are dropped and counted, so memory stays bounded however long the
other side is away.

``close()`` gives the thread ``events.timeout`` seconds (at most
``CLOSE_BUDGET_CAP``) to deliver what is queued, then stops it: it returns in
bounded time even when the other side hangs. Every event that reached
``write()`` ends up in exactly one figure: published, dropped (queue full) or
failed ("not delivered": given up after retries, or still waiting at close).

The concrete publishers are ``rtseg.sinks.mqtt.MqttSink`` and
``rtseg.sinks.webhook.WebhookSink``; ``rtseg.sinks.publishing.open_publishers``
builds the ones a configuration asks for.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from rtseg.core.config import EventsConfig
from rtseg.core.events import SceneEvent
from rtseg.core.redaction import MASK, SECRET_NAME, mask_credentials
from rtseg.core.structures import Frame

log = logging.getLogger(__name__)

CLOSE_BUDGET_CAP = 5.0  # seconds close() waits for the queue to drain, whatever events.timeout says
STOP_GRACE = 1.0  # seconds close() then waits for the thread to notice it must stop
BACKOFF_START = 0.5  # first wait after a failure, doubled after each further one
BACKOFF_CAP = 30.0
POLL = 0.05  # how often an idle or waiting publisher thread looks at its queue and at close()


def url_secrets(url: str) -> list[str]:
    """The secret strings of ``url`` (password, a token alone before '@', secret query values), raw and decoded,
    longest first.

    ``Redactor`` removes them from texts that do not show them in URL form, such
    as an exception message quoting a header or a query string alone.
    """
    parts = urlsplit(url)
    found: set[str] = set()
    try:
        password = parts.password
        token = parts.username if password is None else None  # userinfo without ':' may be a token
    except ValueError:
        password = token = None
    for secret in (password, token):
        if secret:
            found.update({secret, unquote(secret)})
    for name, value in parse_qsl(parts.query, keep_blank_values=False):
        if value and re.fullmatch(SECRET_NAME, name, re.IGNORECASE):
            found.add(value)
    raw_query = dict(p.split("=", 1) for p in re.split("[&;]", parts.query) if "=" in p)
    for name, value in raw_query.items():
        if value and re.fullmatch(SECRET_NAME, name, re.IGNORECASE):
            found.add(value)
    return sorted((s for s in found if len(s) >= 3), key=len, reverse=True)


class Redactor:
    """Masks one publisher's secrets in any text it logs or raises: URL forms and the bare values."""

    def __init__(self, url: str) -> None:
        self._secrets = url_secrets(url)

    def __call__(self, text: str) -> str:
        text = mask_credentials(text)
        for secret in self._secrets:  # bare values last: the URL forms above keep their shape
            text = text.replace(secret, MASK)
        return text


@dataclass(frozen=True)
class PublisherFigures:
    """What one publisher did with the events it was given; ``name`` has its credentials masked.

    After ``close()``, ``published + dropped + failed`` is every event ``write()`` received.
    """

    name: str
    published: int
    dropped: int  # refused by write() while the queue was full
    failed: int  # given up after retries, or still undelivered when close() stopped the thread

    def line(self) -> str:
        return f"{self.name}: {self.published} published, {self.dropped} dropped, {self.failed} not delivered"


class Publisher:
    """The part every publisher shares: the bounded queue, the figures, the thread and its bounded stop.

    Subclasses implement ``_run()`` (the thread's body: deliver until
    ``_stopping()`` says the queue is drained at close, or ``_abort`` is set)
    and may override ``_interrupt()`` (unblock the thread now, e.g. shut a
    socket) and ``_shutdown()`` (release the connection after the thread ended).
    """

    def __init__(self, name: str, config: EventsConfig, redact: Redactor) -> None:
        self.name = redact(name)
        self._redact = redact
        self._queue: queue.Queue[SceneEvent] = queue.Queue(maxsize=config.queue_size)
        self._timeout = float(config.timeout)
        self._lock = threading.Lock()
        self._published = 0
        self._dropped = 0
        self._failed = 0
        self._closing = threading.Event()  # close() asked: deliver what is queued, then end
        self._abort = threading.Event()  # close()'s budget is spent: end now
        self._closed = False
        self._in_trouble = False
        self._thread = threading.Thread(target=self._main, name=f"rtseg-publish {self.name}", daemon=True)

    # --- the sink thread's side -------------------------------------------------------------------------------
    def write(self, frame: Frame) -> None:
        """Queue ``frame.events``; never waits. An event that finds the queue full (or the publisher closed) is dropped."""
        for event in frame.events:
            if self._closed:
                self._count(dropped=1)
                continue
            try:
                self._queue.put_nowait(event)
            except queue.Full:
                self._count(dropped=1)

    def close(self) -> None:
        """Let the thread deliver what is queued for at most the budget, then stop it; returns in bounded time."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        self._thread.join(min(self._timeout, CLOSE_BUDGET_CAP))
        if self._thread.is_alive():
            self._abort.set()
            self._interrupt()
            self._thread.join(STOP_GRACE)
        self._shutdown()
        left = 0
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            left += 1
        self._count(failed=left)
        figures = self.figures()
        if figures.dropped or figures.failed:
            log.warning("events: %s", figures.line())
        else:
            log.info("events: %s", figures.line())

    def figures(self) -> PublisherFigures:
        """The counts so far (final once ``close()`` returned)."""
        with self._lock:
            return PublisherFigures(self.name, self._published, self._dropped, self._failed)

    # --- for subclasses ---------------------------------------------------------------------------------------
    def _start(self) -> None:
        """Start the thread; subclasses call it last in their constructor, once everything it uses exists."""
        self._thread.start()

    def _main(self) -> None:
        try:
            self._run()
        except Exception as error:  # noqa: BLE001 - a bug here must not kill the run; its events count not delivered
            log.error("events: %s stopped: %s", self.name, self._redact(f"{type(error).__name__}: {error}"))

    def _run(self) -> None:
        raise NotImplementedError

    def _interrupt(self) -> None:
        """Called by close() from the sink thread once the budget is spent: make a blocked ``_run`` return soon."""

    def _shutdown(self) -> None:
        """Called by close() after the thread ended (or was given up on): release connections, count the rest."""

    def _take(self, wait: float = POLL) -> SceneEvent | None:
        """The next queued event, waiting at most ``wait`` seconds; None when there is none."""
        try:
            return self._queue.get(timeout=wait)
        except queue.Empty:
            return None

    def _stopping(self) -> bool:
        """close() was called and nothing is left in the queue."""
        return self._closing.is_set() and self._queue.empty()

    def _count(self, published: int = 0, dropped: int = 0, failed: int = 0) -> None:
        with self._lock:
            self._published += published
            self._dropped += dropped
            self._failed += failed

    def _trouble(self, what: str) -> None:
        """Log the first failure of a streak (not every event's): the log stays readable during a long outage."""
        if not self._in_trouble:
            self._in_trouble = True
            log.warning("events: %s: %s (not logged again until delivery works)", self.name, self._redact(what))

    def _waiting_note(self) -> str:
        return f"retrying in the background; up to {self._queue.maxsize} events wait, newer ones are dropped"

    def _recovered(self) -> None:
        if self._in_trouble:
            self._in_trouble = False
            log.info("events: %s: delivering again", self.name)


def backoff(attempt: int) -> float:
    """Seconds to wait before try ``attempt + 1`` after ``attempt`` failed ones: 0.5, 1, 2, ... capped at 30."""
    return float(min(BACKOFF_START * 2 ** max(attempt - 1, 0), BACKOFF_CAP))
