"""WebhookSink against real HTTP servers on 127.0.0.1: bodies, retries, answers not retried, hangs, overflow, secrets.

The servers (``broker_helpers.WebhookServer``) answer each POST as their script says: a status, or 'hang'
(read the request, never answer). The only timings asserted are generous upper bounds that prove write()
and close() do not wait for the server.
"""

from __future__ import annotations

import base64
import json
import logging
import time

import pytest
from broker_helpers import WebhookServer, frame_with, make_certificates, scene_event, wait_until

from rtseg.core.config import EventsConfig
from rtseg.core.errors import ConfigError
from rtseg.sinks.publish import STOP_GRACE
from rtseg.sinks.webhook import WebhookSink

WRITE_BOUND = 0.05  # seconds: a write() that waited for the server would take far longer than this
CLOSE_SLACK = 1.5  # seconds on top of a close's budget (timeout) and STOP_GRACE, for a loaded machine


@pytest.fixture
def servers():
    started: list[WebhookServer] = []

    def start(script=None) -> WebhookServer:
        server = WebhookServer(script)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def closing():
    opened: list[WebhookSink] = []
    yield opened.append
    for sink in opened:
        sink.close()


def _sink(url: str, closing, **settings) -> WebhookSink:
    sink = WebhookSink(EventsConfig(webhook=url, **settings), "cam1")
    closing(sink)
    return sink


def _conserved(sink: WebhookSink, written: int) -> None:
    figures = sink.figures()
    assert figures.published + figures.dropped + figures.failed == written, figures


def test_each_event_is_posted_as_json(servers, closing):
    server = servers([200, 201, 204])
    sink = _sink(server.url("/hook?site=a"), closing)
    events = [scene_event(1), scene_event(2, "cross"), scene_event(3, "occupancy")]
    sink.write(frame_with(*events[:2]))
    sink.write(frame_with(events[2]))
    sink.close()
    requests = server.received()
    assert [r.json() for r in requests] == [e.as_dict() for e in events]
    assert {r.path for r in requests} == {"/hook?site=a"}
    assert {r.headers["Content-Type"] for r in requests} == {"application/json"}
    assert "Authorization" not in requests[0].headers
    assert sink.figures().line() == f"webhook {server.url('/hook?site=a')}: 3 published, 0 dropped, 0 not delivered"


def test_server_errors_are_retried_until_delivered(servers, closing):
    server = servers([500, 503, 429, 200])
    sink = _sink(server.url(), closing, webhook_retries=3)
    sink.write(frame_with(scene_event(7)))
    assert wait_until(lambda: sink.figures().published == 1, 10.0)  # waits 0.5 + 1 + 2 s between tries
    sink.close()
    assert [r.status for r in server.received()] == [500, 503, 429, 200]
    assert {r.body for r in server.received()} == {json.dumps(scene_event(7).as_dict(), separators=(",", ":")).encode()}
    assert (sink.figures().published, sink.figures().failed) == (1, 0)


def test_retries_run_out(servers, closing):
    server = servers([502])
    sink = _sink(server.url(), closing, webhook_retries=1)
    sink.write(frame_with(scene_event(1)))
    assert wait_until(lambda: sink.figures().failed == 1, 10.0)
    sink.close()
    assert len(server.received()) == 2  # the first try and one retry
    assert (sink.figures().published, sink.figures().failed) == (0, 1)


@pytest.mark.parametrize("status", [400, 401, 404, 301])
def test_answers_that_would_fail_again_are_not_retried(servers, closing, status):
    server = servers([status, 200])
    sink = _sink(server.url(), closing, webhook_retries=5)
    sink.write(frame_with(scene_event(1)))
    sink.write(frame_with(scene_event(2)))
    assert wait_until(lambda: sink.figures().published == 1, 10.0)
    sink.close()
    assert [(r.json()["frame"], r.status) for r in server.received()] == [(1, status), (2, 200)]
    assert (sink.figures().published, sink.figures().failed) == (1, 1)


def test_hung_server_never_blocks_write_and_close_keeps_its_budget(servers, closing):
    server = servers(["hang"])
    sink = _sink(server.url(), closing, timeout=1.0, webhook_retries=10)
    slowest = 0.0
    for i in range(10):
        start = time.monotonic()
        sink.write(frame_with(scene_event(i)))
        slowest = max(slowest, time.monotonic() - start)
    assert slowest < WRITE_BOUND
    assert wait_until(lambda: len(server.received()) >= 1, 5.0)
    start = time.monotonic()
    sink.close()
    assert time.monotonic() - start < 1.0 + STOP_GRACE + CLOSE_SLACK
    assert sink.figures().line().endswith(": 0 published, 0 dropped, 10 not delivered")


