"""Small real HTTP servers on 127.0.0.1 for the tests: each records every request it receives.

`LoopbackServer` runs a stdlib ThreadingHTTPServer on a free port in a daemon thread and hands each
request to `respond(request)`, which returns (status, headers, body) or writes the answer itself.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Seen:
    method: str
    path: str
    query: dict
    headers: dict


@dataclass
class Answer:
    status: int = 200
    headers: dict = field(default_factory=dict)
    body: bytes = b""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _serve(self):
        server: LoopbackServer = self.server.owner  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        seen = Seen(self.command, parts.path, parse_qs(parts.query), {k.lower(): v for k, v in self.headers.items()})
        with server.lock:
            server.requests.append(seen)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        answer = server.respond(seen, self)
        if answer is None:  # the responder wrote to the socket itself
            return
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format, *args):  # quiet
        pass


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # the service hanging up at its deadline is expected here, not an error


class LoopbackServer(ABC):
    """A real HTTP server on 127.0.0.1; subclasses implement `respond`."""

    def __init__(self):
        self.requests: list[Seen] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._httpd = _QuietServer(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self  # type: ignore[attr-defined]
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True, name=f"loopback-{self.port}")

    def start(self) -> "LoopbackServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    @abstractmethod
    def respond(self, seen: Seen, handler: BaseHTTPRequestHandler) -> Answer | None:
        """The answer to one request; each kind of test server decides."""

    def seen(self, path_prefix: str = "") -> list[Seen]:
        with self.lock:
            return [s for s in self.requests if s.path.startswith(path_prefix)]

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class Recorder(LoopbackServer):
    """'Another host': answers every request with an empty searchset and records it, so a test can
    prove that nothing (least of all a token) was sent here."""

    def respond(self, seen, handler):
        return Answer(
            200,
            {"Content-Type": "application/fhir+json"},
            b'{"resourceType": "Bundle", "type": "searchset", "entry": []}',
        )
