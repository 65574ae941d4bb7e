"""Keeping camera passwords out of logs, error messages, window titles and summaries.

IP cameras are usually opened with the password in the URL
(``rtsp://admin:secret@10.0.0.7/stream``). Every text that may show a source
name goes through ``mask_credentials``; the CLI also installs
``CredentialFilter`` on its log handler so that records from any library
(PyAV, urllib, our own) are masked before they are formatted for output.
"""

from __future__ import annotations

import logging
import re

MASK = "***"

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_TOKEN_END = re.compile(r"\s")


def mask_credentials(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` replaced by ``***``.

    The password runs from the first ':' after the scheme to the last '@'
    before the next whitespace, so a password with unencoded '@', '/', '?' or
    '#' is hidden whole. A URL that also has an '@' in its path is masked up to
    that one: over-masking is the safe failure.
    """
    out: list[str] = []
    done = 0
    for scheme in _SCHEME.finditer(text):
        start = scheme.end()
        if start <= done:
            continue
        space = _TOKEN_END.search(text, start)
        token = text[start: space.start() if space else len(text)]
        at = token.rfind("@")
        colon = token.find(":", 0, at) if at > 0 else -1
        if colon < 0:
            continue
        out.append(text[done: start + colon + 1])
        out.append(MASK)
        done = start + at
    out.append(text[done:])
    return "".join(out)


class CredentialFilter(logging.Filter):
    """Masks credentials in a record's final message and its traceback text.

    Installed on a handler, it sees every record that reaches that handler,
    whichever logger emitted it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_credentials(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_credentials(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_credentials(record.stack_info)
        return True
