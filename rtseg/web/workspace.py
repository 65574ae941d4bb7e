"""Private temporary files: every upload and result lives under one 0700 directory, named at random.

No name or path from a user is ever used on disk; a user's file name only
labels downloads. Uploads stream to disk with their size counted, so one above
the cap is refused (413) before it is stored: at once when its Content-Length
says so, at the first byte over the cap otherwise. A body that stalls or takes
too long is dropped (408, ``BodyTimeouts``), and one cut off by the client ends
as one line at info level, never a traceback.
"""

from __future__ import annotations

import logging
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
from fastapi import HTTPException, Request
from starlette.requests import ClientDisconnect

log = logging.getLogger(__name__)

_ID = re.compile(r"[0-9a-f]{32}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def new_id() -> str:
    return secrets.token_hex(16)


def is_id(text: str) -> bool:
    return _ID.fullmatch(text) is not None


def download_stem(name: str | None, fallback: str) -> str:
    """A file-name stem for downloads from a user's file name: its last part, without suffix, safe characters only."""
    if not name:
        return fallback
    last = re.split(r"[\\/]", name)[-1]
    stem = last.rsplit(".", 1)[0] if "." in last.strip(".") else last
    return _UNSAFE.sub("-", stem).strip("-.")[:80] or fallback


def size_text(size: int) -> str:
    return f"{size / 2 ** 20:.0f} MB" if size >= 2 ** 20 else f"{size} bytes"


class Workspace:
    """The server's private directory; ``close`` deletes it with everything inside."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="rtseg-web-"))  # mode 0700: no other user can list or read it

    def new_directory(self) -> Path:
        path = self.root / new_id()
        path.mkdir(mode=0o700)
        return path

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass(frozen=True)
class BodyTimeouts:
    """How long a request body may take: ``idle`` seconds for each next piece of it, ``total`` for the whole of it.

    The server gives nothing (no admission slot, no model time) to a body still arriving, so a client that sends
    headers and then nothing, or a byte now and then, holds only its connection, and that for at most these times.
    """

    idle: float = 30.0
    total: float = 600.0


def _refuse_declared(request: Request, limit: int, too_large: HTTPException) -> None:
    """A body whose Content-Length is above ``limit`` is refused before any of it is read."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large


async def _receive(request: Request, limit: int, too_large: HTTPException, timeouts: BodyTimeouts,
                   take: Callable[[bytes], object]) -> int:
    """Hand each piece of the body to ``take``; 413 at the first byte over ``limit``, 408 when the client is too
    slow, 400 when it goes away. Returns the body's size."""
    _refuse_declared(request, limit, too_large)
    pieces = request.stream().__aiter__()
    deadline = time.monotonic() + timeouts.total
    size = 0
    while True:
        wait = min(timeouts.idle, deadline - time.monotonic())
        try:
            with anyio.fail_after(max(wait, 0.0)):
                piece = await pieces.__anext__()
        except StopAsyncIteration:
            return size
        except TimeoutError:
            reason = (f"nothing arrived for {timeouts.idle:g} s" if wait == timeouts.idle
                      else f"it took longer than {timeouts.total:g} s")
            raise HTTPException(408, f"the upload was dropped: {reason}") from None
        except ClientDisconnect:  # the answer goes nowhere; one line at info level says why the body ended
            log.info("a client went away during its upload (%d bytes received)", size)
            raise HTTPException(400, "the client went away during the upload") from None
        size += len(piece)
        if size > limit:
            raise too_large
        take(piece)


async def receive_small(request: Request, limit: int, what: str, timeouts: BodyTimeouts) -> bytes:
    """A small body (JSON) held in memory, refused (413) at its first byte over ``limit``."""
    too_large = HTTPException(413, f"{what} are larger than the limit of {size_text(limit)}")
    body = bytearray()
    await _receive(request, limit, too_large, timeouts, body.extend)
    return bytes(body)


async def receive_upload(request: Request, path: Path, limit: int, timeouts: BodyTimeouts) -> int:
    """Write the request body to ``path``, refusing (413) a body above ``limit`` bytes; returns its size."""
    too_large = HTTPException(413, f"the file is larger than the upload limit of {size_text(limit)}")
    try:
        with path.open("xb") as file:
            written = await _receive(request, limit, too_large, timeouts, file.write)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if written == 0:
        path.unlink(missing_ok=True)
        raise HTTPException(400, "the upload is empty: choose a file first")
    return written
