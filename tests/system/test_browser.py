"""The page in a real browser: Debian's Chromium driven by Playwright, against the app on 127.0.0.1 with a stub model.

The stub (web_helpers.KnownObjectsDetector) finds a 'square' (0.9) and a 'disc'
(0.6) at known places, so the tests read the drawn pixels where its masks are;
``served.detector.gate`` held closed keeps a video job running (or queued) for
as long as a test needs. No browser is downloaded: Playwright drives
/usr/bin/chromium (.ci/run installs it with apt), and the accessibility pass
injects the axe-core that the axe-playwright-python package ships.
Zones and lines are drawn as a user draws them, by clicks on the overlay over
each preview; a second server over rtseg.offline.stubs.SquareDetector finds
make_clip's moving white square, so a line down a clip's middle is crossed once.
``RTSEG_UPDATE_DOCS=1`` saves the README's screenshots (docs/web.png at
1280×900, docs/web-phone.png at 390×844, docs/web-zones.png).
"""

from __future__ import annotations

import json
import os
import threading
import time
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
DOCS = Path(__file__).resolve().parents[2] / "docs"
WAIT_MS = 30_000
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def _skip_or_fail(reason: str, module: bool = True) -> None:
    if os.environ.get("RTSEG_REQUIRE_BROWSER"):  # CI: a missing piece is a failure, not a skipped test
        raise RuntimeError(reason)
    pytest.skip(reason, allow_module_level=module)


try:
    import uvicorn
    from playwright import sync_api

    from rtseg.web.app import WebSettings, create_app
    from rtseg.web.serve import listen
except ImportError as exc:
    _skip_or_fail(f"{exc.name} is not installed (pip install -e '.[web,browser]')")
if not CHROMIUM.exists():
    _skip_or_fail(f"{CHROMIUM} is not installed (apt-get install chromium)")

from helpers import make_clip  # noqa: E402
from web_helpers import (  # noqa: E402
    AROUND_SQUARE,
    DISC_SCORE,
    SQUARE_SCORE,
    KnownObjectsDetector,
    blended,
    decode,
    disc_centre,
    encode,
    in_zone_only,
    scene,
    square_centre,
    tinted,
)

from rtseg.offline.stubs import SquareDetector  # noqa: E402
from rtseg.render.scene import ZONE_COLORS  # noqa: E402


@contextmanager
def serving(detector):
    """The app over ``detector``, served by uvicorn on a free port of 127.0.0.1 in a thread."""
    app = create_app(detector, WebSettings())
    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield SimpleNamespace(url=f"http://127.0.0.1:{sock.getsockname()[1]}/", detector=detector,
                              server=app.state.server)
    finally:
        if isinstance(detector, KnownObjectsDetector):
            detector.gate.set()
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture(scope="module")
def served():
    with serving(KnownObjectsDetector()) as app:
        yield app


@pytest.fixture(scope="module")
def square_served():
    """A second server, whose model finds make_clip's moving white square (a line can be crossed)."""
    with serving(SquareDetector()) as app:
        yield app


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def open_page(browser, served):
    """``open_page(viewport=DESKTOP)``: a fresh tab (its own session storage) on the page, ready; script errors fail."""
    contexts, failures = [], []

    def opener(viewport=DESKTOP, server=None, **options):
        url = (server or served).url
        context = browser.new_context(viewport=viewport, base_url=url, **options)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("pageerror", lambda error: failures.append(str(error)))
        page.goto(url)
        page.wait_for_selector("body[data-ready=true]", state="attached")  # the page's own CSP stays on
        return page

    yield opener
    for context in contexts:
        context.close()
    assert failures == [], "the page's script failed"


@pytest.fixture
def page(open_page):
    return open_page()


@contextmanager
def model_held(served):
    """The stub's calls wait while inside: a video job stays running (and one after it stays queued)."""
    served.detector.gate.clear()
    try:
        yield
    finally:
        served.detector.gate.set()


def pixels(page, selector: str, points: list[tuple[int, int]]) -> np.ndarray:
    """RGB at (y, x) points of an <img>, <video> or <canvas> at its natural size, read through a canvas."""
    values = page.evaluate("""([selector, points]) => {
        const element = document.querySelector(selector);
        const canvas = document.createElement("canvas");
        canvas.width = element.naturalWidth || element.videoWidth || element.width;
        canvas.height = element.naturalHeight || element.videoHeight || element.height;
        const context = canvas.getContext("2d");
        context.drawImage(element, 0, 0);
        return points.map(([y, x]) => Array.from(context.getImageData(x, y, 1, 1).data.slice(0, 3)));
    }""", [selector, points])
    return np.array(values)


