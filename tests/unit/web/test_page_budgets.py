"""The page's budgets (issue 26) over a stub detector: pixels judged from headers, masks kept as RLE, body and
socket timeouts, and client behaviour that is answered, never a traceback."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

pytest.importorskip("fastapi", reason="the [web] extra is not installed")

from fastapi import HTTPException, WebSocketDisconnect
from helpers import make_clip
from starlette.requests import Request
from web_helpers import encode, scene

from rtseg.offline.load_page import frame_message, png_bomb
from rtseg.web.images import ImageResult
from rtseg.web.workspace import BodyTimeouts, receive_small

LIVE = "ws://localhost/api/live"


def test_an_image_over_the_pixel_budget_is_413_naming_its_size(make_client, stub):
    client = make_client(stub)
    answer = client.post("/api/images", params={"name": "bomb.png"}, content=png_bomb(8000, 8000))
    assert answer.status_code == 413
    assert answer.json()["detail"] == ("bomb.png is 8000x8000 (64.0 megapixels): over the budget of 40.0 "
                                       "megapixels a frame")
    assert stub.calls == 0  # refused before the model, from the header


def test_max_side_past_the_servers_limit_is_400(make_client):
    client = make_client(side_limit=512)
    answer = client.post("/api/images", params={"max_side": 1024}, content=encode(scene(64, 64)))
    assert answer.status_code == 400
    assert answer.json()["detail"] == "max_side: at most 512 on this server (rtseg serve --max-side)"


def test_a_video_with_frames_past_the_side_limit_squared_is_413_before_it_is_queued(make_client, tmp_path):
    client = make_client(side_limit=64)  # 96x64 frames: 6144 pixels, over 64x64
    clip = make_clip(tmp_path / "clip.mp4", frames=3)
    answer = client.post("/api/videos", params={"name": "clip.mp4"}, content=clip.read_bytes())
    assert answer.status_code == 413
    assert answer.json()["detail"] == ("clip.mp4's video is 96x64 (6144 pixels): over the budget of 4096 pixels a "
                                       "frame (this server runs videos of at most 64x64 pixels a frame: rtseg serve "
                                       "--max-side)")
    assert client.post("/api/videos", params={"name": "clip.mp4"}, content=clip.read_bytes()).status_code == 413


def test_a_webcam_frame_over_the_budget_is_an_error_and_the_socket_goes_on(client, stub):
    with client.websocket_connect(LIVE) as socket:
        socket.send_bytes(frame_message(3, png_bomb(8000, 8000)))
        assert socket.receive_json() == {"seq": 3, "error": "the webcam frame is 8000x8000 (64.0 megapixels): over "
                                                            "the budget of 40.0 megapixels a frame"}
        socket.send_bytes(frame_message(4, encode(scene(64, 80), ".jpg")))
        assert socket.receive_json()["seq"] == 4
    assert stub.calls == 1


def test_webcam_frames_are_shrunk_to_max_side_before_the_model(make_client, stub):
    client = make_client(stub, max_side=100)
    with client.websocket_connect(LIVE) as socket:
        socket.send_bytes(frame_message(1, encode(scene(200, 400), ".jpg")))
        facts = socket.receive_json()
    assert (facts["width"], facts["height"]) == (100, 50) and stub.shapes == [(50, 100, 3)]


def test_json_nested_100000_deep_is_a_bad_settings_message(client):
    with client.websocket_connect(LIVE) as socket:
        socket.send_text("[" * 100_000 + "]" * 100_000)
        assert socket.receive_json() == {"error": "bad settings: the JSON is nested too deeply"}
        socket.send_text(json.dumps({"score": 0.5}))
        socket.send_bytes(frame_message(1, encode(scene(64, 80), ".jpg")))
        assert socket.receive_json()["seq"] == 1


def test_an_idle_webcam_socket_is_closed_and_its_slot_given_back(make_client):
    client = make_client(queue_size=1, idle_timeout=0.2)
    with client.websocket_connect(LIVE) as socket, pytest.raises(WebSocketDisconnect) as closed:
        socket.receive_json()  # nothing sent: the server closes it
    assert closed.value.code == 1001 and closed.value.reason == "no webcam frame for 0.2 s: closed as idle"
    assert client.post("/api/images", content=encode(scene(64, 64))).status_code == 200  # the one slot is free


def test_a_result_keeps_its_masks_as_rle_and_its_table_unpacks_none(client, stub):
    image = scene(480, 640)
    found = stub.detect([image])[0]
    result = ImageResult("a.png", image, found)
    full_frame_masks = found.masks.nbytes  # two masks of 480x640, a byte a pixel
    assert result.stored_bytes - image.nbytes < full_frame_masks / 50
    rows = result.objects(0.0, None)
    assert [(r["class"], r["area"]) for r in rows] == [("square", 180 * 240), ("disc", int(found.masks[1].sum()))]
    upload = client.post("/api/images", params={"name": "a.png"}, content=encode(image)).json()
    table = client.get(f"/api/images/{upload['id']}/objects", params={"score": 0.0}).json()["objects"]
    record = client.get(f"/api/images/{upload['id']}/detections.json", params={"score": 0.0}).json()
    assert [(r["area"], r["box"]) for r in table] == [(i["area"], i["box"]) for i in record["instances"]]


def request_with(messages: list[dict[str, object]], hang: bool = False) -> Request:
    """A request whose body arrives as ``messages``, then (``hang``) nothing for 5 s, then the client goes."""
    pending = list(messages)

    async def receive() -> dict[str, object]:
        if pending:
            return pending.pop(0)
        if hang:
            await asyncio.sleep(5)  # bounded, so that code without a deadline fails instead of hanging
        return {"type": "http.disconnect"}

    return Request({"type": "http", "method": "POST", "headers": [], "path": "/"}, receive)


def receive(request: Request, timeouts: BodyTimeouts) -> bytes:
    return asyncio.run(receive_small(request, 1000, "the zones", timeouts))


def test_a_body_that_stalls_is_408():
    stalled = request_with([{"type": "http.request", "body": b"0123456789", "more_body": True}], hang=True)
    with pytest.raises(HTTPException) as refused:
        receive(stalled, BodyTimeouts(idle=0.1, total=10))
    assert (refused.value.status_code, refused.value.detail) == (408, "the upload was dropped: nothing arrived "
                                                                      "for 0.1 s")


def test_a_body_that_trickles_past_its_total_time_is_408():
    sent = []

    async def trickle() -> dict[str, object]:  # a byte every 50 ms for 2 s: never idle, too long in all
        await asyncio.sleep(0.05)
        sent.append(b"x")
        return {"type": "http.request", "body": b"x", "more_body": len(sent) < 40}

    request = Request({"type": "http", "method": "POST", "headers": [], "path": "/"}, trickle)
    with pytest.raises(HTTPException) as refused:
        receive(request, BodyTimeouts(idle=1, total=0.3))
    assert (refused.value.status_code, refused.value.detail) == (408, "the upload was dropped: it took longer "
                                                                      "than 0.3 s")


def test_a_client_leaving_mid_body_is_one_info_line(caplog):
    gone = request_with([{"type": "http.request", "body": b"0123456789", "more_body": True}])
    with caplog.at_level(logging.INFO, "rtseg.web.workspace"), pytest.raises(HTTPException) as refused:
        receive(gone, BodyTimeouts())
    assert refused.value.status_code == 400
    assert [r.getMessage() for r in caplog.records] == ["a client went away during its upload (10 bytes received)"]


def test_a_body_in_pieces_within_the_times_arrives_whole():
    pieces = request_with([{"type": "http.request", "body": b"[1, ", "more_body": True},
                           {"type": "http.request", "body": b"2]", "more_body": False}])
    assert receive(pieces, BodyTimeouts(idle=1, total=5)) == b"[1, 2]"


def test_the_budgets_are_in_info(make_client):
    info = make_client(side_limit=512).get("/api/info").json()
    assert (info["max_side_limit"], info["max_pixels"]) == (512, 40_000_000)
