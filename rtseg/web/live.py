"""The browser's webcam, live: JPEG frames in over a WebSocket, annotated JPEG frames back, newest first.

Messages from the page: binary = a 4-byte big-endian sequence number and a
JPEG frame; text = JSON settings ``{"score": 0.5, "classes": ["person"],
"regions": ID}`` (``regions``: an id from ``POST /api/regions``, or null).
Answers: a JSON text ``{"seq", "objects", "dropped", ...}`` then the annotated
JPEG as binary. The server keeps only the newest frame that arrived while the
model was busy: older ones are dropped (and counted), never queued, so the
delay stays one model call however slow the model is.

With regions the session tracks objects (its own ``Tracker``, as a video's
pipeline does) so that zones count entries and lines count crossings; each
answer then carries the zones' and lines' counts (``scene``) and the frame's
new events (``events``), and the picture shows the regions. Event times are
seconds since the regions were set.

Budgets: a frame's size is read from its JPEG header and one over the pixel
budget is answered with an error before it is decoded; frames are shrunk to
the page's default size (``max_side``) before the model; a socket on which
nothing arrives for ``idle_timeout`` seconds while no frame of it is waiting
or in work is closed (1001), so an idle client does not keep its admission
slot. Settings that are not JSON (nested 100,000 deep included) are answered
with an error message, and the socket goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Collection
from typing import Any

import anyio
import cv2
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocket, WebSocketDisconnect

from rtseg.analytics.scene import SceneAnalytics
from rtseg.core.config import Config
from rtseg.core.errors import UsageError
from rtseg.core.pixels import OverBudget
from rtseg.render.renderer import Renderer
from rtseg.render.scene import SceneAnnotator
from rtseg.track.tracker import Tracker, track_detections
from rtseg.web.images import Decoder, UnreadableImage
from rtseg.web.scenes import Regions, scene_dict, shown_events
from rtseg.web.sharing import FilteredDetector, SharedModel

log = logging.getLogger(__name__)

JPEG_QUALITY = 80


class LiveScene:
    """The webcam's analytics since its regions were set: a tracker, and the scene it feeds."""

    def __init__(self, regions: Regions, config: Config) -> None:
        self.tracker = Tracker(config.tracking)
        self.analytics: SceneAnalytics = regions.scene(config.analytics, stream="webcam", tracked=True)
        self.started = time.monotonic()
        self.frames = 0