def box(page, selector: str) -> dict:
    found = page.locator(selector).bounding_box()
    assert found is not None, f"{selector} is not shown"
    return found


def wait_for_result(page, score: str, rows: int, classes: str = "") -> None:
    page.wait_for_function("""([score, rows, classes]) => {
        const image = document.getElementById("result-image");
        if (!image.src) return false;
        const url = new URL(image.src);
        return document.querySelectorAll("#objects tbody tr").length === rows && image.complete
            && image.naturalWidth > 0 && url.searchParams.get("score") === score
            && url.searchParams.get("classes") === classes && !document.getElementById("image-result").hidden;
    }""", arg=[score, rows, classes])


def run_image(page, path: Path, score: str = "0.5", rows: int = 2) -> None:
    page.set_input_files("#image-file", str(path))
    page.wait_for_function("() => !document.getElementById('run-image').disabled")
    page.click("#run-image")
    wait_for_result(page, score, rows)


def drop_file(page, selector: str, path: Path, mime: str, event: str = "drop") -> None:
    """Drops (or pastes) a file from this machine onto an element, as a user's drag from the desktop would."""
    transfer = page.evaluate_handle("""([bytes, name, mime]) => {
        const transfer = new DataTransfer();
        transfer.items.add(new File([new Uint8Array(bytes)], name, { type: mime }));
        return transfer;
    }""", [list(path.read_bytes()), path.name, mime])
    if event == "drop":
        page.dispatch_event(selector, "drop", {"dataTransfer": transfer})
    else:
        page.evaluate("""(transfer) => document.dispatchEvent(
            new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true }))""", transfer)


def live_links(page, panel: str) -> list[str]:
    """The hrefs of the download links a user could follow in a panel (shown and with an address)."""
    return page.evaluate("""(panel) => Array.from(document.querySelectorAll(`#${panel} a[href]`))
        .filter((a) => a.offsetParent !== null).map((a) => a.getAttribute("href"))""", panel)


def server_state(page, job_id: str) -> dict:
    return page.request.get(f"/api/videos/{job_id}").json()


def tab_job_id(page) -> str:
    return page.evaluate("() => JSON.parse(sessionStorage.getItem('rtseg.video')).id")


def start_video(page, clip: Path) -> None:
    page.click("#tab-video")
    page.set_input_files("#video-file", str(clip))
    page.wait_for_function("() => !document.getElementById('run-video').disabled")
    page.click("#run-video")


def wait_for_text(page, selector: str, start: str) -> None:
    page.wait_for_function("([selector, start]) => document.querySelector(selector).textContent.startsWith(start)",
                           arg=[selector, start])


def save_doc(page, name: str, full_page: bool = False) -> None:
    shot = page.screenshot(full_page=full_page)
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("RTSEG_UPDATE_DOCS"):
        (DOCS / name).write_bytes(shot)


# -- image ------------------------------------------------------------------------------------------------

def test_image_result_then_the_slider_refilters_without_the_model(page, served, tmp_path):
    image = scene(360, 480)
    h, w = image.shape[:2]
    (tmp_path / "street.png").write_bytes(encode(image))
    calls = served.detector.calls
    run_image(page, tmp_path / "street.png")
    assert served.detector.calls == calls + 1
    square, disc = square_centre(h, w), disc_centre(h, w)
    both = pixels(page, "#result-image", [square, disc])
    assert np.abs(both[0] - blended(image[square], 0)).max() <= 1
    assert np.abs(both[1] - blended(image[disc], 1)).max() <= 1
    cells = page.locator("#objects tbody tr").first.locator("td").all_inner_texts()
    assert cells[:2] == ["square", f"{SQUARE_SCORE:.2f}"]
    assert page.inner_text("#image-summary") == "2 objects ≥ 0.50 in street.png: 1 square, 1 disc."
    assert page.evaluate("() => document.activeElement.id") == "image-summary"  # focus follows the result
    names = {a: page.get_attribute(f"#download-{a}", "download") for a in ("png", "json", "zip")}
    assert names == {"png": "street-annotated.png", "json": "street-detections.json", "zip": "street-cutouts.zip"}
    assert live_links(page, "image-panel") == [page.get_attribute(f"#download-{a}", "href") for a in names]
    save_doc(page, "web.png")

    between = f"{(SQUARE_SCORE + DISC_SCORE) / 2:.2f}"
    page.fill("#score", between)
    wait_for_result(page, between, rows=1)
    square_only = pixels(page, "#result-image", [square, disc])
    assert (square_only[1] == image[disc]).all()  # the disc's mask is gone
    assert (square_only[0] == both[0]).all()
    assert all(f"score={between}" in href for href in live_links(page, "image-panel"))  # the links follow
    assert served.detector.calls == calls + 1  # moving the slider ran no model call

    page.fill("#score", "0.95")
    wait_for_result(page, "0.95", rows=0)
    assert page.inner_text("#image-summary") == ("No objects score 0.95 or more in street.png: "
                                                 "lower the score threshold to see weaker ones.")
    assert page.locator("#objects-wrap").is_hidden()


