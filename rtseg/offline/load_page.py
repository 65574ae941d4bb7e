"""The page under load: a real ``rtseg serve`` and many clients at once, valid and hostile, timed, with its memory.

- ``PageServer`` starts ``python -m rtseg serve`` on 127.0.0.1 (any free port) as a subprocess, waits for the URL
  it prints, keeps its log, and reads its memory from the kernel (``/proc/PID/status``: VmRSS now, VmHWM the peak).
  A watchdog samples the memory and kills the server past a hard cap, so that a run against a server without
  budgets (an old checkout) fails instead of taking the machine down.
- The hostile payloads, made on the spot from a few bytes: ``png_bomb`` (a 1-bit PNG of zeros: 8000x8000 is
  about 8 KB and decodes to 192 MB of RGB), ``video_bomb`` (PNG frames in a MOV), a slow body (headers and ten
  bytes, then nothing), an idle webcam socket.
- ``run_load``: clients in parallel, each drawing its next request from a mix of the kinds above and valid ones
  (image uploads of a real frame, ``/api/info``, the objects of a result, webcam frames); reports p50/p95 latency
  per kind, the unexpected answers, and the server's peak memory. Progress is printed every few seconds.

Offline tools do not import ``rtseg.web``: everything here speaks HTTP and WebSocket to the server, as a browser
does.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import av
import cv2
import numpy as np
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from rtseg.offline.benchmark import percentile

SAMPLE_CLIP = Path(__file__).resolve().parents[2] / "samples" / "car.mp4"
START_TIMEOUT = 180.0  # seconds for the server to load its model and print its URL
WATCH_INTERVAL = 0.05  # seconds between two memory samples of the watchdog
REPLY_TIMEOUT = 120.0  # seconds a client waits for an answer before it counts as an error


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of process ``pid`` in MiB: resident memory now, and its peak since the process started."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


class PageServer:
    """``rtseg serve --port 0 FLAGS`` in a subprocess on 127.0.0.1, with its log and its memory watched.

    ``memory_cap_mb``: the watchdog kills the server when its resident memory passes this (``killed`` says so).
    """

    def __init__(self, flags: Sequence[str], memory_cap_mb: float) -> None:
        self.flags = list(flags)
        self.memory_cap_mb = memory_cap_mb
        self.log: list[str] = []  # the server's stderr, line by line
        self.killed: str | None = None  # why the watchdog killed it
        self.peak_sampled_mb = 0.0
        self.url = ""
        self._process: subprocess.Popen[str] | None = None
        self._stop = threading.Event()

    @property
    def process(self) -> subprocess.Popen[str]:
        assert self._process is not None, "the server was not started"
        return self._process

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 80

    def start(self) -> PageServer:
        command = [sys.executable, "-m", "rtseg", "serve", "--port", "0", *self.flags]
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        threading.Thread(target=self._drain, name="page-server-log", daemon=True).start()
        line = _read_line(self.process, START_TIMEOUT)
        found = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
        if found is None:
            self.stop()
            raise RuntimeError(f"rtseg serve did not start: {line!r} {' '.join(self.log[-5:])}")
        self.url = found[1]
        threading.Thread(target=self._watch, name="page-server-watchdog", daemon=True).start()
        return self

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def memory_mb(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) of the server in MiB."""
        return memory_mb(self.process.pid)

    def stop(self) -> int | None:
        """SIGINT (as Ctrl-C), then SIGKILL if it does not end within 30 s; returns its exit status."""
        self._stop.set()
        if self.alive():
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self._process.returncode if self._process is not None else None

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line.rstrip("\n"))

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_INTERVAL) and self.alive():
            try:
                rss, _ = self.memory_mb()
            except (FileNotFoundError, KeyError, ProcessLookupError):
                return
            self.peak_sampled_mb = max(self.peak_sampled_mb, rss)
            if rss > self.memory_cap_mb:
                self.killed = f"resident memory {rss:.0f} MiB passed the watchdog's cap of {self.memory_cap_mb:.0f}"
                self.process.kill()
                return


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The first line the process prints, or '' when it prints none within ``timeout`` (or exits)."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline() if process.stdout else ""),
                              daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0] if lines else ""


# -- payloads -------------------------------------------------------------------------------------------------

