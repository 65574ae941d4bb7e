"""Zones and lines drawn on the page, through the endpoints: checked once, then counted on images, videos, the webcam.

The stub model of images (web_helpers.KnownObjectsDetector) finds a square and a
disc at known places; videos are make_clip's white square moving right, found by
rtseg.offline.stubs.SquareDetector, so a line down the middle is crossed once.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the [web] extra is not installed")

from helpers import make_clip
from test_app import LIVE, finished, frame_message, upload_image, workspace_files
from web_helpers import AROUND_SQUARE, decode, in_zone_only, scene, square_mask, tinted

from rtseg.offline.stubs import SquareDetector
from rtseg.web.scenes import MAX_BODY, MAX_POINTS, MAX_REGIONS

DOWN_THE_MIDDLE = [[0.5, 0.0], [0.5, 1.0]]  # walking down it, its left is the right half of the picture


def post_regions(client, zones=(), lines=()):
    return client.post("/api/regions", json={"zones": list(zones), "lines": list(lines)})


def regions_id(client, zones=(), lines=()) -> str:
    response = post_regions(client, zones, lines)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"zones": [{"name": "door", "points": [[0, 0], [1, 1], [1, 0.2], [0, 0.9]]}]}, 400, "zone 'door' crosses itself"),
    ({"zones": [{"name": "door", "points": [[0, 0], [1, 1]]}]}, 400, "zone 'door': needs at least 3 points, got 2"),
    ({"lines": [{"name": "a gate", "points": DOWN_THE_MIDDLE}]}, 400, "line name 'a gate': use 1-64 letters"),
    ({"lines": [{"name": "gate", "points": DOWN_THE_MIDDLE, "in": "up"}]}, 400, "line 'gate': in must be left or right"),
    ({"zones": [{"name": "door", "points": [[0, 0], [40, 0], [40, 30]]}]}, 400,
     "zone 'door': points must be fractions of the picture, from 0 to 1"),
    ({"zones": [{"name": "door", "points": AROUND_SQUARE, "classes": ["cat"]}]}, 400, "zone 'door': unknown class 'cat'"),
    ({"zones": [{"name": "x", "points": AROUND_SQUARE}], "lines": [{"name": "x", "points": DOWN_THE_MIDDLE}]}, 400,
     "names: the name 'x' is given to several zones or lines"),
    ({"zones": [{"name": f"z{i}", "points": AROUND_SQUARE} for i in range(MAX_REGIONS + 1)]}, 400,
     f"{MAX_REGIONS + 1} zones and lines: at most {MAX_REGIONS} at once"),
    ({"lines": [{"name": "long", "points": [[i / 100, 0.5] for i in range(MAX_POINTS + 1)]}]}, 400,
     f"line 1 has {MAX_POINTS + 1} points: at most {MAX_POINTS}"),
    ({"zones": "door"}, 400, "zones must be a list"),
    ({"areas": []}, 400, 'expected JSON {"zones": [...], "lines": [...]}'),
])
def test_bad_regions_are_refused_with_one_line(client, body, status, message):
    response = client.post("/api/regions", json=body)
    assert response.status_code == status
    detail = response.json()["detail"]
    assert detail.startswith(message) and "\n" not in detail, detail


def test_hostile_bodies_cost_bounded_work(client):
    deep = client.post("/api/regions", content=b"[" * 50_000)  # recursion in the JSON parser
    assert (deep.status_code, deep.json()["detail"]) == (400, "the zones and lines are not valid JSON")
    huge = client.post("/api/regions", content=b" " * (MAX_BODY + 1))
    assert huge.status_code == 413 and "larger than the limit" in huge.json()["detail"]

    def chunks():  # no Content-Length: refused at the first chunk over the limit
        for _ in range(MAX_BODY // 1000 + 2):
            yield b" " * 1000

    assert client.post("/api/regions", content=chunks()).status_code == 413


def test_the_same_regions_get_the_same_id_and_unknown_ids_are_404(client):
    first = regions_id(client, zones=[{"name": "door", "points": AROUND_SQUARE}])
    assert regions_id(client, zones=[{"name": "door", "points": AROUND_SQUARE}]) == first
    assert len(client.app.state.server.regions) == 1
    result = upload_image(client).json()["id"]
    for regions in ("0" * 32, "../../etc"):
        response = client.get(f"/api/images/{result}/objects", params={"regions": regions})
        assert response.status_code == 404 and "zones and lines have expired" in response.json()["detail"]


def test_an_image_zone_counts_what_is_inside_and_is_drawn(client, stub):
    image = scene()
    h, w = image.shape[:2]
    result = upload_image(client, image).json()["id"]
    door = regions_id(client, zones=[{"name": "door", "points": AROUND_SQUARE}])
    answer = client.get(f"/api/images/{result}/objects", params={"score": 0.5, "regions": door}).json()
    zone = answer["scene"]["zones"][0]
    assert (zone["text"], zone["inside"], zone["occupancy"]) == ("door: 1 inside (square 1)", {"square": 1}, 1)
    assert len(answer["objects"]) == 2  # the table is not filtered by the zone
    assert client.get(f"/api/images/{result}/objects").json()["scene"] is None  # without regions: none

    drawn = decode(client.get(f"/api/images/{result}/annotated.png", params={"regions": door}).content)
    plain = decode(client.get(f"/api/images/{result}/annotated.png").content)
    y, x = in_zone_only(h, w)
    assert not square_mask(h, w)[y, x]
    assert (plain[y, x] == image[y, x]).all()
    assert np.abs(drawn[y, x].astype(int) - tinted(image[y, x], 0)).max() <= 1
    outside = (int(0.8 * h), int(0.1 * w))
    assert (drawn[outside] == image[outside]).all()

    above_square = client.get(f"/api/images/{result}/objects", params={"score": 0.95, "regions": door}).json()
    assert above_square["scene"]["zones"][0]["text"] == "door: 0 inside"  # the filter applies to the counts
    assert stub.calls == 1


def test_lines_are_refused_on_a_still_image(client):
    result = upload_image(client).json()["id"]
    gate = regions_id(client, lines=[{"name": "gate", "points": DOWN_THE_MIDDLE}])
    response = client.get(f"/api/images/{result}/annotated.png", params={"regions": gate})
    assert response.status_code == 400 and response.json()["detail"].startswith(
        "lines count crossings of moving objects, and a still image has no motion")


def test_a_video_with_a_line_counts_the_crossing_and_has_events_and_a_heatmap(make_client, tmp_path):
    client = make_client(SquareDetector())
    gate = regions_id(client, lines=[{"name": "gate", "points": DOWN_THE_MIDDLE}])
    clip = make_clip(tmp_path / "walk.mp4", frames=40, width=160, height=96)
    job = client.post("/api/videos", params={"name": "walk.mp4", "regions": gate}, content=clip.read_bytes())
    assert job.status_code == 202
    job_id = job.json()["id"]
    status = finished(client, job_id)
    assert status["state"] == "done" and status["analytics"] is True
    line = status["scene"]["lines"][0]
    assert (line["text"], line["crossed_in"], line["crossed_out"]) == ("gate: in 1, out 0", {"square": 1}, {})
    assert [(e["kind"], e["line"], e["direction"], e["class"]) for e in status["events"]] == [
        ("cross", "gate", "in", "square")]
    assert status["events_total"] == 1

    events = client.get(f"/api/videos/{job_id}/events.jsonl")
    assert 'filename="walk-events.jsonl"' in events.headers["content-disposition"]
    rows = [json.loads(text) for text in events.text.splitlines()]
    crossings = [r for r in rows if r["kind"] == "cross"]
    assert [(r["line"], r["direction"], r["track_id"], r["stream"]) for r in crossings] == [("gate", "in", 1, "walk")]
    assert 16 <= crossings[0]["frame"] <= 30  # the square's left edge (4 + 3 i) passes x = 80 - 16 * 0.6 .. 80
    heatmap = client.get(f"/api/videos/{job_id}/heatmap.png")
    assert 'filename="walk-heatmap.png"' in heatmap.headers["content-disposition"]
    picture = decode(heatmap.content)
    assert picture.shape[:2] == (96, 160)
    hot, cold = picture[96 // 4 + 8, 80], picture[90, 80]  # on the square's path; below it
    assert np.abs(hot.astype(int) - cold.astype(int)).max() > 30


def test_a_video_without_regions_has_a_heatmap_but_no_events(client):
    job_id = client.post("/api/videos", params={"name": "clip.mp4"},
                         content=make_clip(Path(client.app.state.server.workspace.root) / "c.mp4").read_bytes()
                         ).json()["id"]
    status = finished(client, job_id)
    assert (status["analytics"], status["scene"], status["events"]) == (False, None, [])
    assert client.get(f"/api/videos/{job_id}/heatmap.png").content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get(f"/api/videos/{job_id}/events.jsonl").status_code == 404


def test_a_video_job_with_unknown_regions_is_refused_before_the_upload_is_kept(client):
    response = client.post("/api/videos", params={"regions": "f" * 32}, content=b"anything")
    assert response.status_code == 404 and "zones and lines have expired" in response.json()["detail"]
    assert workspace_files(client) == []


def test_a_cancelled_job_deletes_its_events_and_heatmap_too(make_client, held, tmp_path):
    client = make_client(held)
    door = regions_id(client, zones=[{"name": "door", "points": AROUND_SQUARE}])
    clip = make_clip(tmp_path / "c.mp4", frames=30)
    job_id = client.post("/api/videos", params={"regions": door}, content=clip.read_bytes()).json()["id"]
    held.entered.wait(30)
    client.post(f"/api/videos/{job_id}/cancel")
    held.gate.set()
    assert finished(client, job_id)["state"] == "cancelled"
    assert client.get(f"/api/videos/{job_id}/heatmap.png").status_code == 409
    assert workspace_files(client) == []


def test_the_webcam_tracks_and_counts_a_zone_with_its_events(client):
    image = scene(240, 320)
    h, w = image.shape[:2]
    door = regions_id(client, zones=[{"name": "door", "points": AROUND_SQUARE}])
    with client.websocket_connect(LIVE) as socket:
        socket.send_bytes(frame_message(1, image))
        assert "scene" not in socket.receive_json()  # no regions yet
        socket.receive_bytes()
        socket.send_text(json.dumps({"score": 0.5, "classes": [], "regions": door}))
        answers = []
        for seq in (2, 3, 4):
            socket.send_bytes(frame_message(seq, image))
            answers.append(socket.receive_json())
            picture = decode(socket.receive_bytes())
        # a track is confirmed on its second sighting: then it enters, once
        assert [a["scene"]["zones"][0]["text"] for a in answers] == [
            "door: 0 inside", "door: 1 inside (square 1), 1 entered", "door: 1 inside (square 1), 1 entered"]
        assert [[(e["kind"], e["zone"], e["class"]) for e in a["events"]] for a in answers] == [
            [], [("enter", "door", "square")], []]
        y, x = in_zone_only(h, w)
        assert np.abs(picture[y, x].astype(int) - tinted(image[y, x], 0)).max() <= 12  # JPEG both ways

        socket.send_text(json.dumps({"regions": "0" * 32}))
        assert socket.receive_json()["error"].startswith("bad settings: the zones and lines have expired")
        socket.send_text(json.dumps({"regions": None}))
        socket.send_bytes(frame_message(5, image))
        assert "scene" not in socket.receive_json()  # regions taken away: plain frames again