def test_a_dropped_image_is_previewed_before_any_upload(page, served, tmp_path):
    (tmp_path / "dropped.png").write_bytes(encode(scene(120, 200)))
    before_any = page.evaluate("""() => Array.from(document.querySelectorAll("figure, figcaption, a"))
        .filter((e) => e.offsetParent !== null).length""")
    assert before_any == 0  # no empty captions, no dead download labels before a run
    calls, images = served.detector.calls, len(served.server.images)
    drop_file(page, "#image-drop", tmp_path / "dropped.png", "image/png")
    page.wait_for_function("() => document.getElementById('image-preview').naturalWidth === 200 "
                           "&& !document.getElementById('run-image').disabled")
    assert box(page, "#image-preview")["width"] > 0
    assert page.inner_text("#image-chosen").startswith("dropped.png · ")
    assert page.inner_text("#image-chosen").endswith(" · 200 × 120 px")
    assert (served.detector.calls, len(served.server.images)) == (calls, images)  # nothing was uploaded

    (tmp_path / "pasted.png").write_bytes(encode(scene(90, 150)))
    page.click("#tab-webcam")
    drop_file(page, "body", tmp_path / "pasted.png", "image/png", event="paste")
    page.wait_for_function("() => document.getElementById('image-preview').naturalWidth === 150")
    assert page.get_attribute("#tab-image", "aria-selected") == "true"  # a pasted image opens the Image tab


def test_a_text_file_chosen_as_an_image_keeps_run_disabled_and_says_why(page, served, tmp_path):
    notes = tmp_path / "notes.png"
    notes.write_text("not an image at all\n" * 20)
    calls = served.detector.calls
    page.set_input_files("#image-file", str(notes))
    error = page.locator("#image-error")
    error.wait_for(state="visible")
    assert error.inner_text() == "notes.png cannot be shown as an image: choose a JPG, PNG, WebP or BMP file"
    assert page.is_disabled("#run-image")
    assert page.locator("#image-original").is_hidden()  # no broken-image icon
    assert served.detector.calls == calls


def test_messages_use_the_pages_labels(page, tmp_path):
    (tmp_path / "small.png").write_bytes(encode(scene(60, 80)))
    page.set_input_files("#image-file", str(tmp_path / "small.png"))
    page.wait_for_function("() => !document.getElementById('run-image').disabled")
    page.fill("#max-side", "10")
    page.click("#run-image")
    assert page.inner_text("#image-error") == "Max size must be a whole number of pixels from 32 to 2048"
    assert page.evaluate("() => document.activeElement.id") == "max-side"
    # What the server says in the API's names reaches the page in its labels.
    answer = page.request.post("/api/images?max_side=10", data=encode(scene(8, 8)))
    assert answer.json()["detail"] == "max_side: Input should be greater than or equal to 32"
    assert page.evaluate("(text) => ownWords(text)", answer.json()["detail"]) == "Max size: must be 32 or more"


# -- class picker -------------------------------------------------------------------------------------------

def test_the_class_picker_keeps_two_chosen_classes(page, tmp_path):
    (tmp_path / "scene.png").write_bytes(encode(scene(120, 160)))
    run_image(page, tmp_path / "scene.png")
    assert page.inner_text("#class-shown") == "All classes are shown (2)."
    page.fill("#class-search", "squ")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    wait_for_result(page, "0.5", rows=1, classes="square")
    page.fill("#class-search", "di")
    page.click("#class-list [role=option] >> text=disc")
    wait_for_result(page, "0.5", rows=2, classes="square,disc")
    chips = page.locator("#class-chips .chip span").all_inner_texts()
    assert chips == ["square", "disc"]
    page.fill("#class-search", "")
    selected = page.locator("#class-list [aria-selected=true]").all_inner_texts()
    assert selected == ["square", "disc"]  # a plain click added to the choice instead of replacing it
    assert page.inner_text("#class-shown") == "Shown: square, disc (2 of 2 classes)."
    assert page.inner_text("#image-summary").startswith("2 objects ≥ 0.50 among square, disc in scene.png")

    page.click("#class-chips >> [aria-label='Remove square']")
    wait_for_result(page, "0.5", rows=1, classes="disc")
    assert page.locator("#class-chips .chip span").all_inner_texts() == ["disc"]
    page.click("#classes-all")
    wait_for_result(page, "0.5", rows=2)
    assert page.locator("#class-chips .chip").count() == 0
    assert page.inner_text("#class-shown") == "All classes are shown (2)."


