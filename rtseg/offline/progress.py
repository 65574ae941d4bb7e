"""Progress for the offline tools: a bar on a terminal, so that a run of minutes is never silent.

Only on a terminal: in a log file or a pipe a bar's redraws are noise, and the
tools print their tables when done. One helper, so every script shows it alike.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def on_terminal() -> bool:
    """Whether a progress bar would be seen: stderr is a terminal."""
    return sys.stderr.isatty()


def progress(items: Iterable[T], what: str, total: int | None = None) -> Iterator[T]:
    """``items``, with a bar of ``what`` done on stderr when it is a terminal."""
    if not on_terminal():
        yield from items
        return
    with tqdm(items, total=total, desc=what, unit="", file=sys.stderr, dynamic_ncols=True, leave=False) as bar:
        yield from bar
