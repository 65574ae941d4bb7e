"""The web app's endpoints over a stub detector whose objects are known (see web_helpers)."""

from __future__ import annotations

import io
import json
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the [web] extra is not installed")

from fastapi import WebSocketDisconnect
from helpers import make_clip, read_video
from web_helpers import (
    DISC_SCORE,
    SQUARE_SCORE,
    KnownObjectsDetector,
    blended,
    decode,
    disc_centre,
    disc_mask,
    encode,
    scene,
    square_centre,
    square_mask,
)

from rtseg.core.masks import decode_mask

LIVE = "ws://localhost/api/live"  # absolute: the test client's WebSockets would otherwise say Host: testserver
WAIT_SECONDS = 30  # a generous bound so that a broken job fails the test instead of hanging it


def upload_image(client, image=None, **params):
    params.setdefault("name", "photo.png")
    return client.post("/api/images", params=params, content=encode(scene() if image is None else image))


def wait_for(condition, what: str):
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def finished(client, job_id: str) -> dict:
    status: dict = {}

    def done() -> bool:
        status.update(client.get(f"/api/videos/{job_id}").json())
        return status["state"] in ("done", "failed", "cancelled")

    wait_for(done, "the video job")
    return status


# -- images -----------------------------------------------------------------------------------------------

