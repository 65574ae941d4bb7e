"""The browser's webcam, live: JPEG frames in over a WebSocket, annotated JPEG frames back, newest first.

Messages from the page: binary = a 4-byte big-endian sequence number and a
JPEG frame; text = JSON settings ``{"score": 0.5, "classes": ["person"]}``.
Answers: a JSON text ``{"seq", "objects", "dropped", ...}`` then the annotated
JPEG as binary. The server keeps only the newest frame that arrived while the
model was busy: older ones are dropped (and counted), never queued, so the
delay stays one model call however slow the model is.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Collection
from typing import Any

import anyio
import cv2
import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocket, WebSocketDisconnect

from rtseg.core.config import RenderConfig
from rtseg.core.errors import UsageError
from rtseg.render.renderer import Renderer
from rtseg.web.sharing import FilteredDetector, SharedModel

log = logging.getLogger(__name__)

JPEG_QUALITY = 80


class LiveSession:
    """One webcam connection: its current settings, and the work done on each frame."""

    def __init__(self, model: SharedModel, render: RenderConfig, min_score: float,
                 class_ids: Collection[int] | None, parse_classes: Callable[[Any], Collection[int] | None]) -> None:
        self.detector = FilteredDetector(model, min_score, class_ids)
        self.renderer = Renderer(render, tracked=False)
        self.parse_classes = parse_classes
        self.dropped = 0

    def apply_settings(self, text: str) -> str | None:
        """Take new settings from the page; returns the problem with them, if any."""
        try:
            settings = json.loads(text)
            score = float(settings.get("score", self.detector.min_score))
            if not 0.0 <= score <= 1.0:
                raise ValueError(f"score {score} is not between 0 and 1")
            class_ids = self.parse_classes(settings.get("classes", []))
        except (ValueError, TypeError, AttributeError, UsageError) as exc:
            return f"bad settings: {exc}"
        self.detector.min_score, self.detector.class_ids = score, class_ids
        return None

    def answer(self, message: bytes) -> tuple[dict[str, Any], bytes | None]:
        """The reply to one frame message: facts about it, and the annotated JPEG (None when it did not decode)."""
        seq = int.from_bytes(message[:4], "big") if len(message) >= 4 else -1
        image = cv2.imdecode(np.frombuffer(message[4:], np.uint8), cv2.IMREAD_COLOR) if len(message) > 4 else None
        if image is None:
            return {"seq": seq, "error": "a webcam frame did not decode as JPEG"}, None
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        try:
            detections = self.detector.detect([rgb])[0]
        except Exception as exc:  # the page shows it; the server and the socket go on
            log.exception("webcam frame failed")
            return {"seq": seq, "error": f"the model failed: {exc.__class__.__name__}: {exc}"}, None
        drawn = cv2.cvtColor(self.renderer.draw(rgb, detections), cv2.COLOR_RGB2BGR)
        ok, jpeg = cv2.imencode(".jpg", drawn, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        facts = {"seq": seq, "objects": len(detections), "dropped": self.dropped,
                 "width": rgb.shape[1], "height": rgb.shape[0]}
        return facts, jpeg.tobytes() if ok else None


async def converse(websocket: WebSocket, session: LiveSession) -> None:
    """Receive frames and settings until the page goes; answer the newest frame whenever the model is free."""
    newest: list[bytes] = []  # at most one frame: the latest not yet answered
    arrived = asyncio.Event()

    async def receive() -> None:
        while True:
            message = await websocket.receive()
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
        while True:
            await arrived.wait()
            arrived.clear()
            frame = newest.pop()
            facts, jpeg = await run_in_threadpool(session.answer, frame)
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