class LiveSession:
    """One webcam connection: its current settings, and the work done on each frame."""

    def __init__(self, model: SharedModel, config: Config, class_ids: Collection[int] | None,
                 parse_classes: Callable[[Any], Collection[int] | None],
                 find_regions: Callable[[str | None], Regions | None], decoder: Decoder, max_side: int) -> None:
        self.config = config
        self.decoder = decoder
        self.max_side = max_side  # frames are shrunk to this longer side before the model
        self.detector = FilteredDetector(model, config.model.score_threshold, class_ids)
        self.renderer = Renderer(config.render, tracked=False)
        self.annotator = SceneAnnotator(config.render.line_width)
        self.parse_classes = parse_classes
        self.find_regions = find_regions
        self.regions_id: str | None = None
        self.scene: LiveScene | None = None
        self.dropped = 0

    def apply_settings(self, text: str) -> str | None:
        """Take new settings from the page; returns the problem with them, if any."""
        try:
            settings = json.loads(text)
            score = float(settings.get("score", self.detector.min_score))
            if not 0.0 <= score <= 1.0:
                raise ValueError(f"score {score} is not between 0 and 1")
            class_ids = self.parse_classes(settings.get("classes", []))
            regions_id = settings.get("regions") or None
            if regions_id is not None and not isinstance(regions_id, str):
                raise ValueError("regions must be an id from POST /api/regions")
            regions = self.find_regions(regions_id) if regions_id != self.regions_id else None
        except RecursionError:  # json.loads recurses once per level: thousands of nested brackets
            return "bad settings: the JSON is nested too deeply"
        except (ValueError, TypeError, AttributeError, UsageError) as exc:
            return f"bad settings: {exc}"
        self.detector.min_score, self.detector.class_ids = score, class_ids
        if regions_id != self.regions_id:  # new regions start counting afresh; the same ones keep their counts
            self.regions_id = regions_id
            self.scene = None if regions is None else LiveScene(regions, self.config)
        return None

    def answer(self, message: bytes) -> tuple[dict[str, Any], bytes | None]:
        """The reply to one frame message: facts about it, and the annotated JPEG (None when it did not decode)."""
        seq = int.from_bytes(message[:4], "big") if len(message) >= 4 else -1
        try:
            rgb = self.decoder.decode(message[4:], self.max_side, "the webcam frame")
        except OverBudget as exc:
            return {"seq": seq, "error": str(exc)}, None
        except UnreadableImage:
            return {"seq": seq, "error": "a webcam frame did not decode as JPEG"}, None
        facts: dict[str, Any] = {"seq": seq, "dropped": self.dropped, "width": rgb.shape[1], "height": rgb.shape[0]}
        scene = self.scene  # the settings may change it meanwhile: this frame keeps the one it started with
        try:
            detections = self.detector.detect([rgb])[0]
            if scene is not None:
                track_detections(scene.tracker, detections, rgb)
                events = scene.analytics.update(detections, time=time.monotonic() - scene.started,
                                                frame=scene.frames, wall_time=time.time(),
                                                height=rgb.shape[0], width=rgb.shape[1])
                scene.frames += 1
                facts.update(scene=scene_dict(scene.analytics.state), events=shown_events(events))
        except Exception as exc:  # the page shows it; the server and the socket go on
            log.exception("webcam frame failed")
            return {"seq": seq, "error": f"the model failed: {exc.__class__.__name__}: {exc}"}, None
        facts["objects"] = len(detections)
        drawn = self.renderer.draw(rgb, detections)
        if scene is not None:
            self.annotator.annotate(drawn, detections, scene.analytics.state)
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        return facts, jpeg.tobytes() if ok else None


async def converse(websocket: WebSocket, session: LiveSession, idle_timeout: float) -> None:
    """Receive frames and settings until the page goes; answer the newest frame whenever the model is free.

    The socket is closed as idle after ``idle_timeout`` seconds without a message while none of its frames waits
    or is in work (a page that waits for its answers is not idle).
    """
    newest: list[bytes] = []  # at most one frame: the latest not yet answered
    working = False  # a frame is in the model or being drawn
    arrived = asyncio.Event()

    async def receive() -> None:
        while True:
            message = None
            with anyio.move_on_after(idle_timeout):
                message = await websocket.receive()
            if message is None:
                if newest or working:
                    continue
                await websocket.close(code=1001, reason=f"no webcam frame for {idle_timeout:g} s: closed as idle")
                return
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                if newest:
                    session.dropped += 1
                newest[:] = [message["bytes"]]
                arrived.set()
            elif message.get("text") is not None:
                problem = session.apply_settings(message["text"])
                if problem is not None:
                    await websocket.send_json({"error": problem})

    async def reply() -> None:
        nonlocal working
        while True:
            await arrived.wait()
            arrived.clear()
            frame = newest.pop()
            working = True
            try:
                facts, jpeg = await run_in_threadpool(session.answer, frame)
            finally:
                working = False
            try:
                await websocket.send_json(facts)
                if jpeg is not None:
                    await websocket.send_bytes(jpeg)
            except WebSocketDisconnect:
                return  # the page went while the model worked; receive() sees the disconnect and ends

    async with anyio.create_task_group() as tasks:  # anyio's, so that the server's own cancellation reaches both
        tasks.start_soon(reply)
        await receive()
        tasks.cancel_scope.cancel()
