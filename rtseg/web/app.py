"""The FastAPI app: the page, image and video endpoints, the webcam socket, over one shared model.

``create_app(detector, settings)`` builds it; ``rtseg serve`` passes the real
Mask R-CNN, tests a stub. Endpoints (all under the private workspace, ids are
random 32-hex-digit names, never paths):

- ``POST /api/regions``: body = JSON ``{"zones": [...], "lines": [...]}`` (fractions of the frame) → ``{"id"}``,
  or a 400 with one line for bad geometry (see ``rtseg.web.scenes``); the other endpoints take that id.
- ``POST /api/images?name=&max_side=``: body = the image file → ``{"id", "width", "height", "objects", "stem"}``;
  ``GET /api/images/{id}/objects|annotated.png|detections.json|cutouts.zip?score=&classes=&regions=``
  filter what the model found without running it again; with ``regions`` (zones only) ``objects`` also
  answers each zone's occupancy (``scene``) and ``annotated.png`` draws the zones.
- ``POST /api/videos?name=&score=&classes=&regions=``: body = the video → ``{"id", "frames_total", "stem"}`` (202);
  ``GET /api/videos/{id}`` status (with ``ahead``: jobs before it in the queue; with regions the live ``scene``
  and the recent ``events``), ``POST /api/videos/{id}/cancel`` (a queued job is cancelled at once and frees
  its place), ``GET /api/videos/{id}/annotated.mp4|detections.jsonl|heatmap.png|events.jsonl`` (events: with regions).
- ``WS /api/live``: the webcam (see ``rtseg.web.live``). ``GET /api/info``: classes and defaults.

``stem`` is the upload's name made safe; every download is named after it (``street-annotated.png``).

Budgets, so that no client can exhaust the server (``WebSettings`` holds the numbers):

- pixels: an image's or a video's frame size is read from its header and over ``pipeline.max_pixels`` is refused
  (413) before anything is decoded; the model sees images shrunk to at most ``side_limit`` on the longer side,
  webcam frames to ``max_side``, and videos only with frames of at most ``side_limit`` squared pixels (413 before
  the job is queued; the pipeline checks every frame against the same number);
- memory per result: masks kept as run-length encodings; a request that draws or exports masks unpacks its
  chosen ones while no other request holds unpacked masks (``WebServer.unpacking``);
- time: a body that stalls ``idle_timeout`` seconds or takes ``upload_timeout`` in all is dropped (408); an
  admission slot is taken only once the body has arrived; bodies arriving at once are bounded too
  (``RECEIVING_PER_SLOT``); decoding, the model and drawing run on worker threads, so ``/api/info`` (answered on
  the event loop) is never behind them.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import shutil
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import anyio
from fastapi import FastAPI, HTTPException, Query, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from rtseg.core.config import Config
from rtseg.core.errors import SourceError, UsageError
from rtseg.core.events import SceneState
from rtseg.core.pixels import OverBudget
from rtseg.core.structures import Frame
from rtseg.detect.base import Detector
from rtseg.detect.maskrcnn import class_ids_for
from rtseg.detect.models import real_classes
from rtseg.sinks.data import frame_record
from rtseg.sources.factory import open_source
from rtseg.web.images import (
    Decoder,
    ImageResult,
    ImageStore,
    UnreadableImage,
    annotated_png,
    cutouts_zip,
)
from rtseg.web.live import LiveSession, converse
from rtseg.web.scenes import (
    MAX_BODY,
    MAX_POINTS,
    MAX_REGIONS,
    STORE_SIZE,
    Regions,
    RegionsError,
    RegionStore,
    parse_regions,
    scene_dict,
    still_scene,
)
from rtseg.web.security import LOOPBACK_NAMES, HostCheck
from rtseg.web.sharing import MIN_SCORE, Admission, SharedModel
from rtseg.web.videos import DONE, VideoJob, VideoWorker
from rtseg.web.workspace import (
    BodyTimeouts,
    Workspace,
    download_stem,
    is_id,
    new_id,
    receive_small,
    receive_upload,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

_STATIC = ("index.html", "app.js", "style.css", "favicon.svg")
_MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
                               "connect-src 'self'; frame-ancestors 'none'",
}
# Bodies received at once, per admission slot: uploads wait for no slot while they arrive, so this bounds the
# connections (and the disk) that slow clients can hold, for at most BodyTimeouts each.
RECEIVING_PER_SLOT = 4


@dataclass
class WebSettings:
    """What ``rtseg serve`` configures; ``config.model`` gives the page's default score threshold and classes."""

    config: Config = dataclasses.field(default_factory=Config)
    max_upload_bytes: int = 200 * 2 ** 20
    queue_size: int = 4  # image requests, video jobs and webcam sessions admitted at once
    keep_seconds: float = 1800.0  # results are deleted this long after their last use
    max_images: int = 16  # image results kept for re-filtering (least recently used dropped first)
    allowed_hosts: tuple[str, ...] = LOOPBACK_NAMES
    max_side: int = 1024  # the page's default cap on an image's longer side; webcam frames are shrunk to it
    side_limit: int = 2048  # the largest max_side a request may ask for; videos: at most side_limit² pixels a frame
    idle_timeout: float = 30.0  # seconds a body may stall, and a webcam socket stay silent, before it is dropped
    upload_timeout: float = 600.0  # seconds a whole request body may take

    @property
    def max_pixels(self) -> int:
        """The decoding budget: ``pipeline.max_pixels`` of the page's config (``rtseg serve --max-pixels``)."""
        return self.config.pipeline.max_pixels

    @property
    def video_pixels(self) -> int:
        """The most pixels a video's frame may have: the model sees a video's frames as they are."""
        return min(self.max_pixels, self.side_limit ** 2)

    @property
    def body_timeouts(self) -> BodyTimeouts:
        return BodyTimeouts(idle=self.idle_timeout, total=self.upload_timeout)


