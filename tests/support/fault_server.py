"""A FHIR server that misbehaves on purpose: a real HTTP server on 127.0.0.1 for the fault tests.

It serves one fixture patient's record (searches by type, reads of `Patient/{id}`) under base URLs
that name the fault to inject:

    http://127.0.0.1:{port}/{fault}/fhir            the fault on every request
    http://127.0.0.1:{port}/{fault}@{Type}/fhir     the fault on searches of one resource type only

Faults: `ok`, `slow` (answers after 30 s), `drip` (headers, then one byte every 0.2 s), `500`,
`429-once` / `502-once` / `503-once` / `504-once` (then the data), `429-always` (Retry-After: 30),
`truncated` (JSON cut in half), `pages-forever` (every page links to another), `redirect` (302 to
the other host), `next-elsewhere` (a next link to the other host), `next-beside` (a next link on
the same host and port, outside the base path: another tenant's base), `huge` (a body over 2 MB),
`not-fhir` (JSON that is not a resource), `html`.

Every request is recorded with its headers, so tests can see where a token went.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from urllib.parse import urlencode

from .servers import Answer, LoopbackServer

FHIR = {"Content-Type": "application/fhir+json"}


class FaultyFhirServer(LoopbackServer):
    def __init__(self, patient_bundle: dict, other_host: str):
        super().__init__()
        self.other_host = other_host.rstrip("/")
        self.by_type: dict[str, list[dict]] = {}
        for entry in patient_bundle["entry"]:
            resource = entry["resource"]
            self.by_type.setdefault(resource["resourceType"], []).append(resource)
        self.counts: Counter = Counter()

    def base(self, fault: str, resource_type: str | None = None) -> str:
        scope = f"{fault}@{resource_type}" if resource_type else fault
        return f"{self.url}/{scope}/fhir"

    # -- answers ----------------------------------------------------------------------------------

    def _bundle(self, resources: list[dict], links: list[dict] | None = None) -> bytes:
        bundle = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(resources),
            "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
        }
        if links:
            bundle["link"] = links
        return json.dumps(bundle).encode()

    def _data(self, resource_type: str, rest: str) -> Answer:
        if "/" in rest:  # a read: Patient/{id}
            rtype, _, rid = rest.partition("/")
            for r in self.by_type.get(rtype, []):
                if r.get("id") == rid:
                    return Answer(200, FHIR, json.dumps(r).encode())
            return Answer(404, FHIR, b'{"resourceType": "OperationOutcome", "issue": []}')
        return Answer(200, FHIR, self._bundle(self.by_type.get(resource_type, [])))

    def respond(self, seen, handler):
        parts = seen.path.strip("/").split("/", 2)
        if len(parts) < 3 or parts[1] != "fhir":
            return Answer(404)
        scope, rest = parts[0], parts[2]
        fault, _, only_type = scope.partition("@")
        resource_type = rest.split("/", 1)[0]
        key = (scope, resource_type)
        with self.lock:
            self.counts[key] += 1
            count = self.counts[key]
        if only_type and only_type != resource_type:
            fault = "ok"

        if fault == "ok":
            return self._data(resource_type, rest)
        if fault == "slow":
            self.stopping.wait(30)
            return self._data(resource_type, rest)
        if fault == "drip":
            body = self._data(resource_type, rest).body
            handler.send_response(200)
            handler.send_header("Content-Type", "application/fhir+json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            try:
                for i in range(len(body)):
                    if self.stopping.wait(0.2):
                        return None
                    handler.wfile.write(body[i : i + 1])
                    handler.wfile.flush()
            except OSError:
                pass  # the service hung up at its deadline, as it should
            return None
        if fault == "500":
            return Answer(500, FHIR, b'{"resourceType": "OperationOutcome", "issue": []}')
        if fault.endswith("-once") and fault[:3].isdigit():
            if count == 1:
                return Answer(int(fault[:3]), {"Retry-After": "0"} if fault.startswith("429") else {})
            return self._data(resource_type, rest)
        if fault == "429-always":
            return Answer(429, {"Retry-After": "30"})
        if fault == "truncated":
            body = self._data(resource_type, rest).body
            return Answer(200, FHIR, body[: max(1, len(body) // 2)])
        if fault == "pages-forever":
            page = int(seen.query.get("page", ["0"])[0])
            nxt = f"{self.url}/{scope}/fhir/{resource_type}?" + urlencode({"page": page + 1})
            resources = self.by_type.get(resource_type, [])[:1] if page == 0 else []
            return Answer(200, FHIR, self._bundle(resources, [{"relation": "next", "url": nxt}]))
        if fault == "redirect":
            return Answer(302, {"Location": f"{self.other_host}/fhir/{rest}"})
        if fault == "next-elsewhere":
            resources = self.by_type.get(resource_type, [])[:1]
            nxt = f"{self.other_host}/fhir/{resource_type}?page=2"
            return Answer(200, FHIR, self._bundle(resources, [{"relation": "next", "url": nxt}]))
        if fault == "next-beside":
            resources = self.by_type.get(resource_type, [])[:1]
            nxt = f"{self.url}/beside/fhir/{resource_type}?page=2"
            return Answer(200, FHIR, self._bundle(resources, [{"relation": "next", "url": nxt}]))
        if fault == "huge":
            pad = "x" * 2_500_000
            return Answer(
                200,
                FHIR,
                json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": [], "padding": pad}).encode(),
            )
        if fault == "not-fhir":
            return Answer(200, {"Content-Type": "application/json"}, b'[{"not": "a resource"}]')
        if fault == "html":
            return Answer(200, {"Content-Type": "text/html"}, b"<html><body>maintenance</body></html>")
        return Answer(400)

    def requests_for(self, scope_prefix: str) -> list:
        return self.seen("/" + scope_prefix)


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
