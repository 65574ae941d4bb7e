"""Private temporary files: every upload and result lives under one 0700 directory, named at random.

No name or path from a user is ever used on disk; a user's file name only
labels downloads. Uploads stream to disk with their size counted, so one above
the cap is refused (413) before it is stored: at once when its Content-Length
says so, at the first byte over the cap otherwise.
"""

from __future__ import annotations

import re
import secrets
import shutil
import tempfile
from pathlib import Path

from fastapi import HTTPException, Request

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


def _refuse_declared(request: Request, limit: int, too_large: HTTPException) -> None:
    """A body whose Content-Length is above ``limit`` is refused before any of it is read."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large


async def receive_small(request: Request, limit: int, what: str) -> bytes:
    """A small body (JSON) held in memory, refused (413) at its first byte over ``limit``."""
    too_large = HTTPException(413, f"{what} are larger than the limit of {size_text(limit)}")
    _refuse_declared(request, limit, too_large)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


async def receive_upload(request: Request, path: Path, limit: int) -> int:
    """Write the request body to ``path``, refusing (413) a body above ``limit`` bytes; returns its size."""
    too_large = HTTPException(413, f"the file is larger than the upload limit of {size_text(limit)}")
    _refuse_declared(request, limit, too_large)
    written = 0
    try:
        with path.open("xb") as file:
            async for chunk in request.stream():
                written += len(chunk)
                if written > limit:
                    raise too_large
                file.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if written == 0:
        path.unlink(missing_ok=True)
        raise HTTPException(400, "the upload is empty: choose a file first")
    return written