class WebServer:
    """Everything the routes share: the model, admission, the workspace, the image store and the video worker."""

    def __init__(self, detector: Detector, settings: WebSettings) -> None:
        self.settings = settings
        self.model = SharedModel(detector)
        self.admission = Admission(settings.queue_size)
        self.receiving = Admission(RECEIVING_PER_SLOT * settings.queue_size)
        self.decoder = Decoder(settings.max_pixels)
        self.unpacking = anyio.Lock()  # held while a request's masks are unpacked: one request's worth at a time
        self.images = ImageStore(settings.max_images, settings.keep_seconds)
        self.videos = VideoWorker(self.model, settings.keep_seconds)
        self.regions = RegionStore(STORE_SIZE, settings.keep_seconds)
        self.workspace: Workspace | None = None
        self._stop = threading.Event()
        self._janitor = threading.Thread(target=self._sweep, name="rtseg-web-janitor", daemon=True)

    @property
    def class_names(self) -> list[str]:
        return real_classes(list(self.model.class_names))

    def start(self) -> None:
        self.workspace = Workspace()
        self.videos.start()
        self._janitor.start()

    def close(self) -> None:
        self._stop.set()
        self.videos.close()
        if self._janitor.is_alive():
            self._janitor.join()
        if self.workspace is not None:
            self.workspace.close()

    def expire(self, now: float) -> None:
        self.images.expire(now)
        self.videos.expire(now)
        self.regions.expire(now)

    def _sweep(self) -> None:
        while not self._stop.wait(min(60.0, max(self.settings.keep_seconds / 4, 0.1))):
            self.expire(time.monotonic())

    def class_ids(self, classes: Any) -> list[int] | None:
        """Class ids for a comma-separated string or a list of names; None (every class) when empty."""
        names = classes.split(",") if isinstance(classes, str) else list(classes or [])
        names = [n.strip() for n in names if str(n).strip()]
        return class_ids_for(names, self.model.class_names) if names else None

    def find_regions(self, key: str | None) -> Regions | None:
        """The region set of an id from ``POST /api/regions``; None for none; an unknown id is a UsageError."""
        if not key:
            return None
        regions = self.regions.get(key) if is_id(key) else None
        if regions is None:
            raise UsageError("the zones and lines have expired on the server: draw or change one to send them again")
        return regions

    def busy(self) -> HTTPException:
        return HTTPException(503, f"the server is busy ({self.admission.capacity} jobs already use or wait for "
                                  "the model); try again in a moment")

    @asynccontextmanager
    async def receiving_body(self) -> AsyncIterator[None]:
        """A place among the bodies arriving at once (503 when they are all taken), for as long as one arrives."""
        if not self.receiving.try_enter():
            raise HTTPException(503, f"the server is busy ({self.receiving.capacity} uploads are arriving); try "
                                     "again in a moment")
        try:
            yield
        finally:
            self.receiving.leave()

    def run_image(self, data: bytes, label: str, name: str | None, max_side: int) -> ImageResult:
        """Decode (within the budget, shrunk to ``max_side``), detect and keep as RLE; on a worker thread."""
        image = self.decoder.decode(data, max_side, label)
        return self.model.detect_then([image], lambda found: ImageResult(name, image, found[0]))


