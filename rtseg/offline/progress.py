"""Progress for the offline tools: a bar on a terminal, so that a run of minutes is never silent.

Only on a terminal: in a log file or a pipe a bar's redraws are noise, and the
tools print their tables when done. One helper, so every script shows it alike.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


class _Bar(tqdm):  # type: ignore[misc]
    """tqdm without its monitor thread, which would outlive the run (the soak counts threads left behind)."""

    monitor_interval = 0


def on_terminal() -> bool:
    """Whether a progress bar would be seen: stderr is a terminal."""
    return sys.stderr.isatty()


def progress(items: Iterable[T], what: str, total: int | None = None) -> Iterator[T]:
    """``items``, with a bar of ``what`` done on stderr when it is a terminal."""
    if not on_terminal():
        yield from items
        return
    with _Bar(items, total=total, desc=what, unit="", file=sys.stderr, dynamic_ncols=True, leave=False) as bar:
        yield from bar


class Meter:
    """A bar for work counted somewhere else (the frames a running pipeline wrote): ``show(done)`` moves it to
    ``done``. Nothing is drawn off a terminal, as with ``progress``."""

    def __init__(self, what: str, total: int) -> None:
        self._bar = _Bar(total=total, desc=what, unit="", file=sys.stderr, dynamic_ncols=True,
                         leave=False) if on_terminal() else None

    def show(self, done: int) -> None:
        if self._bar is not None and done > self._bar.n:
            self._bar.update(done - self._bar.n)

    def __enter__(self) -> Meter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.close()