def test_image_runs_once_and_the_slider_refilters_without_the_model(client, stub):
    image = scene()
    h, w = image.shape[:2]
    response = upload_image(client, image)
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["width"], result["height"], result["objects"], result["stem"]) == (w, h, 2, "photo")
    base = f"/api/images/{result['id']}"

    rows = client.get(f"{base}/objects", params={"score": 0.5}).json()["objects"]
    assert [(r["class"], r["score"]) for r in rows] == [("square", SQUARE_SCORE), ("disc", DISC_SCORE)]
    assert rows[0]["area"] == square_mask(h, w).sum() and rows[1]["area"] == disc_mask(h, w).sum()
    assert rows[0]["box"] == [w // 8, h // 8, w // 2, h // 2]
    both = decode(client.get(f"{base}/annotated.png", params={"score": 0.5}).content)
    sy, sx = square_centre(h, w)
    dy, dx = disc_centre(h, w)
    assert np.abs(both[sy, sx].astype(int) - blended(image[sy, sx], 0)).max() <= 1
    assert np.abs(both[dy, dx].astype(int) - blended(image[dy, dx], 1)).max() <= 1

    above_disc = {"score": (SQUARE_SCORE + DISC_SCORE) / 2}
    assert [r["class"] for r in client.get(f"{base}/objects", params=above_disc).json()["objects"]] == ["square"]
    square_only = decode(client.get(f"{base}/annotated.png", params=above_disc).content)
    assert (square_only[dy, dx] == image[dy, dx]).all()  # the disc's mask is gone
    assert (square_only[sy, sx] == both[sy, sx]).all()
    assert stub.calls == 1  # re-filtering never ran the model again


def test_class_filter_keeps_the_chosen_classes_and_names_unknown_ones(client):
    base = f"/api/images/{upload_image(client).json()['id']}"
    rows = client.get(f"{base}/objects", params={"score": 0.5, "classes": "disc"}).json()["objects"]
    assert [r["class"] for r in rows] == ["disc"]
    bad = client.get(f"{base}/objects", params={"classes": "dsic"})
    assert bad.status_code == 400 and "unknown class name 'dsic'" in bad.json()["detail"]
    assert "disc" in bad.json()["detail"]  # the suggestion


def test_downloads_are_the_cli_record_and_the_cli_cutouts(client):
    image = scene()
    h, w = image.shape[:2]
    windows_path = "C:\\photos\\beach.png"  # only its last part may show up, and never on disk
    base = f"/api/images/{upload_image(client, image, name=windows_path).json()['id']}"
    response = client.get(f"{base}/detections.json", params={"score": 0.5})
    assert 'filename="beach-detections.json"' in response.headers["content-disposition"]
    record = response.json()
    assert (record["frame"], record["width"], record["height"], record["image"]) == (0, w, h, "beach.png")
    masks = [decode_mask(i["mask"]) for i in record["instances"]]
    assert (masks[0] == square_mask(h, w)).all() and (masks[1] == disc_mask(h, w)).all()
    assert [i["track_id"] for i in record["instances"]] == [None, None]

    png = client.get(f"{base}/annotated.png", params={"score": 0.5})
    assert png.headers["content-disposition"] == 'inline; filename="beach-annotated.png"'  # shown, and named

    archive = zipfile.ZipFile(io.BytesIO(client.get(f"{base}/cutouts.zip", params={"score": 0.5}).content))
    names = sorted(archive.namelist())
    assert names == ["f000000_d0_square.png", "f000000_d1_disc.png"]
    square = decode(archive.read(names[0]))
    assert square.shape == (h // 2 - h // 8, w // 2 - w // 8, 4)
    assert (square[..., 3] == 255).all() and (square[..., :3] == image[h // 8: h // 2, w // 8: w // 2]).all()
    disc = decode(archive.read(names[1]))
    assert 0 < (disc[..., 3] == 255).mean() < 1  # transparent outside the disc


def test_masks_held_by_torch_as_on_a_gpu_give_the_same_results(make_client):
    client = make_client(KnownObjectsDetector(torch_masks=True))
    image = scene()
    h, w = image.shape[:2]
    base = f"/api/images/{upload_image(client, image).json()['id']}"
    assert len(client.get(f"{base}/objects", params={"score": 0.7}).json()["objects"]) == 1
    record = client.get(f"{base}/detections.json", params={"score": 0.5}).json()
    assert (decode_mask(record["instances"][1]["mask"]) == disc_mask(h, w)).all()
    drawn = decode(client.get(f"{base}/annotated.png", params={"score": 0.5}).content)
    sy, sx = square_centre(h, w)
    assert np.abs(drawn[sy, sx].astype(int) - blended(image[sy, sx], 0)).max() <= 1
    assert len(zipfile.ZipFile(io.BytesIO(client.get(f"{base}/cutouts.zip").content)).namelist()) == 2
    with client.websocket_connect(LIVE) as socket:
        socket.send_bytes(frame_message(1, image))
        assert socket.receive_json()["objects"] == 2
        assert decode(socket.receive_bytes()).shape == image.shape


def test_large_images_are_shrunk_to_max_side_before_the_model(client, stub):
    result = upload_image(client, scene(300, 600), max_side=200).json()
    assert (result["width"], result["height"]) == (200, 100)
    assert stub.shapes == [(100, 200, 3)]


def test_a_text_file_is_refused_by_decoding_and_the_server_goes_on(client, stub):
    response = client.post("/api/images", params={"name": "notes.png"}, content=b"just some text\n" * 10)
    assert response.status_code == 400
    assert response.json()["detail"] == "notes.png is not an image rtseg can read: it does not decode as jpg, png, webp or bmp"
    assert stub.calls == 0
    assert upload_image(client).status_code == 200


def test_an_expired_or_unknown_result_is_404(client):
    result_id = upload_image(client).json()["id"]
    client.app.state.server.expire(time.monotonic() + client.app.state.server.settings.keep_seconds + 1)
    response = client.get(f"/api/images/{result_id}/objects")
    assert response.status_code == 404 and "expired" in response.json()["detail"]
    assert client.get("/api/images/../../etc/passwd/objects").status_code == 404
    assert client.get("/api/images/not-an-id/annotated.png").status_code == 404


# -- size cap, queue, safety ------------------------------------------------------------------------------

def workspace_files(client) -> list[Path]:
    return [p for p in client.app.state.server.workspace.root.rglob("*") if p.is_file()]


def test_an_upload_above_the_cap_is_413_before_it_is_stored(make_client):
    client = make_client(max_upload_bytes=1000)
    response = client.post("/api/images", content=b"x" * 1001)
    assert response.status_code == 413 and "upload limit of 1000 bytes" in response.json()["detail"]

    def chunks():  # no Content-Length: counted as it streams in
        for _ in range(20):
            yield b"x" * 100

    assert client.post("/api/videos", content=chunks()).status_code == 413
    assert workspace_files(client) == []
    assert upload_image(client, scene(16, 16)).status_code == 200  # a small one still goes through


def test_a_full_queue_answers_503_at_once(make_client, held):
    client = make_client(held, queue_size=1)
    job = client.post("/api/videos", params={"name": "clip.mp4"}, content=make_clip_bytes())
    assert job.status_code == 202
    held.entered.wait(WAIT_SECONDS)
    refused = upload_image(client)
    assert refused.status_code == 503 and "busy" in refused.json()["detail"]
    assert client.post("/api/videos", content=make_clip_bytes()).status_code == 503
    held.gate.set()
    assert finished(client, job.json()["id"])["state"] == "done"
    assert upload_image(client).status_code == 200


def test_an_image_is_served_between_two_model_calls_of_a_running_video(make_client, held):
    client = make_client(held)
    job_id = client.post("/api/videos", content=make_clip_bytes()).json()["id"]
    held.entered.wait(WAIT_SECONDS)  # the video's first model call is running
    answer: list = []
    request = threading.Thread(target=lambda: answer.append(upload_image(client, scene(50, 70))))
    request.start()
    lock = client.app.state.server.model.lock
    wait_for(lambda: lock.waiting == 1, "the image request to wait for the model")
    held.gate.set()
    request.join(WAIT_SECONDS)
    assert answer[0].status_code == 200
    assert held.shapes[1] == (50, 70, 3)  # the image went before the video's next frame
    assert finished(client, job_id)["state"] == "done"


def test_host_and_origin_are_checked_and_nothing_is_shared_across_sites(client):
    assert client.get("/api/info", headers={"host": "evil.example"}).status_code == 400
    assert client.get("/api/info", headers={"host": "localhost:8000"}).status_code == 200
    foreign = {"origin": "http://evil.example"}
    assert client.post("/api/images", content=encode(scene(8, 8)), headers=foreign).status_code == 403
    response = client.get("/api/info", headers=foreign)
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect(LIVE, headers=foreign):
        pass
    assert refused.value.code == 1008


def test_only_the_page_is_served_and_no_directory_is_listed(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="score"' in page.text
    assert client.get("/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/favicon.svg").headers["content-type"] == "image/svg+xml"
    for path in ("/static/", "/static/index.html", "/__init__.py", "/..%2fapp.py", "/api/", "/docs", "/openapi.json"):
        assert client.get(path).status_code == 404, path


def test_the_workspace_is_private_and_deleted_at_shutdown(make_client):
    client = make_client()
    root = client.app.state.server.workspace.root
    assert root.stat().st_mode & 0o777 == 0o700
    client.post("/api/videos", content=make_clip_bytes())
    client.__exit__(None, None, None)
    assert not root.exists()


# -- videos -----------------------------------------------------------------------------------------------

def make_clip_bytes(tmp=None, **kwargs) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        return make_clip(Path(directory) / "clip.mp4", **kwargs).read_bytes()


def test_a_video_runs_through_the_pipeline_to_an_mp4_with_its_json_lines(client, stub):
    response = client.post("/api/videos", params={"name": "clip.mp4", "score": 0.5},
                           content=make_clip_bytes(frames=12, audio=True))
    assert response.status_code == 202 and response.json()["frames_total"] == 12
    job_id = response.json()["id"]
    status = finished(client, job_id)
    assert status == {"state": "done", "frames_done": 12, "frames_total": 12, "eta_seconds": None, "error": None,
                      "ahead": 0, "stem": "clip", "analytics": False, "scene": None, "events": [], "events_total": 0}

    video = client.get(f"/api/videos/{job_id}/annotated.mp4")
    assert video.headers["content-type"] == "video/mp4"
    assert 'filename="clip-annotated.mp4"' in video.headers["content-disposition"]
    path = Path(client.app.state.server.workspace.root) / "check.mp4"
    path.write_bytes(video.content)
    frames, times, info = read_video(path)
    assert len(frames) == 12 and info["codec"] == "h264" and info["audio"] == ["aac"]
    assert times == pytest.approx([i / 10 for i in range(12)], abs=1e-3)
    h, w = frames[0].shape[:2]
    sy, sx = square_centre(h, w)
    assert (np.abs(frames[-1][sy, sx].astype(int) - 60) > 30).any()  # the square's mask is drawn on the grey clip

    lines = client.get(f"/api/videos/{job_id}/detections.jsonl").text.splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["frame"] for r in records] == list(range(12))
    assert all(len(r["instances"]) == 2 for r in records)
    assert records[-1]["instances"][0]["track_id"] is not None  # tracked, as the CLI tracks videos
    assert stub.calls == 12


def test_cancel_stops_the_job_and_deletes_its_output(make_client, held):
    client = make_client(held)
    job_id = client.post("/api/videos", content=make_clip_bytes(frames=30)).json()["id"]
    held.entered.wait(WAIT_SECONDS)
    assert client.post(f"/api/videos/{job_id}/cancel").json()["state"] == "running"
    held.gate.set()
    status = finished(client, job_id)
    assert status["state"] == "cancelled" and status["frames_done"] < 30
    assert client.get(f"/api/videos/{job_id}/annotated.mp4").status_code == 409
    assert workspace_files(client) == []
    assert upload_image(client).status_code == 200  # its admission slot is free again


def test_a_queued_job_shows_its_place_and_cancelling_it_frees_the_place_at_once(make_client, held):
    client = make_client(held, queue_size=2)
    running = client.post("/api/videos", params={"name": "first.mp4"}, content=make_clip_bytes()).json()["id"]
    held.entered.wait(WAIT_SECONDS)
    queued = client.post("/api/videos", params={"name": "second.mp4"}, content=make_clip_bytes()).json()["id"]
    status = client.get(f"/api/videos/{queued}").json()
    assert (status["state"], status["ahead"], status["stem"]) == ("queued", 1, "second")
    assert client.post("/api/videos", content=make_clip_bytes()).status_code == 503  # both places are taken

    cancelled = client.post(f"/api/videos/{queued}/cancel").json()
    assert (cancelled["state"], cancelled["ahead"]) == ("cancelled", 0)  # at once, while the first still runs
    assert client.get(f"/api/videos/{running}").json()["state"] == "running"
    third = client.post("/api/videos", params={"name": "third.mp4"}, content=make_clip_bytes())
    assert third.status_code == 202  # its place was given back at once
    assert client.get(f"/api/videos/{third.json()['id']}").json()["ahead"] == 1
    held.gate.set()
    assert finished(client, running)["state"] == "done"
    assert finished(client, third.json()["id"])["state"] == "done"
    assert client.get(f"/api/videos/{queued}").json()["state"] == "cancelled"  # the worker skipped it
    assert held.calls == 2 * 12  # two clips of make_clip's 12 frames: nothing of the cancelled one ran


def test_a_file_that_is_no_video_is_refused_with_its_name(client):
    response = client.post("/api/videos", params={"name": "notes.txt"}, content=b"hello\n" * 50)
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "notes.txt" in detail and "rtseg-web-" not in detail  # no server path leaks into the message
    assert workspace_files(client) == []


def test_finished_videos_expire_with_their_files(client):
    job_id = client.post("/api/videos", content=make_clip_bytes()).json()["id"]
    assert finished(client, job_id)["state"] == "done"
    server = client.app.state.server
    server.expire(time.monotonic())  # not yet old
    assert client.get(f"/api/videos/{job_id}").status_code == 200
    server.expire(time.monotonic() + server.settings.keep_seconds + 1)
    assert client.get(f"/api/videos/{job_id}").status_code == 404
    assert workspace_files(client) == []


# -- webcam -----------------------------------------------------------------------------------------------

def frame_message(seq: int, image: np.ndarray) -> bytes:
    return seq.to_bytes(4, "big") + encode(image, ".jpg")


def test_webcam_frames_come_back_annotated_and_settings_apply(client):
    image = scene(96, 128)
    h, w = image.shape[:2]
    with client.websocket_connect(LIVE) as socket:
        socket.send_bytes(frame_message(1, image))
        facts = socket.receive_json()
        assert (facts["seq"], facts["objects"], facts["width"], facts["height"]) == (1, 2, w, h)
        answer = decode(socket.receive_bytes())
        sy, sx = square_centre(h, w)
        assert answer.shape == (h, w, 3)
        assert np.abs(answer[sy, sx].astype(int) - blended(image[sy, sx], 0)).max() <= 12  # JPEG both ways

        socket.send_text(json.dumps({"score": 0.7, "classes": []}))
        socket.send_bytes(frame_message(2, image))
        assert socket.receive_json()["objects"] == 1
        socket.receive_bytes()

        socket.send_bytes(b"\x00\x00\x00\x03not a jpeg")
        assert socket.receive_json() == {"seq": 3, "error": "a webcam frame did not decode as JPEG"}
        socket.send_text("{not json")
        assert socket.receive_json()["error"].startswith("bad settings")
        socket.send_bytes(frame_message(4, image))
        assert socket.receive_json()["seq"] == 4  # still serving


def test_webcam_answers_the_newest_frame_and_drops_the_rest(make_client, held):
    client = make_client(held)
    image = scene(48, 64)
    with client.websocket_connect(LIVE) as socket:
        socket.send_bytes(frame_message(1, image))
        held.entered.wait(WAIT_SECONDS)  # the model is busy with frame 1
        for seq in (2, 3, 4):
            socket.send_bytes(frame_message(seq, image))
        socket.send_text("[]")  # answered in order after frames 2-4 arrived: proves the server has them
        assert socket.receive_json()["error"].startswith("bad settings")
        held.gate.set()
        assert socket.receive_json()["seq"] == 1
        socket.receive_bytes()
        newest = socket.receive_json()
        assert (newest["seq"], newest["dropped"]) == (4, 2)
    assert held.calls == 2


def test_a_webcam_beyond_the_queue_gets_a_message_not_a_hang(make_client, held):
    client = make_client(held, queue_size=1)
    with client.websocket_connect(LIVE), client.websocket_connect(LIVE) as second:
        assert "busy" in second.receive_json()["error"]