def create_app(detector: Detector, settings: WebSettings | None = None) -> FastAPI:
    server = WebServer(detector, settings or WebSettings())
    defaults = server.settings.config.model

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        server.start()
        try:
            yield
        finally:
            server.close()

    app = FastAPI(title="rtseg", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = server
    app.add_middleware(HostCheck, allowed_hosts=server.settings.allowed_hosts)

    @app.middleware("http")
    async def safety_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for key, value in _HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    @app.exception_handler(RequestValidationError)
    async def one_line_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "query")
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid')}"}, status_code=400)

    def workspace() -> Workspace:
        assert server.workspace is not None, "the app is used without its lifespan"
        return server.workspace

    def class_ids(classes: Any) -> list[int] | None:
        try:
            return server.class_ids(classes)
        except UsageError as exc:
            raise HTTPException(400, str(exc)) from exc

    def find_regions(key: str) -> Regions | None:
        try:
            return server.find_regions(key)
        except UsageError as exc:
            raise HTTPException(404, str(exc)) from exc

    # -- the page ---------------------------------------------------------------------------------

    def static(name: str) -> Response:
        body = (resources.files("rtseg.web") / "static" / name).read_bytes()
        return Response(body, media_type=_MEDIA_TYPES[Path(name).suffix])

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return static("index.html")

    @app.get("/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        if name not in _STATIC:  # a fixed list: nothing else is served, and no directory is ever listed
            raise HTTPException(404, "not found")
        return static(name)

    @app.get("/api/info")
    async def info() -> dict[str, Any]:  # on the event loop: it never waits for a worker thread
        settings = server.settings
        return {"classes": server.class_names, "score_threshold": defaults.score_threshold,
                "min_score": min(MIN_SCORE, defaults.score_threshold), "default_classes": list(defaults.classes),
                "max_side": settings.max_side, "max_side_limit": settings.side_limit,
                "max_pixels": settings.max_pixels, "max_upload_bytes": settings.max_upload_bytes,
                "max_regions": MAX_REGIONS, "max_points": MAX_POINTS}

    # -- zones and lines --------------------------------------------------------------------------

    @app.post("/api/regions")
    async def post_regions(request: Request) -> dict[str, Any]:
        async with server.receiving_body():
            body = await receive_small(request, MAX_BODY, "the zones and lines", server.settings.body_timeouts)
        try:
            regions = parse_regions(body, server.model.class_names)
        except RegionsError as exc:
            raise HTTPException(400, str(exc)) from exc
        return {"id": server.regions.add(regions), "zones": len(regions.zones), "lines": len(regions.lines)}

    # -- images -----------------------------------------------------------------------------------

    async def receive_file(request: Request, directory: Path) -> Path:
        """The body written to ``directory/upload`` within the size and time limits, holding no admission slot."""
        async with server.receiving_body():
            await receive_upload(request, directory / "upload", server.settings.max_upload_bytes,
                                 server.settings.body_timeouts)
        return directory / "upload"

    @app.post("/api/images")
    async def upload_image(request: Request, name: str | None = Query(None, max_length=255),
                           max_side: int | None = Query(None, ge=32)) -> dict[str, Any]:
        side = server.settings.max_side if max_side is None else max_side
        if side > server.settings.side_limit:
            raise HTTPException(400, f"max_side: at most {server.settings.side_limit} on this server "
                                     "(rtseg serve --max-side)")
        scratch = workspace().new_directory()
        try:
            data = await run_in_threadpool((await receive_file(request, scratch)).read_bytes)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if not server.admission.try_enter():
            raise server.busy()
        try:
            result = await run_in_threadpool(server.run_image, data, name or "the file", _base_name(name), side)
        except UnreadableImage as exc:
            raise HTTPException(400, str(exc)) from exc
        except OverBudget as exc:
            raise HTTPException(413, str(exc)) from exc
        finally:
            server.admission.leave()
        result_id = new_id()
        server.images.add(result_id, result)
        height, width = result.image.shape[:2]
        return {"id": result_id, "width": width, "height": height, "objects": len(result.objects(0.0, None)),
                "stem": download_stem(name, "image")}

    def image_result(result_id: str) -> ImageResult:
        result = server.images.get(result_id) if is_id(result_id) else None
        if result is None:
            raise HTTPException(404, "this image result has expired: run the image again")
        return result

    async def with_masks(result: ImageResult, score: float, classes: str, work: Callable[[Frame], T]) -> T:
        """``work`` on the chosen detections with their masks unpacked, on a worker thread, while no other request
        holds unpacked masks; a RegionsError from it is a 400."""
        chosen = class_ids(classes)
        async with server.unpacking:
            try:
                return await run_in_threadpool(lambda: work(result.frame(score, chosen)))
            except RegionsError as exc:
                raise HTTPException(400, str(exc)) from exc

    def image_scene(frame: Frame, chosen: Regions | None) -> SceneState | None:
        """Each zone's occupancy in the filtered result (lines are refused before the frame is used)."""
        if chosen is None:
            return None
        assert frame.detections is not None
        return still_scene(chosen, server.settings.config.analytics, frame.detections, frame.height, frame.width)

    def attachment(filename: str, kind: str = "attachment") -> dict[str, str]:
        return {"Content-Disposition": f'{kind}; filename="{filename}"'}

    score_query = Query(defaults.score_threshold, ge=0.0, le=1.0)

    @app.get("/api/images/{result_id}/objects")
    async def image_objects(result_id: str, score: float = score_query, classes: str = "",
                            regions: str = "") -> dict[str, Any]:
        result, chosen = image_result(result_id), find_regions(regions)
        rows = result.objects(score, class_ids(classes))  # from the stored boxes and areas: no mask is unpacked
        if chosen is None:
            return {"objects": rows, "scene": None}
        scene = await with_masks(result, score, classes, lambda frame: image_scene(frame, chosen))
        return {"objects": rows, "scene": None if scene is None else scene_dict(scene)}

    @app.get("/api/images/{result_id}/annotated.png")
    async def image_annotated(result_id: str, score: float = score_query, classes: str = "",
                              regions: str = "") -> Response:
        result, chosen = image_result(result_id), find_regions(regions)
        render = server.settings.config.render
        png = await with_masks(result, score, classes,
                               lambda frame: annotated_png(frame, render, image_scene(frame, chosen)))
        # inline: the page shows it; the name is what "Save image as" and the download link use
        return Response(png, media_type="image/png",
                        headers=attachment(f"{download_stem(result.name, 'image')}-annotated.png", "inline"))

    @app.get("/api/images/{result_id}/detections.json")
    async def image_detections(result_id: str, score: float = score_query, classes: str = "") -> Response:
        result = image_result(result_id)
        record = await with_masks(result, score, classes, frame_record)
        return JSONResponse(record, headers=attachment(f"{download_stem(result.name, 'image')}-detections.json"))

    @app.get("/api/images/{result_id}/cutouts.zip")
    async def image_cutouts(result_id: str, score: float = score_query, classes: str = "") -> Response:
        result = image_result(result_id)
        body = await with_masks(result, score, classes, lambda frame: cutouts_zip(frame, workspace().new_directory()))
        return Response(body, media_type="application/zip",
                        headers=attachment(f"{download_stem(result.name, 'image')}-cutouts.zip"))

    # -- videos -----------------------------------------------------------------------------------

    @app.post("/api/videos", status_code=202)
    async def upload_video(request: Request, name: str | None = Query(None, max_length=255),
                           score: float = score_query, classes: str = "", regions: str = "") -> dict[str, Any]:
        wanted_classes = class_ids(classes)
        chosen = find_regions(regions)
        directory = workspace().new_directory()
        label = _base_name(name) or "the file"
        try:
            upload = await receive_file(request, directory)
            frames_total = await run_in_threadpool(_probe_video, upload, label, server.settings)
            if not server.admission.try_enter():
                raise server.busy()
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        config = dataclasses.replace(server.settings.config,
                                     model=dataclasses.replace(defaults, score_threshold=score),
                                     pipeline=dataclasses.replace(server.settings.config.pipeline,
                                                                  max_pixels=server.settings.video_pixels))
        if chosen is not None:
            config.analytics = chosen.analytics(config.analytics)
        job = VideoJob(directory, label, download_stem(name, "video"), config, wanted_classes, frames_total,
                       on_finish=server.admission.leave, regions=chosen)
        job_id = new_id()
        server.videos.submit(job_id, job)
        return {"id": job_id, "frames_total": frames_total, "stem": job.stem}

    def video_job(job_id: str) -> VideoJob:
        job = server.videos.jobs.get(job_id) if is_id(job_id) else None
        if job is None:
            raise HTTPException(404, "no such video job (it may have expired)")
        return job

    @app.get("/api/videos/{job_id}")
    async def video_status(job_id: str) -> dict[str, Any]:
        return server.videos.status(job_id, video_job(job_id))

    @app.post("/api/videos/{job_id}/cancel")
    async def video_cancel(job_id: str) -> dict[str, Any]:
        job = video_job(job_id)
        job.cancel()
        return server.videos.status(job_id, job)

    def finished_file(job_id: str, pick: Callable[[VideoJob], Path]) -> tuple[VideoJob, Path]:
        job = video_job(job_id)
        if job.state != DONE:
            raise HTTPException(409, f"the video job is {job.state}, not done")
        return job, pick(job)

    @app.get("/api/videos/{job_id}/annotated.mp4")
    def video_file(job_id: str) -> FileResponse:
        job, path = finished_file(job_id, lambda j: j.video)
        return FileResponse(path, media_type="video/mp4", filename=f"{job.stem}-annotated.mp4",
                            content_disposition_type="inline")

    @app.get("/api/videos/{job_id}/detections.jsonl")
    def video_records(job_id: str) -> FileResponse:
        job, path = finished_file(job_id, lambda j: j.records)
        return FileResponse(path, media_type="application/x-ndjson", filename=f"{job.stem}-detections.jsonl")

    @app.get("/api/videos/{job_id}/events.jsonl")
    def video_events(job_id: str) -> FileResponse:
        job, path = finished_file(job_id, lambda j: j.event_lines)
        if job.regions is None:
            raise HTTPException(404, "this video job had no zones or lines, so it has no events")
        return FileResponse(path, media_type="application/x-ndjson", filename=f"{job.stem}-events.jsonl")

    @app.get("/api/videos/{job_id}/heatmap.png")
    def video_heatmap(job_id: str) -> FileResponse:
        job, path = finished_file(job_id, lambda j: j.heatmap)
        return FileResponse(path, media_type="image/png", filename=f"{job.stem}-heatmap.png")

    # -- webcam -----------------------------------------------------------------------------------

    @app.websocket("/api/live")
    async def live(websocket: WebSocket) -> None:
        await websocket.accept()
        if not server.admission.try_enter():
            await websocket.send_json({"error": server.busy().detail})
            await websocket.close(code=1013)
            return
        try:
            session = LiveSession(server.model, server.settings.config, server.class_ids(defaults.classes),
                                  server.class_ids, server.find_regions, server.decoder, server.settings.max_side)
            await converse(websocket, session, server.settings.idle_timeout)
        except WebSocketDisconnect:
            pass
        finally:
            server.admission.leave()

    return app


def _base_name(name: str | None) -> str | None:
    """The last part of a user's file name, for labels and records only (never a path on disk)."""
    if not name:
        return None
    return re.split(r"[\\/]", name)[-1][:255] or None


def _probe_video(path: Path, label: str, settings: WebSettings) -> int | None:
    """The upload's frame count (None when the container does not say); a file that is no video is a 400, one whose
    frames are over the page's budget a 413, both before any frame is decoded."""
    try:
        source = open_source(str(path), max_pixels=settings.video_pixels)
    except OverBudget as exc:
        limit = ("" if settings.video_pixels == settings.max_pixels else
                 f" (this server runs videos of at most {settings.side_limit}x{settings.side_limit} pixels a frame: "
                 "rtseg serve --max-side)")
        raise HTTPException(413, str(exc).replace(str(path), label) + limit) from exc
    except SourceError as exc:
        raise HTTPException(400, str(exc).replace(str(path), label)) from exc
    try:
        return source.info.frame_count
    finally:
        source.close()