# -- video ------------------------------------------------------------------------------------------------

def test_a_video_is_previewed_then_reaches_100_percent_and_plays(page, served, tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=20, width=160, height=96, fps=10)
    page.click("#tab-video")
    jobs = len(served.server.videos.jobs)
    page.set_input_files("#video-file", str(clip))
    page.wait_for_function("() => document.getElementById('video-preview').readyState >= 2 "
                           "&& !document.getElementById('run-video').disabled")
    assert page.inner_text("#video-chosen").endswith(" · 2.0 s · 160 × 96 px")
    assert box(page, "#video-preview")["height"] > 0 and len(served.server.videos.jobs) == jobs  # not uploaded
    page.click("#run-video")
    page.wait_for_function("() => document.getElementById('progress').value === 100 "
                           "&& !document.getElementById('result-video').hidden")
    assert page.inner_text("#progress-text") == "Done: 20 / 20 frames"
    duration = page.evaluate("""() => new Promise((resolve) => {
        const video = document.getElementById("result-video");
        if (video.readyState >= 1) resolve(video.duration);
        else video.addEventListener("loadedmetadata", () => resolve(video.duration));
    })""")
    assert duration == pytest.approx(2.0, abs=0.15)
    played = page.evaluate("""async () => {
        const video = document.getElementById("result-video");
        await video.play();
        await new Promise((resolve) => setTimeout(resolve, 600));
        return video.currentTime;
    }""")
    assert played > 0.2
    job_id = tab_job_id(page)
    assert live_links(page, "video-panel") == [f"/api/videos/{job_id}/annotated.mp4",
                                               f"/api/videos/{job_id}/detections.jsonl",
                                               f"/api/videos/{job_id}/heatmap.png"]  # no events: nothing was drawn
    assert page.locator("#video-scene").is_hidden()
    assert page.get_attribute("#download-mp4", "download") == "clip-annotated.mp4"


def test_a_text_file_chosen_as_a_video_keeps_run_disabled(page, tmp_path):
    notes = tmp_path / "notes.mp4"
    notes.write_text("hello\n" * 50)
    page.click("#tab-video")
    page.set_input_files("#video-file", str(notes))
    page.locator("#video-error").wait_for(state="visible")
    assert page.inner_text("#video-error") == "notes.mp4 cannot be read as a video: choose an MP4, MOV, MKV, WebM or AVI file"
    assert page.is_disabled("#run-video")


def test_a_cancelled_video_leaves_no_live_download_link(page, served, tmp_path):
    start_video(page, make_clip(tmp_path / "short.mp4", frames=6, width=96, height=64))
    page.wait_for_function("() => !document.getElementById('video-downloads').hidden")
    first = tab_job_id(page)
    assert live_links(page, "video-panel")[0] == f"/api/videos/{first}/annotated.mp4"
    with model_held(served):
        page.set_input_files("#video-file", str(make_clip(tmp_path / "long.mp4", frames=40, width=96, height=64)))
        page.wait_for_function("() => !document.getElementById('run-video').disabled")
        page.click("#run-video")
        assert live_links(page, "video-panel") == []  # cleared as the run starts, before any answer
        wait_for_text(page, "#progress-text", "Running")
        page.click("#cancel-video")
        wait_for_text(page, "#progress-text", "Cancelling")  # it stops once the model call in progress ends
        assert live_links(page, "video-panel") == []
    wait_for_text(page, "#progress-text", "Cancelled after ")
    second = tab_job_id(page) if page.evaluate("() => sessionStorage.getItem('rtseg.video')") else None
    assert second is None  # a cancelled job is not reconnected to
    assert live_links(page, "video-panel") == []
    assert page.evaluate("() => Array.from(document.querySelectorAll('#video-panel a[href]')).length") == 0
    assert page.locator("#result-video").is_hidden() and page.locator("#cancel-video").is_hidden()
    assert page.evaluate("() => document.activeElement.id") == "run-video"


def test_a_reload_mid_job_shows_the_job_again(page, served, tmp_path):
    with model_held(served):
        start_video(page, make_clip(tmp_path / "walk.mp4", frames=8, width=96, height=64))
        wait_for_text(page, "#progress-text", "Running")
        job_id = tab_job_id(page)
        page.reload()
        page.wait_for_selector("body[data-ready=true]", state="attached")
        assert page.get_attribute("#tab-video", "aria-selected") == "true"
        wait_for_text(page, "#progress-text", "Running: ")
        assert page.locator("#cancel-video").is_visible() and page.is_disabled("#run-video")
        assert tab_job_id(page) == job_id
    page.wait_for_function("() => !document.getElementById('result-video').hidden")
    assert page.inner_text("#progress-text") == "Done: 8 / 8 frames"
    assert page.inner_text("#video-summary") == "Result for walk.mp4: 8 frames, tracked."
    assert live_links(page, "video-panel")[0] == f"/api/videos/{job_id}/annotated.mp4"