def test_request_time_budget_then_retry(servers, closing):
    server = servers(["hang", 200])
    sink = _sink(server.url(), closing, timeout=0.5, webhook_retries=1)
    sink.write(frame_with(scene_event(1)))
    assert wait_until(lambda: sink.figures().published == 1, 10.0)  # 0.5 s budget, 0.5 s wait, then 200
    sink.close()
    assert [r.status for r in server.received()] == ["hang", 200]


def test_full_queue_drops_and_counts(servers, closing):
    server = servers(["hang"])
    sink = _sink(server.url(), closing, queue_size=5, timeout=0.5, webhook_retries=0)
    start = time.monotonic()
    for i in range(50):
        sink.write(frame_with(scene_event(i)))
    assert time.monotonic() - start < 50 * WRITE_BOUND
    sink.close()
    figures = sink.figures()
    # The queue holds 5 and the thread at most one more (the event it is posting): 44 or 45 are dropped; a
    # hung server delivers none of the others.
    assert figures.dropped in (44, 45)
    assert (figures.published, figures.failed) == (0, 50 - figures.dropped)
    _conserved(sink, 50)


def test_server_gone_then_back(servers, closing):
    server = servers([200])
    sink = _sink(server.url(), closing, webhook_retries=8)
    sink.write(frame_with(scene_event(1)))
    assert wait_until(lambda: sink.figures().published == 1, 5.0)
    port = server.port
    server.stop()  # its kept-alive connection is closed too
    sink.write(frame_with(scene_event(2)))
    time.sleep(0.3)
    again = WebhookServer([200], port=port)
    try:
        assert wait_until(lambda: sink.figures().published == 2, 15.0)
    finally:
        sink.close()
        again.stop()
    assert [r.json()["frame"] for r in again.received()] == [2]


def test_credentials_are_sent_and_never_shown(servers, closing, caplog):
    caplog.set_level(logging.DEBUG)
    server = servers([401, 200])
    url = f"http://hooker:pa55word@127.0.0.1:{server.port}/hook?token=tok-9f8e7d&site=a"
    sink = _sink(url, closing)
    sink.write(frame_with(scene_event(1), scene_event(2)))
    assert wait_until(lambda: sink.figures().published == 1, 5.0)
    sink.close()
    request = server.received()[0]
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"hooker:pa55word").decode()
    assert request.path == "/hook?token=tok-9f8e7d&site=a"
    assert "401" in caplog.text  # the refusal is logged ...
    with pytest.raises(ConfigError) as error:
        WebhookSink(EventsConfig(webhook="ftp://hooker:pa55word@127.0.0.1/x?api_key=tok-9f8e7d"), "cam1")
    line = sink.figures().line()
    assert line == f"webhook http://hooker:***@127.0.0.1:{server.port}/hook?token=***&site=a: 1 published, 0 dropped, 1 not delivered"
    shown = caplog.text + line + str(error.value)
    assert "pa55word" not in shown and "tok-9f8e7d" not in shown  # ... without the secrets


def test_https_verifies_the_server_certificate(tmp_path, closing, monkeypatch):
    certificates = make_certificates(tmp_path / "tls")
    server = WebhookServer([200], tls=certificates)
    try:
        untrusting = _sink(server.url(), closing, webhook_retries=0)  # the system's CAs do not know ours
        monkeypatch.setenv("SSL_CERT_FILE", str(certificates.ca))
        trusting = _sink(server.url(), closing)
        for sink in (untrusting, trusting):
            sink.write(frame_with(scene_event(1)))
            sink.close()
    finally:
        server.stop()
    assert server.url().startswith("https://")
    assert [r.json() for r in server.received()] == [scene_event(1).as_dict()]
    assert [(s.figures().published, s.figures().failed) for s in (trusting, untrusting)] == [(1, 0), (0, 1)]


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "127.0.0.1:8080/x", "http://:80/x", "http://127.0.0.1:http/x"])
def test_invalid_urls_are_one_config_error_line(url):
    with pytest.raises(ConfigError) as error:
        WebhookSink(EventsConfig(webhook=url), "cam1")
    assert "\n" not in str(error.value) and "events.webhook" in str(error.value)
