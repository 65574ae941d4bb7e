"""Debian's Mosquitto as a child process on 127.0.0.1, for the event benchmarks and tests (as ``rtsp.py`` is for
cameras): anonymous, with one user (a password file from ``mosquitto_passwd``), with TLS, or keeping sessions
across a SIGKILL; started, killed and restarted on the same port."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from rtseg.offline.rtsp import free_port

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto")


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or next((p for p in MOSQUITTO_PATHS if os.access(p, os.X_OK)), None)


def wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@dataclass(frozen=True)
class Certificates:
    ca: Path  # what a client trusts (SSL_CERT_FILE)
    cert: Path  # the server's, for 127.0.0.1, signed by ca
    key: Path


class Mosquitto:
    """A Mosquitto broker on 127.0.0.1:``port``, anonymous or with one user (a password file from mosquitto_passwd)."""

    def __init__(self, binary: str, workdir: Path, user: tuple[str, str] | None = None,
                 persistent: bool = False, tls: Certificates | None = None) -> None:
        self.binary = binary
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        lines = [f"listener {self.port} 127.0.0.1", "log_dest stderr",
                 f"user {getpass.getuser()}"]  # run as root, Mosquitto would switch to user mosquitto
        if tls is not None:
            lines += [f"cafile {tls.ca}", f"certfile {tls.cert}", f"keyfile {tls.key}"]
        self.tls = tls is not None
        if persistent:
            # Sessions saved every second: a subscriber's session outlives a SIGKILL of the broker, so messages
            # published right after a restart, before that subscriber is back, are kept for it (QoS 0 too).
            lines += ["persistence true", f"persistence_location {workdir}/", "autosave_interval 1",
                      "queue_qos0_messages true"]
        else:
            lines.append("persistence false")
        if user is None:
            lines.append("allow_anonymous true")
        else:
            passwords = workdir / "passwords"
            subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwords), *user], check=True, capture_output=True)
            passwords.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        self.config = workdir / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        self.log = (self.workdir / "mosquitto.log").open("ab")
        self.process = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=self.log, stderr=self.log)
        try:
            wait_listening(self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError((self.workdir / "mosquitto.log").read_text(errors="replace")) from None

    def kill(self) -> None:
        """SIGKILL: no goodbye to the clients, as when a broker's machine dies."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.process = None
            self.log.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            self.process = None
            self.log.close()

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"