def test_a_queued_job_shows_its_place_and_cancelling_it_frees_the_place_at_once(open_page, served, tmp_path):
    first, second = open_page(), open_page()
    clip = make_clip(tmp_path / "queue.mp4", frames=8, width=96, height=64)
    with model_held(served):
        start_video(first, clip)
        wait_for_text(first, "#progress-text", "Running")
        start_video(second, clip)
        wait_for_text(second, "#progress-text", "Queued: 1 job ahead of queue.mp4")
        queued = tab_job_id(second)
        second.click("#cancel-video")
        wait_for_text(second, "#progress-text", "Cancelled before it started")
        assert server_state(second, queued)["state"] == "cancelled"  # on the server too, while the first still runs
        assert server_state(first, tab_job_id(first))["state"] == "running"
        assert second.locator("#cancel-video").is_hidden() and not second.is_disabled("#run-video")
        third = second.request.post("/api/videos?name=next.mp4", data=clip.read_bytes()).json()
        assert server_state(second, third["id"])["ahead"] == 1  # only the running job is ahead now
        second.request.post(f"/api/videos/{third['id']}/cancel")
    wait_for_text(first, "#progress-text", "Done")


# -- webcam -----------------------------------------------------------------------------------------------

def test_the_fake_webcam_streams_annotated_frames_beside_the_camera_then_stops(page, served):
    calls = served.detector.calls
    page.click("#tab-webcam")
    assert page.inner_text("#fps") == "-" and page.locator("#webcam-pair").is_hidden()
    page.click("#webcam-start")
    # An answer is drawn only once decoded and at the size of the frame sent: wait for a few, at the camera's size.
    page.wait_for_function("""() => {
        const source = document.getElementById("webcam-source"), view = document.getElementById("webcam-view");
        const scale = Math.min(1, 640 / (source.videoWidth || 1));
        return Number(view.dataset.frames) >= 3 && view.width === Math.round(source.videoWidth * scale)
            && view.height === Math.round(source.videoHeight * scale) && Number(document.getElementById("fps").textContent) > 0;
    }""")
    width, height = page.evaluate("() => [document.getElementById('webcam-view').width, "
                                  "document.getElementById('webcam-view').height]")
    assert 0 < width <= 640 and height > 0
    # Inside the stub's square, away from its outline and label, where Chromium's fake camera shows a still
    # background: the answer is that background blended with colour 0 (JPEG both ways: a few levels off).
    inside = (height // 8 + height // 10, width // 8 + width // 12)
    camera = pixels(page, "#webcam-source", [inside])[0]
    answer = pixels(page, "#webcam-view", [inside])[0]
    assert np.abs(answer - blended(camera, 0)).max() <= 12, (camera, answer)
    source, view = box(page, "#webcam-source"), box(page, "#webcam-view")
    assert source["x"] + source["width"] <= view["x"] and abs(source["y"] - view["y"]) < 2  # side by side
    assert view["y"] + view["height"] <= DESKTOP["height"]  # scrolled into view, not below the fold
    page.wait_for_function("() => Number(document.getElementById('latency').textContent) >= 0")
    assert served.detector.calls >= calls + 3
    page.click("#webcam-stop")
    assert page.locator("#webcam-pair").is_hidden()
    assert page.evaluate("() => document.getElementById('webcam-view').width") == 0  # the last frame is gone
    assert (page.inner_text("#fps"), page.inner_text("#latency")) == ("-", "-")
    assert page.inner_text("#webcam-status").startswith("Stopped: ")
    assert page.evaluate("() => document.activeElement.id") == "webcam-start"
    assert "model was still busy" in page.inner_text("#dropped-help")


# -- zones and lines ----------------------------------------------------------------------------------------

def click_at(page, overlay: str, fractions, double_last: bool = False) -> None:
    """Clicks on an overlay at fractions of its picture, as a user clicks corners; the last one doubled if asked."""
    area = box(page, overlay)
    for i, (fx, fy) in enumerate(fractions):
        x, y = area["x"] + fx * area["width"], area["y"] + fy * area["height"]
        if double_last and i == len(fractions) - 1:
            page.mouse.dblclick(x, y)
        else:
            page.mouse.click(x, y)


def draw_zone(page, tab: str, fractions) -> None:
    """Draw zone, one click per corner, then a click on the first corner closes it."""
    page.click(f"#{tab}-draw-zone")
    click_at(page, f"#{tab}-overlay", [*fractions, fractions[0]])


def region_names(page, tab: str) -> list[str]:
    return page.eval_on_selector_all(f"#{tab}-region-list input", "(inputs) => inputs.map((i) => i.value)")


def test_a_zone_drawn_on_the_image_preview_counts_the_square_and_tints_the_result(page, served, tmp_path):
    image = scene(360, 480)
    h, w = image.shape[:2]
    (tmp_path / "yard.png").write_bytes(encode(image))
    page.set_input_files("#image-file", str(tmp_path / "yard.png"))
    page.wait_for_function("() => !document.getElementById('run-image').disabled")
    assert page.evaluate("ZONE_COLORS") == [list(c) for c in ZONE_COLORS]  # the page's palette is the drawing's

    page.click("#image-draw-zone")
    assert page.get_attribute("#image-draw-zone", "aria-pressed") == "true"
    click_at(page, "#image-overlay", AROUND_SQUARE[:2])
    page.keyboard.press("Escape")  # cancels the drawing: nothing is kept
    assert region_names(page, "image") == [] and page.locator("#image-overlay circle").count() == 0
    assert page.inner_text("#image-draw-help") == "Drawing cancelled."

    draw_zone(page, "image", AROUND_SQUARE)
    assert region_names(page, "image") == ["zone-1"]
    polygon = page.locator("#image-overlay polygon").first
    corners = [[float(v) for v in p.split(",")] for p in polygon.get_attribute("points").split()]
    area = box(page, "#image-overlay")
    assert np.allclose(np.array(corners) / [area["width"], area["height"]], AROUND_SQUARE, atol=0.01)
    assert polygon.get_attribute("fill") == "rgb({}, {}, {})".format(*ZONE_COLORS[0])
    page.fill("#image-region-list input", "door")
    page.keyboard.press("Enter")  # a text field's change: the name is taken

    page.click("#run-image")
    wait_for_result(page, "0.5", rows=2)
    page.wait_for_function("() => document.getElementById('image-counts').textContent.includes('door')")
    assert page.inner_text("#image-counts") == "door: 1 inside (square 1)"
    y, x = in_zone_only(h, w)
    shown = pixels(page, "#result-image", [(y, x), (int(0.8 * h), int(0.1 * w))])
    assert np.abs(shown[0] - tinted(image[y, x], 0)).max() <= 1  # the zone's tint, in its colour
    assert (shown[1] == image[int(0.8 * h), int(0.1 * w)]).all()  # outside it: untouched
    assert "regions=" in page.get_attribute("#download-png", "href")  # the download is the picture shown
    save_doc(page, "web-zones.png", full_page=True)

    page.click("#image-overlay polygon")  # selects it; Delete removes it and the result follows
    page.keyboard.press("Delete")
    assert region_names(page, "image") == []
    assert page.evaluate("() => document.activeElement.id") == "image-overlay"  # the keyboard stays in the picture
    page.wait_for_function("() => document.getElementById('image-counts').hidden")
    page.wait_for_function("() => !new URL(document.getElementById('result-image').src).searchParams.get('regions')")


def test_bad_geometry_is_refused_in_one_line_in_the_pages_words(page, served, tmp_path):
    (tmp_path / "bow.png").write_bytes(encode(scene(240, 320)))
    page.set_input_files("#image-file", str(tmp_path / "bow.png"))
    page.wait_for_function("() => !document.getElementById('run-image').disabled")
    page.click("#image-draw-zone")
    click_at(page, "#image-overlay", [(0.1, 0.1), (0.9, 0.9), (0.9, 0.2), (0.1, 0.8)])  # a bow tie
    page.keyboard.press("Enter")
    page.click("#run-image")
    error = page.locator("#image-regions-error")
    error.wait_for(state="visible")
    assert error.inner_text() == "Zones: zone 'zone-1' crosses itself (its edges 1 and 3 meet)"
    wait_for_result(page, "0.5", rows=2)  # the run goes on without the zone, and says so beside it
    assert page.locator("#image-counts").is_hidden()

    page.fill("#image-region-list input", "a door")
    page.keyboard.press("Enter")
    assert page.inner_text("#image-regions-error").startswith("Names: a door: use 1-64 letters")
    assert page.get_attribute("#image-region-list input", "aria-invalid") == "true"
    answer = page.request.post("/api/regions", data={"zones": [{"name": "d", "points": [[0, 0], [1, 1]]}]})
    assert (answer.status, answer.json()["detail"]) == (400, "zone 'd': needs at least 3 points, got 2")


def test_a_line_drawn_on_a_video_counts_the_crossing_with_events_and_downloads(open_page, square_served, tmp_path):
    page = open_page(server=square_served)
    clip = make_clip(tmp_path / "walk.mp4", frames=40, width=160, height=96, fps=10)
    page.click("#tab-video")
    page.set_input_files("#video-file", str(clip))
    page.wait_for_function("() => !document.getElementById('run-video').disabled")
    page.click("#video-draw-line")
    click_at(page, "#video-overlay", [(0.5, 0.02), (0.5, 0.98)], double_last=True)  # a double click finishes it
    assert region_names(page, "video") == ["line-1"]
    item = page.locator("#video-region-list li")
    item.get_by_role("button", name="Flip which side of line-1 is in").click()
    assert "in: right" in item.inner_text()
    item.get_by_role("button", name="Flip which side of line-1 is in").click()  # back: left of a downward walk
    assert "in: left" in item.inner_text()  # is the right half, where the square goes
    arrow = page.locator("#video-overlay line").first
    assert float(arrow.get_attribute("x2")) > float(arrow.get_attribute("x1"))  # the arrow points there

    page.click("#run-video")
    page.wait_for_function("() => !document.getElementById('result-video').hidden")
    assert page.inner_text("#video-counts") == "line-1: in 1, out 0"
    events = page.locator("#video-events li").all_inner_texts()
    assert len(events) == 1 and events[0].endswith(": square #1 crossed line-1, in")
    assert page.inner_text("#video-events-total") == "1 event, newest first."
    job_id = tab_job_id(page)
    assert live_links(page, "video-panel") == [f"/api/videos/{job_id}/{name}" for name in (
        "annotated.mp4", "detections.jsonl", "events.jsonl", "heatmap.png")]
    names = [page.get_attribute(f"#download-{k}", "download") for k in ("events", "heatmap")]
    assert names == ["walk-events.jsonl", "walk-heatmap.png"]
    lines = page.request.get(f"/api/videos/{job_id}/events.jsonl").text().splitlines()
    crossings = [row for row in map(json.loads, lines) if row["kind"] == "cross"]
    assert [(c["line"], c["direction"], c["class"]) for c in crossings] == [("line-1", "in", "square")]
    heatmap = page.request.get(f"/api/videos/{job_id}/heatmap.png").body()
    assert heatmap[:8] == b"\x89PNG\r\n\x1a\n" and decode(heatmap).shape[:2] == (96, 160)

    page.set_input_files("#video-file", str(make_clip(tmp_path / "again.mp4", frames=6, width=96, height=64)))
    page.wait_for_function("() => !document.getElementById('run-video').disabled")
    page.click("#run-video")
    assert live_links(page, "video-panel") == []  # the events and heatmap links go with the others
    assert page.locator("#video-scene").is_hidden()
    page.wait_for_function("() => !document.getElementById('video-downloads').hidden")


def test_the_webcam_counts_a_zone_drawn_on_the_camera(page, served):
    page.click("#tab-webcam")
    assert page.is_disabled("#webcam-draw-zone")  # nothing to draw on before the camera runs
    assert page.inner_text("#webcam-draw-help") == "Start the webcam to draw on its picture."
    page.click("#webcam-start")
    page.wait_for_function("() => Number(document.getElementById('webcam-view').dataset.frames) >= 1")
    draw_zone(page, "webcam", AROUND_SQUARE)
    assert region_names(page, "webcam") == ["zone-1"]
    page.wait_for_function("""() => document.getElementById("webcam-counts").textContent
        .startsWith("zone-1: 1 inside (square 1), 1 entered")""")
    assert page.locator("#webcam-events li").last.inner_text().endswith(": square #1 entered zone-1")
    page.click("#webcam-stop")
    assert page.locator("#webcam-scene").is_hidden() and page.is_disabled("#webcam-draw-zone")
    assert region_names(page, "webcam") == ["zone-1"]  # kept for the next start


# -- layout and accessibility ------------------------------------------------------------------------------

TOUCH_TARGETS = ("button, [role=tab], a[href], input[type=number], input[type=range], #class-search, label.choose, "
                 ".region-list input")


def small_targets(page) -> list[str]:
    return page.evaluate("""(selector) => Array.from(document.querySelectorAll(selector))
        .filter((e) => e.offsetParent !== null && e.getBoundingClientRect().height < 44)
        .map((e) => `${e.id || e.textContent.trim()}: ${e.getBoundingClientRect().height}`)""", TOUCH_TARGETS)


def test_desktop_puts_the_settings_beside_the_result(page, served, tmp_path):
    (tmp_path / "wide.png").write_bytes(encode(scene(300, 400)))
    run_image(page, tmp_path / "wide.png")
    settings, panel = box(page, "#settings"), box(page, "#image-panel")
    assert settings["x"] + settings["width"] <= panel["x"] and settings["y"] < panel["y"] + panel["height"]
    original, result = box(page, "#image-original"), box(page, "#image-result")
    assert original["x"] + original["width"] <= result["x"] and abs(original["y"] - result["y"]) < 2
    assert page.get_attribute("link[rel=icon]", "href") == "favicon.svg"
    icon = page.request.get("/favicon.svg")
    assert icon.ok and icon.headers["content-type"] == "image/svg+xml" and b"<svg" in icon.body()


def test_the_phone_layout_stacks_at_390_px_with_44_px_targets(open_page, tmp_path):
    page = open_page(PHONE, is_mobile=True, has_touch=True)
    (tmp_path / "phone.png").write_bytes(encode(scene(300, 400)))
    run_image(page, tmp_path / "phone.png")
    draw_zone(page, "image", AROUND_SQUARE)  # by touch-sized clicks; its list row is touch-sized too
    original, result = box(page, "#image-original"), box(page, "#image-result")
    assert result["y"] >= original["y"] + original["height"]  # one above the other
    assert original["width"] >= 330 and result["width"] >= 330  # each nearly the screen's width, not 171 px
    settings, tabs = box(page, "#settings"), box(page, "[role=tablist]")
    assert settings["y"] + settings["height"] <= tabs["y"]
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scroll
    assert small_targets(page) == []
    page.click("#tab-video")
    page.click("#tab-webcam")
    assert small_targets(page) == []
    page.click("#tab-image")
    page.locator("#image-result").scroll_into_view_if_needed()
    save_doc(page, "web-phone.png", full_page=True)


def axe_violations(page) -> list[dict]:
    """axe-core's violations on the page as it is now (axe.min.js from the axe-playwright-python package)."""
    try:
        script = (resources.files("axe_playwright_python") / "axe.min.js").read_text(encoding="utf-8")
    except ModuleNotFoundError:
        _skip_or_fail("axe-playwright-python is not installed (pip install -e '.[browser]')", module=False)
    if not page.evaluate("() => Boolean(window.axe)"):
        page.evaluate(script)  # through the DevTools protocol: the page's CSP, which forbids inline scripts, stays on
    result = page.evaluate("() => axe.run(document, { resultTypes: ['violations'] })")
    return [{"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
            for v in result["violations"]]


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_accessibility_pass_finds_no_serious_violation(open_page, viewport, tmp_path):
    page = open_page(viewport)
    (tmp_path / "a11y.png").write_bytes(encode(scene(120, 160)))
    run_image(page, tmp_path / "a11y.png")
    draw_zone(page, "image", AROUND_SQUARE)
    page.click("#image-draw-zone")  # drawing a second one: its Finish, Cancel and help are shown
    click_at(page, "#image-overlay", [(0.7, 0.7)])
    page.click("#class-search")  # the class list open
    found = {"image with a result and zones": axe_violations(page)}
    page.keyboard.press("Escape")
    page.click("#tab-video")
    page.set_input_files("#video-file", str(make_clip(tmp_path / "a11y.mp4", frames=4, width=96, height=64)))
    page.wait_for_function("() => !document.getElementById('run-video').disabled")
    page.click("#video-draw-line")
    click_at(page, "#video-overlay", [(0.5, 0.05), (0.5, 0.95)], double_last=True)
    found["video with a line"] = axe_violations(page)
    page.click("#tab-webcam")
    found["webcam"] = axe_violations(page)
    serious = {where: [v for v in violations if v["impact"] in ("serious", "critical")]
               for where, violations in found.items()}
    assert serious == {where: [] for where in found}, serious
    assert found == {where: [] for where in found}, found  # nor any minor one
    page.evaluate("() => document.querySelector('main').append(document.createElement('input'))")  # and it does see a problem
    assert [v["id"] for v in axe_violations(page)] == ["label"]
    assert page.get_attribute("#image-overlay", "aria-label") == "drawing area over the image"
    assert page.get_attribute("#video-region-list button", "aria-label") == "Flip which side of line-1 is in"
    names = page.evaluate("""() => ["image-file", "video-file", "run-image", "run-video"].map((id) => {
        const element = document.getElementById(id);
        return element.labels && element.labels.length ? element.labels[0].textContent.trim() : element.textContent;
    })""")
    assert names == ["choose an image file", "choose a video file", "Run on image", "Run on video"]
    live = page.evaluate("""() => ["image-status", "progress-text", "webcam-status", "image-error"]
        .map((id) => document.getElementById(id).getAttribute("role"))""")
    assert live == ["status", "status", "status", "alert"]
