"""Real HTTP servers inside the test process: the service itself, and a FHIR front that refuses transactions.

`LiveServer` serves any WSGI application on 127.0.0.1 from a thread and records what each request
carried (method, path, Authorization header), so a test can inspect exactly what a client sent.
`TransactionRefusingFront` forwards every request to a real FHIR server except a transaction (a
POST on the base), which it answers the way servers without transaction support do.
"""

from __future__ import annotations

import io
import json
import threading
from dataclasses import dataclass

import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


@dataclass
class Seen:
    method: str
    path: str
    authorization: str | None
    body: bytes


class LiveServer:
    def __init__(self, wsgi_app, host: str = "127.0.0.1"):
        self.seen: list[Seen] = []
        self._app = wsgi_app
        self._server = make_server(host, 0, self._recording, threaded=True)
        self.url = f"http://{host}:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _recording(self, environ, start_response):
        request = Request(environ)
        body = request.get_data()
        self.seen.append(Seen(request.method, request.path, request.headers.get("Authorization"), body))
        environ["wsgi.input"] = io.BytesIO(body)  # the application reads the body again
        environ["CONTENT_LENGTH"] = str(len(body))
        return self._app(environ, start_response)

    def start(self) -> "LiveServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)

    def requests_to(self, path: str, method: str | None = None) -> list[Seen]:
        return [s for s in self.seen if s.path == path and (method is None or s.method == method)]


class TransactionRefusingFront:
    """A WSGI front for a real FHIR server that answers 405 to transactions and forwards the rest."""

    def __init__(self, fhir_base: str, front_prefix: str = "/fhir"):
        self.fhir_base = fhir_base.rstrip("/")
        self.prefix = front_prefix
        self.refused = 0

    def __call__(self, environ, start_response):
        request = Request(environ)
        rest = request.path[len(self.prefix) :] if request.path.startswith(self.prefix) else request.path
        if request.method == "POST" and rest.strip("/") == "":
            self.refused += 1
            outcome = {
                "resourceType": "OperationOutcome",
                "issue": [
                    {"severity": "error", "code": "not-supported", "diagnostics": "transaction is not supported"}
                ],
            }
            return Response(json.dumps(outcome), status=405, content_type="application/fhir+json")(
                environ, start_response
            )
        url = self.fhir_base + rest + (("?" + request.query_string.decode()) if request.query_string else "")
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "accept", "authorization")}
        upstream = requests.request(request.method, url, data=request.get_data(), headers=headers, timeout=30)
        return Response(
            upstream.content, status=upstream.status_code, content_type=upstream.headers.get("Content-Type")
        )(environ, start_response)