def png_bomb(width: int, height: int) -> bytes:
    """A 1-bit greyscale PNG of zeros, written row by row: a few kilobytes that decode to width x height pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = bytes(1 + (width + 7) // 8)  # the filter byte, then the row's bits
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, greyscale, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def video_bomb(path: Path, width: int, height: int, frames: int) -> Path:
    """A MOV of ``frames`` black greyscale PNG frames: a few hundred KB that decode to frames of width x height."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("png", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "gray"
        black = av.VideoFrame.from_ndarray(np.zeros((height, width), np.uint8), format="gray")
        for _ in range(frames):
            for packet in stream.encode(black):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def sample_frame(index: int = 30) -> np.ndarray:
    """A real picture (RGB): frame ``index`` of the shipped sample clip, a car park seen from above."""
    with av.open(str(SAMPLE_CLIP)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                return np.asarray(frame.to_ndarray(format="rgb24"))
    raise ValueError(f"{SAMPLE_CLIP} has fewer than {index + 1} frames")


def jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
        raise RuntimeError("JPEG encoding failed")
    return bytes(data.tobytes())


# -- clients --------------------------------------------------------------------------------------------------

@dataclass
class Answer:
    status: int
    body: bytes
    seconds: float

    def json(self) -> dict[str, object]:
        value = json.loads(self.body)
        assert isinstance(value, dict)
        return value


def request(url: str, method: str, path: str, body: bytes | None = None, timeout: float = REPLY_TIMEOUT) -> Answer:
    """One HTTP request on a new connection, timed from connecting to the last byte of the answer."""
    parts = urlsplit(url)
    started = time.perf_counter()
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    return Answer(response.status, data, time.perf_counter() - started)


def slow_body(url: str, path: str = "/api/images?name=slow.png", declared: int = 100_000) -> socket.socket:
    """A connection that sends a request's headers (``declared`` bytes of body to come) and ten bytes, then nothing.

    The caller reads the server's answer from the returned socket (or closes it)."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=REPLY_TIMEOUT)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Length: {declared}\r\n\r\n".encode()
                 + b"0123456789")
    return sock


def status_line(sock: socket.socket, timeout: float) -> str:
    """The first line of what the server sends on ``sock`` within ``timeout`` ('' if it sends nothing or closes)."""
    sock.settimeout(timeout)
    received = b""
    try:
        while b"\r\n" not in received:
            piece = sock.recv(4096)
            if not piece:
                break
            received += piece
    except (TimeoutError, OSError):
        pass
    return received.split(b"\r\n", 1)[0].decode("latin-1")


def live_url(url: str) -> str:
    return url.replace("http://", "ws://", 1) + "/api/live"


def frame_message(seq: int, data: bytes) -> bytes:
    """A webcam message as the page sends it: a 4-byte big-endian sequence number, then the picture's bytes."""
    return seq.to_bytes(4, "big") + data


# -- the load run ---------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    kind: str
    ok: bool  # the answer this kind should get (busy 503s count as ok for uploads: they are the queue's answer)
    seconds: float
    detail: str = ""


@dataclass
class LoadReport:
    outcomes: list[Outcome]
    baseline_mb: float
    peak_mb: float  # VmHWM at the end: the server's peak resident memory
    seconds: float
    clients: int
    killed: str | None = None
    unexpected: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        for kind in sorted({o.kind for o in self.outcomes}):
            mine = [o for o in self.outcomes if o.kind == kind]
            times = [o.seconds for o in mine]
            rows.append({"kind": kind, "count": len(mine), "errors": sum(not o.ok for o in mine),
                         "p50_ms": round(1000 * percentile(times, 50), 1),
                         "p95_ms": round(1000 * percentile(times, 95), 1)})
        return rows

    def lines(self) -> list[str]:
        out = [f"{self.clients} clients for {self.seconds:.0f} s; server memory: baseline {self.baseline_mb:.0f} MiB, "
               f"peak (VmHWM) {self.peak_mb:.0f} MiB (+{self.peak_mb - self.baseline_mb:.0f})",
               f"{'kind':<10} {'count':>6} {'errors':>6} {'p50 ms':>9} {'p95 ms':>9}"]
        out += [f"{r['kind']:<10} {r['count']:>6} {r['errors']:>6} {r['p50_ms']:>9} {r['p95_ms']:>9}"
                for r in self.rows()]
        if self.killed:
            out.append(f"the watchdog killed the server: {self.killed}")
        out += [f"unexpected: {line}" for line in self.unexpected[:20]]
        return out


class Client:
    """One simulated user: draws a request kind from the mix and records what came back."""

    def __init__(self, server: PageServer, photo: bytes, bomb: bytes, idle_timeout: float, seed: int) -> None:
        self.server = server
        self.photo = photo
        self.bomb = bomb
        self.idle_timeout = idle_timeout
        self.random = random.Random(seed)
        self.result_id: str | None = None
        self.kinds: dict[str, Callable[[], tuple[bool, str]]] = {
            "info": self.info, "image": self.image, "objects": self.objects, "webcam": self.webcam,
            "bomb": self.upload_bomb, "webcam-bomb": self.webcam_bomb, "slow-body": self.slow, "idle-ws": self.idle,
        }

    def info(self) -> tuple[bool, str]:
        answer = request(self.server.url, "GET", "/api/info")
        return answer.status == 200, str(answer.status)

    def image(self) -> tuple[bool, str]:
        answer = request(self.server.url, "POST", "/api/images?name=car.jpg&max_side=1024", self.photo)
        if answer.status == 200:
            self.result_id = str(answer.json()["id"])
        return answer.status in (200, 503), str(answer.status)

    def objects(self) -> tuple[bool, str]:
        if self.result_id is None:
            return self.image()
        answer = request(self.server.url, "GET", f"/api/images/{self.result_id}/objects?score=0.05")
        return answer.status in (200, 404), str(answer.status)  # 404: dropped from the store by newer results

    def upload_bomb(self) -> tuple[bool, str]:
        answer = request(self.server.url, "POST", "/api/images?name=bomb.png&max_side=1024", self.bomb)
        return answer.status in (413, 503), str(answer.status)  # 503: every slot taken, before the bomb is read

    def webcam(self) -> tuple[bool, str]:
        try:
            with connect(live_url(self.server.url), open_timeout=REPLY_TIMEOUT, max_size=2 ** 24) as socket_:
                for seq in (1, 2, 3):
                    socket_.send(frame_message(seq, self.photo))
                    facts = json.loads(socket_.recv(timeout=REPLY_TIMEOUT))
                    if "error" in facts:
                        return "busy" in str(facts["error"]), str(facts["error"])[:60]
                    socket_.recv(timeout=REPLY_TIMEOUT)  # the annotated JPEG
        except ConnectionClosed as closed:
            return _busy(closed)
        return True, "3 frames"

    def webcam_bomb(self) -> tuple[bool, str]:
        try:
            with connect(live_url(self.server.url), open_timeout=REPLY_TIMEOUT, max_size=2 ** 24) as socket_:
                socket_.send(frame_message(1, self.bomb))
                facts = json.loads(socket_.recv(timeout=REPLY_TIMEOUT))
        except ConnectionClosed as closed:
            return _busy(closed)
        error = str(facts.get("error", ""))
        return "megapixels" in error, error[:60]

    def slow(self) -> tuple[bool, str]:
        with slow_body(self.server.url) as sock:
            line = status_line(sock, self.idle_timeout + REPLY_TIMEOUT)
        return " 408 " in line or " 503 " in line, line

    def idle(self) -> tuple[bool, str]:
        with connect(live_url(self.server.url), open_timeout=REPLY_TIMEOUT) as socket_:
            try:
                message = socket_.recv(timeout=self.idle_timeout + REPLY_TIMEOUT)
                return "busy" in str(message), str(message)[:60]
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd is not None else None
                return code == 1001, f"closed {code}"

    def run_one(self, kind: str) -> Outcome:
        started = time.perf_counter()
        try:
            ok, detail = self.kinds[kind]()
        except (OSError, ConnectionClosed, TimeoutError, ValueError, http.client.HTTPException) as exc:
            ok, detail = False, f"{exc.__class__.__name__}: {exc}"
        return Outcome(kind, ok, time.perf_counter() - started, detail)


def _busy(closed: ConnectionClosed) -> tuple[bool, str]:
    """A webcam socket the server closed: right only as the busy answer (1013, every slot taken)."""
    code = closed.rcvd.code if closed.rcvd is not None else None
    return code == 1013, f"closed {code}"


# How often each kind is drawn: mostly what the page's users do, a quarter hostile.
MIX = {"info": 30, "image": 20, "objects": 15, "webcam": 10, "bomb": 8, "webcam-bomb": 7, "slow-body": 5,
       "idle-ws": 5}


def run_load(server: PageServer, clients: int, seconds: float, idle_timeout: float,
             say: Callable[[str], None] = print) -> LoadReport:
    """``clients`` threads drawing from ``MIX`` for ``seconds`` against ``server``; a line of progress every 5 s."""
    photo = jpeg(sample_frame())
    bomb = png_bomb(8000, 8000)
    request(server.url, "POST", "/api/images?name=warm.jpg", photo)  # the model's first call allocates for good
    baseline, _ = server.memory_mb()
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    kinds, weights = list(MIX), list(MIX.values())

    def work(seed: int) -> None:
        client = Client(server, photo, bomb, idle_timeout, seed)
        while time.monotonic() < deadline and server.alive():
            outcome = client.run_one(client.random.choices(kinds, weights)[0])
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=work, args=(seed,), daemon=True) for seed in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    next_line = started + 5.0
    while any(t.is_alive() for t in threads):
        time.sleep(0.1)
        if time.monotonic() >= next_line and server.alive():
            next_line += 5.0
            rss, hwm = server.memory_mb()
            say(f"[{time.monotonic() - started:5.0f} s] {len(outcomes)} requests, server RSS {rss:.0f} MiB, "
                f"peak {hwm:.0f} MiB")
    _, peak = server.memory_mb() if server.alive() else (0.0, server.peak_sampled_mb)
    unexpected = [f"{o.kind}: {o.detail}" for o in outcomes if not o.ok]
    return LoadReport(outcomes, baseline, peak, time.monotonic() - started, clients, server.killed, unexpected)


def summary_json(report: LoadReport) -> str:
    return json.dumps({"clients": report.clients, "seconds": round(report.seconds, 1),
                       "baseline_mb": round(report.baseline_mb), "peak_mb": round(report.peak_mb),
                       "killed": report.killed, "kinds": report.rows(), "unexpected": report.unexpected[:50]},
                      indent=2)
