"""Keeping camera passwords and tokens out of logs, error messages, window titles, manifests and summaries.

IP cameras are usually opened with a credential in the URL, in one of three
forms: ``rtsp://admin:secret@10.0.0.7/stream`` (user and password),
``rtsp://TOKEN@10.0.0.7/stream`` (a token, or a user, alone before the '@') and
``http://cam/video?user=admin&password=secret`` (query parameters; webhooks carry
``?token=...``, signed URLs ``&X-Amz-Signature=...``). Every text that may show a
source, a broker or a webhook goes through ``mask_credentials``, the one function
that masks all three; the CLI also installs ``CredentialFilter`` on its log
handler so that records from any library (PyAV, urllib, Ray, our own) are masked
before they are formatted for output.
"""

from __future__ import annotations

import logging
import re

MASK = "***"

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_TOKEN_END = re.compile(r"\s")
# Query parameters whose values are secrets: any name containing one of these words (case-insensitive), so
# ?token=, &api_key=, &apikey=, &access_token=, &Password=, &passwd=, &pwd=, &auth=, &X-Amz-Signature=, &sig=, &secret_id=.
# A name that merely contains one (``monkey``) is masked too: over-masking is the safe failure.
SECRET_NAME = r"[^=&#\s]*(?:token|key|secret|pass|pwd|auth|sig|credential)[^=&#\s]*"
_SECRET_QUERY = re.compile(rf"([?&;]{SECRET_NAME}=)[^&#;\s]*", re.IGNORECASE)


def mask_credentials(text: str) -> str:
    """``text`` with every credential of every URL in it replaced by ``***``.

    - ``scheme://user:password@host``: the password, which runs from the first ':'
      after the scheme to the last '@' before the next whitespace, so a password
      with unencoded '@', '/', '?' or '#' is hidden whole;
    - ``scheme://token@host``: everything before that '@' (a lone user name is
      masked with it: it cannot be told from a token);
    - ``?password=...``, ``&token=...`` and every other parameter named in
      ``SECRET_NAME``: the value, up to the next '&', ';', '#' or whitespace.

    A URL that also has an '@' in its path or query is masked up to that one:
    over-masking is the safe failure.
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
        if at <= 0:  # no userinfo, or an empty one (udp://@239.0.0.1:1234, multicast)
            continue
        colon = token.find(":", 0, at)
        out.append(text[done: start + colon + 1] if colon >= 0 else text[done:start])
        out.append(MASK)
        done = start + at
    out.append(text[done:])
    return _SECRET_QUERY.sub(lambda m: m.group(1) + MASK, "".join(out))


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
