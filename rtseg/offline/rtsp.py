"""Simulated cameras for tests and soaks: a real RTSP server process on 127.0.0.1, and clips cut or looped for it.

The server is Debian's GStreamer RTSP server (``rtsp_server.py`` next to this module), which only Debian's
``/usr/bin/python3`` can run; ``.ci/run`` installs it.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

import av

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")  # run by path, never imported
PACKAGES = ("gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi python3-gst-1.0 gstreamer1.0-plugins-base "
            "gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav")


def rtsp_server_missing() -> str | None:
    """Why the simulated camera cannot run here, or None when it can."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found"
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    try:
        result = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "probing GStreamer's Python bindings timed out"
    return None if result.returncode == 0 else f"GStreamer RTSP server bindings missing (apt-get install {PACKAGES})"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]  # (host, port) for AF_INET
        return port


class RtspServer:
    """The simulated camera (``rtsp_server.py``) as a child process on 127.0.0.1: start, kill, freeze and resume it.

    Use as a context manager: the process is always ended (resumed first if frozen).
    """

    def __init__(self, clip: Path, port: int | None = None, mount: str = "/clip") -> None:
        self.clip = clip
        self.port = port or free_port()
        self.mount = mount
        self._process: subprocess.Popen[str] | None = None

    def url(self, credentials: str = "") -> str:
        return f"rtsp://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}{self.mount}"

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait, at most ``timeout`` seconds, until it listens."""
        process = subprocess.Popen(
            [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port), "--clip", str(self.clip), "--mount", self.mount],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._process = process
        assert process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([process.stdout], [], [], 0.2)
            if ready:
                line = process.stdout.readline()
                if line.strip() == "ready":
                    return
                if not line:  # stdout closed: the server exited
                    break
        self._process = None
        process.kill()
        _, errors = process.communicate(timeout=10)
        raise RuntimeError(f"RTSP server on port {self.port} did not become ready: "
                           f"{errors.strip() or f'not listening after {timeout:g} s'}")

    def kill(self) -> None:
        """End the server abruptly, like a crashed camera."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(10)
            self._process = None

    def freeze(self) -> None:
        """Stop the server process (SIGSTOP): connections stay open, nothing is sent, like a hung camera."""
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGCONT)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            os.kill(process.pid, signal.SIGCONT)
            process.terminate()
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        except ProcessLookupError:
            pass
        finally:
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()

    def __enter__(self) -> RtspServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cut_clip(source: Path, target: Path, seconds: float) -> int:
    """Copy the start of ``source`` (video only, no re-encoding) up to the first keyframe after ``seconds``.

    Cutting at a keyframe keeps every copied frame decodable. Returns the frame count.
    """
    with av.open(str(source)) as src, av.open(str(target), "w", format="mp4") as dst:
        stream = src.streams.video[0]
        time_base = stream.time_base
        assert time_base is not None  # every demuxed stream has one
        out = dst.add_stream_from_template(stream)
        for packet in src.demux(stream):
            if packet.dts is None:
                continue
            if packet.is_keyframe and packet.pts is not None and packet.pts * time_base >= seconds:
                break
            packet.stream = out
            dst.mux(packet)
    with av.open(str(target)) as check:
        return sum(1 for _ in check.decode(video=0))


def loop_clip(source: Path, target: Path, times: int) -> float:
    """``source`` repeated ``times`` times into one MP4 (video only, no re-encoding); returns its duration in seconds.

    A long file stands in for a camera that streams for minutes: the RTSP server
    plays each file once, and every copy starts with a keyframe.
    """
    with av.open(str(source)) as src:
        stream = src.streams.video[0]
        time_base = stream.time_base
        assert time_base is not None  # every demuxed stream has one
        packets: list[tuple[av.Packet[av.VideoStream], int, int]] = []  # (packet, pts, dts), timestamped ones
        for p in src.demux(stream):
            if p.dts is not None:
                assert p.pts is not None  # an MP4 packet with a dts has a pts
                packets.append((p, p.pts, p.dts))
        step = max(pts + (p.duration or 0) for p, pts, _ in packets) - min(pts for _, pts, _ in packets)
        with av.open(str(target), "w", format="mp4") as dst:
            out = dst.add_stream_from_template(stream)
            for copy in range(times):
                for packet, pts, dts in packets:
                    clone = av.Packet(bytes(packet))
                    clone.pts, clone.dts = pts + copy * step, dts + copy * step
                    clone.duration, clone.is_keyframe = packet.duration, packet.is_keyframe
                    clone.time_base, clone.stream = time_base, out
                    dst.mux(clone)
        return float(step * times * time_base)
