"""A slow-client attack on a loopback server, bounded in connections and time, and the buffering
proxy of deploy/nginx/ started in front of a server the tests run.

`SlowClients` opens connections that send a request header (or a body) a few bytes at a time and
never finish it, the way a Slowloris-style attacker does, from one thread; it only ever connects to
127.0.0.1 and stops by itself after `max_seconds`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from conftest import REPO

NGINX_CONF = REPO / "deploy" / "nginx" / "nginx.conf"
UPSTREAM = "server 127.0.0.1:8081;"
LISTEN = "listen 8080 "


def nginx_executable() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


class Nginx:
    """deploy/nginx/nginx.conf as shipped, with only its two addresses moved to test ports."""

    def __init__(self, prefix: Path, listen_port: int, upstream_port: int):
        self.prefix = prefix
        self.port = listen_port
        self.url = f"http://127.0.0.1:{listen_port}"
        text = NGINX_CONF.read_text()
        assert text.count(UPSTREAM) == 1 and text.count(LISTEN) == 1, "deploy/nginx/nginx.conf changed shape"
        text = text.replace(UPSTREAM, f"server 127.0.0.1:{upstream_port};")
        text = text.replace(LISTEN, f"listen 127.0.0.1:{listen_port} ")
        prefix.mkdir(parents=True, exist_ok=True)
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(text)
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Nginx":
        args = [nginx_executable(), "-e", "stderr", "-p", f"{self.prefix}/", "-c", str(self.conf)]
        if os.geteuid() == 0:  # as root nginx would switch its workers to `nobody`, who cannot write here
            args += ["-g", "user root;"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                assert self.proc.poll() is None, self.proc.communicate()[0]
                time.sleep(0.05)
        raise AssertionError("nginx did not start listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


class SlowClients:
    """`headers` connections that drip an endless request header and `bodies` that send a whole header
    announcing a large body, then drip it; one byte per connection every `interval` seconds."""

    def __init__(
        self,
        port: int,
        path: str,
        *,
        headers: int = 100,
        bodies: int = 100,
        interval: float = 1.0,
        max_seconds: float = 60.0,
    ):
        self.port = port
        self.path = path
        self.counts = (headers, bodies)
        self.interval = interval
        self.max_seconds = max_seconds
        self.sockets: list[tuple[socket.socket, str]] = []
        self.closed_after: list[float] = []  # seconds from connect to the server closing it
        self.opened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drip, daemon=True, name="slow-clients")

    def _open(self, kind: str) -> None:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        head = f"POST {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Type: application/json\r\n"
        if kind == "body":
            head += "Content-Length: 1000000\r\n\r\n{"
        s.sendall(head.encode())
        s.setblocking(False)
        self.sockets.append((s, kind))
        self.opened += 1

    def start(self) -> "SlowClients":
        for _ in range(self.counts[0]):
            self._open("header")
        for _ in range(self.counts[1]):
            self._open("body")
        self._started = time.monotonic()
        self._thread.start()
        return self

    def _drip(self) -> None:
        while not self._stop.is_set() and time.monotonic() - self._started < self.max_seconds:
            for s, kind in list(self.sockets):
                try:
                    if s.recv(4096, socket.MSG_PEEK) == b"":
                        raise ConnectionResetError
                except BlockingIOError:
                    pass
                except OSError:
                    self._closed(s, kind)
                    continue
                try:
                    s.send(b"X-Drip: a\r\n" if kind == "header" else b" ")
                except BlockingIOError:
                    pass
                except OSError:
                    self._closed(s, kind)
            self._stop.wait(self.interval)

    def _closed(self, s: socket.socket, kind: str) -> None:
        self.sockets.remove((s, kind))
        self.closed_after.append(time.monotonic() - self._started)
        s.close()

    def open_count(self, kind: str | None = None) -> int:
        return sum(1 for _, k in list(self.sockets) if kind is None or k == kind)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)
        for s, _ in self.sockets:
            s.close()
        self.sockets.clear()
