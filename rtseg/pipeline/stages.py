"""Stage machinery: a thread per stage between bounded queues, the ``END`` sentinel, and the shared run state."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rtseg.core.errors import StageError
from rtseg.core.structures import Frame
from rtseg.pipeline.summary import StageTimer

log = logging.getLogger(__name__)


class EndOfStream:
    """The type of ``END``, the one item after a stream's last frame: finish the frames in flight and stop."""


END = EndOfStream()
Item = Frame | EndOfStream  # what travels through a lane's queues
Queue = queue.Queue[Item]
POLL_SECONDS = 0.05  # seconds between checks of the stop event while waiting on a queue
JOIN_TIMEOUT = 2.0  # how long a stopped stage may take to notice the stop event
INTERRUPTS = ("interrupted", "terminated")  # stop reasons that end the process with 128 + signal number
SINK_CLOSE_TIMEOUT = 60.0  # finalising an MP4 flushes the encoder, which can take a while


class Stopped(Exception):
    """Raised inside a stage when the run is stopping."""


class RunState:
    """What the threads share: the first error, stop requests, and which stage is busy since when.

    Stage threads only record (``fail``, ``request_stop``); the supervisor acts on
    the records, so every stop decision is taken in one place.
    """

    def __init__(self) -> None:
        self.error: StageError | None = None
        self.stop_reason: str | None = None
        self.changed = threading.Event()  # set whenever error or stop_reason is recorded
        self.busy_since: dict[str, float | None] = {}
        self.timers: dict[str, StageTimer] = {}
        self._lock = threading.Lock()

    def fail(self, stage: str, exc: BaseException) -> None:
        with self._lock:
            if self.error is None:
                if isinstance(exc, StageError):  # raised by a step that names itself (tracking inside render)
                    self.error = exc
                else:
                    text = str(exc).strip()
                    self.error = StageError(stage, f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__)
                    self.error.__cause__ = exc
        self.changed.set()

    def request_stop(self, reason: str) -> None:
        with self._lock:
            if self.stop_reason is None:
                self.stop_reason = reason
        self.changed.set()

    @contextmanager
    def busy(self, stage: str, timer: str | None = None, frames: int = 1, timed: bool = True) -> Iterator[None]:
        """Mark ``stage`` as working (for the hang watchdog); if ``timed``, record its time shared by ``frames``."""
        start = time.monotonic()
        self.busy_since[stage] = start
        try:
            yield
        finally:
            self.busy_since[stage] = None
            if timed:
                self.record(timer or stage, time.monotonic() - start, frames)

    def record(self, timer: str, seconds: float, frames: int = 1) -> None:
        """Add ``seconds`` spent on ``frames`` frames to the named timer (also used for the detector's own steps)."""
        self.timers.setdefault(timer, StageTimer()).add(seconds, frames)

    def hung_stage(self, timeout: float) -> tuple[str, float] | None:
        now = time.monotonic()
        for stage, since in list(self.busy_since.items()):
            if since is not None and now - since > timeout:
                return stage, now - since
        return None


class Stage(threading.Thread):
    """A daemon thread running one stage body between its input and output queues.

    ``halt`` makes the stage's queue operations raise ``Stopped`` at the next
    poll, so a stage stops between frames without needing a sentinel;
    ``on_halt`` also wakes a body that waits elsewhere (a live source reconnecting).
    """

    def __init__(self, name: str, state: RunState, body: Callable[[Stage], None],
                 output: Queue | None, on_halt: Callable[[], None] | None = None,
                 moved: threading.Event | None = None, label: str = "") -> None:
        super().__init__(name=f"rtseg-{label}{name}", daemon=True)
        self.stage = name
        self.output = output
        self.halted = threading.Event()
        self._state = state
        self._body = body
        self._on_halt = on_halt
        self._moved = moved  # set after every put and get: wakes the shared inference worker

    def halt(self) -> None:
        self.halted.set()
        if self._on_halt is not None:
            self._on_halt()

    def run(self) -> None:
        try:
            self._body(self)
        except Stopped:
            pass
        except BaseException as exc:
            log.debug("%s stage failed", self.stage, exc_info=True)
            self._state.fail(self.stage, exc)

    def put(self, item: Item) -> None:
        assert self.output is not None
        while not self.halted.is_set():
            try:
                self.output.put(item, timeout=POLL_SECONDS)
            except queue.Full:
                continue
            self._notify()
            return
        raise Stopped

    def _notify(self) -> None:
        if self._moved is not None:
            self._moved.set()

    def put_newest(self, item: Item) -> int:
        """Put without waiting, dropping the oldest waiting items to make room; returns how many were dropped.

        Only the capture stage puts into its queue, so after one drop the put succeeds
        unless the consumer raced us for the free slot, which just means one more round.
        """
        assert self.output is not None
        dropped = 0
        while True:
            try:
                self.output.put_nowait(item)
            except queue.Full:
                pass
            else:
                self._notify()
                return dropped
            try:
                self.output.get_nowait()
                dropped += 1
            except queue.Empty:
                pass

    def get(self, source: Queue) -> Item:
        while not self.halted.is_set():
            try:
                item = source.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            self._notify()
            return item
        raise Stopped
