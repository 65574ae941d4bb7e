"""Fixtures for the web app's tests: the app over a stub detector, driven by FastAPI's TestClient."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import pytest
from web_helpers import KnownObjectsDetector

if TYPE_CHECKING:
    from fastapi.testclient import TestClient


@pytest.fixture
def make_client() -> Iterator[Callable[..., TestClient]]:
    """``make_client(detector=None, **settings)``: a started app (lifespan run) at http://localhost."""
    pytest.importorskip("fastapi", reason="the [web] extra is not installed")
    pytest.importorskip("httpx2", reason="Starlette's TestClient needs httpx2 (the [test] extra)")
    from fastapi.testclient import TestClient

    from rtseg.web.app import WebSettings, create_app

    with ExitStack() as stack:
        def factory(detector: Any = None, **settings: Any) -> TestClient:
            app = create_app(detector or KnownObjectsDetector(), WebSettings(**settings))
            return stack.enter_context(TestClient(app, base_url="http://localhost"))

        yield factory


@pytest.fixture
def stub() -> KnownObjectsDetector:
    return KnownObjectsDetector()


@pytest.fixture
def client(make_client: Callable[..., TestClient], stub: KnownObjectsDetector) -> TestClient:
    return make_client(stub)


@pytest.fixture
def held(make_client: Callable[..., TestClient]) -> Iterator[KnownObjectsDetector]:
    """A stub whose calls wait for ``held.gate``; released before the app shuts down, so no test hangs there."""
    detector = KnownObjectsDetector(hold=True)
    yield detector
    detector.gate.set()
