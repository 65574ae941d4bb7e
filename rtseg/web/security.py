"""Host and Origin checks for every HTTP request and WebSocket.

The Host header must name this server (DNS rebinding: a hostile name that
resolves to 127.0.0.1 would otherwise reach the page from another site's
script). A request that changes something (POST, WebSocket) and carries an
Origin must come from this server's own page, so another site cannot upload,
start jobs or open the webcam socket in the user's browser. No CORS headers
are ever sent, so other sites cannot read any answer.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlsplit

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketClose

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
_SAFE_METHODS = ("GET", "HEAD")


def host_name(host_header: str) -> str:
    """The name in a Host header or URL netloc, without port, IPv6 brackets or letter case."""
    try:
        return (urlsplit("//" + host_header).hostname or "").lower()
    except ValueError:
        return ""


class HostCheck:
    """Refuses (400) a Host not in ``allowed_hosts`` and (403) a foreign Origin on POST and WebSocket."""

    def __init__(self, app: ASGIApp, allowed_hosts: Collection[str]) -> None:
        self.app = app
        self.allowed = {h.lower() for h in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        problem = None
        if host_name(host) not in self.allowed:
            problem = 400, "unknown Host header: open the page at the address rtseg serve printed"
        elif "origin" in headers and (scope["type"] == "websocket" or scope["method"] not in _SAFE_METHODS):
            if urlsplit(headers["origin"]).netloc.lower() != host.lower():
                problem = 403, "requests from other sites are refused"
        if problem is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await WebSocketClose(code=1008, reason=problem[1])(scope, receive, send)
        else:
            await PlainTextResponse(problem[1], status_code=problem[0])(scope, receive, send)
