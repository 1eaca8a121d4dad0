"""Logs: JSON lines with a request id; no token, JWT or patient identifier anywhere in them.

The proof is a full run over real HTTP with everything logged at DEBUG: the service (authentication
on) behind the development server's request handler, every fixture patient fetched from the real
FHIR server, the faulty FHIR server, refused tokens, bad bodies, query strings; then every captured
line is searched for every fixture patient's id, MRN and name, every access token and every JWT.
A second run does the same with the `cds-hooks serve` process and its stderr.
"""

import io
import json
import logging
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server

from cds_hooks.web.app import create_app
from cds_hooks.config import Config
from cds_hooks.ops.logs import JsonFormatter, Pseudonymizer, QuietRequestHandler
from conftest import PATIENTS, REPO, patient_bundle, request_fixture
from support.fault_server import FaultyFhirServer
from support.fhir_server import free_port
from support.jwt_issuer import JwksServer, Signer, unsigned
from support.processes import wait_until_answering
from support.servers import Recorder

pytestmark = pytest.mark.fhir_server
BASE = "https://cds.example.org"


def identifiers() -> set[str]:
    """Every fixture patient's id, MRN and name parts (what must never be logged)."""
    found = set()
    for name in PATIENTS:
        for entry in patient_bundle(name)["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] != "Patient":
                continue
            found.add(resource["id"])
            found.update(i["value"] for i in resource.get("identifier", []))
            for human in resource.get("name", []):
                found.update(p for p in [human.get("family"), *human.get("given", [])] if p and len(p) > 2)
    return found


class Captured:
    def __init__(self):
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(JsonFormatter())
        self.root = logging.getLogger()
        self.level = self.root.level

    def __enter__(self):
        self.root.addHandler(self.handler)
        self.root.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc):
        self.root.removeHandler(self.handler)
        self.root.setLevel(self.level)

    @property
    def text(self) -> str:
        return self.stream.getvalue()


def secrets_in(text: str, secrets: set[str]) -> list[str]:
    return sorted(s for s in secrets if s and s in text)


def test_a_full_run_logs_no_identifier_token_or_jwt(engine, fhir_server):
    keys, other = JwksServer().start(), Recorder().start()
    faulty = FaultyFhirServer(patient_bundle("seed"), other.url).start()
    signer = Signer(keys)
    config = Config(
        public_base_url=BASE,
        trusted_issuers=[signer.issuer_config()],
        allow_http_loopback=True,
        fhir_allow_loopback=True,
        fhir_deadline=1.5,
        fhir_timeout=1.0,
        log_pseudonym_key="test-pseudonym-key",
    )
    secrets: set[str] = set()
    statuses = []
    with Captured() as captured:
        app = create_app(config, engine=engine)
        server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietRequestHandler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_port}"

        def send(method, path, body=None, jwt=True, raw=None, headers=None):
            h = dict(headers or {})
            if jwt:
                token = signer.token(BASE + path.split("?")[0])
                secrets.add(token)
                secrets.update(part for part in token.split(".") if len(part) > 8)
                h["Authorization"] = "Bearer " + token
            if body is not None:
                h["Content-Type"] = "application/json"
                raw = json.dumps(body)
            r = requests.request(method, base + path, data=raw, headers=h, timeout=30)
            statuses.append(r.status_code)
            return r

        def hook(name, fhir_base=None, prefetch=True):
            body = request_fixture(name, prefetch=prefetch)
            token = f"fhir-access-{uuid.uuid4().hex}"
            secrets.add(token)
            body["fhirAuthorization"] = {
                "access_token": token,
                "token_type": "Bearer",
                "scope": "patient/*.read",
                "subject": "fusion-cds",
            }
            if fhir_base:
                body["fhirServer"] = fhir_base
            return send("POST", "/cds-services/lumbar-fusion", body)

        try:
            assert send("GET", "/cds-services?patient=seed-patient&mrn=FX-100001").status_code == 200
            for name in PATIENTS:
                assert hook(name).status_code == 200
                assert hook(name, fhir_server.base_url, prefetch=False).status_code == 200
            for fault in ("truncated", "redirect", "500", "slow", "next-elsewhere"):
                assert hook("seed", faulty.base(fault, "Condition"), prefetch=False).status_code == 200
            assert hook("seed", faulty.base("500"), prefetch=False).status_code == 412
            assert hook("seed", "https://fhir.not-allowed.example.org/r4", prefetch=False).status_code == 403
            # Refused callers: a forged token, a token replayed, no token.
            forged = unsigned({"alg": "none", "typ": "JWT", "kid": "ec-1"}, signer.claims(BASE + "/cds-services"))
            secrets.add(forged)
            assert (
                send("GET", "/cds-services", jwt=False, headers={"Authorization": "Bearer " + forged}).status_code
                == 401
            )
            replayed = signer.token(BASE + "/cds-services")
            secrets.add(replayed)
            for _ in range(2):
                send("GET", "/cds-services", jwt=False, headers={"Authorization": "Bearer " + replayed})
            assert statuses[-1] == 401
            # Bad bodies that carry identifiers.
            bad = request_fixture("seed")
            bad["context"]["patientId"] = "seed-patient/../FX-100001"
            assert send("POST", "/cds-services/lumbar-fusion", bad).status_code == 400
            assert (
                send(
                    "POST",
                    "/cds-services/lumbar-fusion",
                    raw='{"patientId": "seed-patient"',
                    headers={"Content-Type": "application/json"},
                ).status_code
                == 400
            )
            assert (
                send(
                    "POST",
                    "/cds-services/lumbar-fusion?patientId=seed-patient",
                    raw="FX-100001",
                    headers={"Content-Type": "text/plain"},
                ).status_code
                == 415
            )
            assert send("GET", "/cds-services/no-such/thing?mrn=FX-100002").status_code == 404
        finally:
            server.shutdown()
            faulty.stop()
            other.stop()
            keys.stop()

    text = captured.text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    access = [entry for entry in lines if entry["logger"] == "cds_hooks.access"]
    assert len(access) == len(statuses) and all(entry.get("request_id") for entry in access)
    answered = [entry for entry in lines if entry["message"] == "hook answered"]
    assert len(answered) >= 2 * len(PATIENTS)
    pseudonym = Pseudonymizer(b"test-pseudonym-key")("seed-patient")
    assert any(entry["patient"] == pseudonym for entry in answered), "the keyed hash correlates a patient's calls"
    assert any(entry["logger"] == "cds_hooks.data" for entry in lines), "the fault runs were logged"
    assert any(entry["logger"] == "cds_hooks.security" for entry in lines), "refused callers were logged"
    assert secrets_in(text, identifiers()) == []
    assert secrets_in(text, secrets) == []
    assert "?" not in "".join(entry.get("route", "") for entry in access)


def test_every_response_carries_the_request_id_of_its_log_lines(client):
    r = client.get("/cds-services", headers={"X-Request-Id": "ehr-call-42"})
    assert r.headers["X-Request-Id"] == "ehr-call-42"
    forged = client.get("/cds-services", headers={"X-Request-Id": 'x" {"level": "forged"}'})
    assert forged.headers["X-Request-Id"] != 'x" {"level": "forged"}' and len(forged.headers["X-Request-Id"]) == 32


def test_the_pseudonym_is_keyed():
    assert Pseudonymizer(b"k1")("seed-patient") != Pseudonymizer(b"k2")("seed-patient")
    assert Pseudonymizer(b"k1")("seed-patient") == Pseudonymizer(b"k1")("seed-patient")
    assert "seed" not in Pseudonymizer(b"k1")("seed-patient")


def test_an_exception_is_logged_as_its_type_and_frames_without_its_message():
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, None)
    try:
        raise ValueError("patient seed-patient had FX-100001")
    except ValueError:
        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record))
    assert entry["exception"] == "ValueError" and "FX-100001" not in json.dumps(entry)


def test_the_serve_command_logs_json_without_identifiers(fhir_server):
    port = free_port()
    cli = str(Path(sys.executable).parent / "cds-hooks")
    proc = subprocess.Popen(
        [cli, "--log-level", "DEBUG", "serve", "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    token = f"fhir-access-{uuid.uuid4().hex}"
    try:
        assert wait_until_answering(proc, f"{base}/cds-services?patient=seed-patient", timeout=60), (
            "server did not start"
        )
        body = request_fixture("seed", prefetch=False)
        body["fhirServer"] = fhir_server.base_url
        body["fhirAuthorization"]["access_token"] = token
        r = requests.post(f"{base}/cds-services/lumbar-fusion?mrn=FX-100001", json=body, timeout=30)
        assert r.status_code == 200
        # A request line the server cannot parse, holding an identifier.
        with __import__("socket").create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"GARBAGE /seed-patient?FX-100001 \x00\r\n\r\n")
            s.recv(1024)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    json_lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(entry["message"] == "hook answered" for entry in json_lines)
    assert secrets_in(err, identifiers() | {token}) == []


def test_the_command_line_s_log_handler_follows_stderr_when_it_is_swapped(monkeypatch):
    # Tools and test runners swap (and close) sys.stderr; a handler bound to the old one would then
    # fail on every record with "Logging error ... I/O operation on closed file".
    from cds_hooks.ops import logs

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        first = io.StringIO()
        monkeypatch.setattr(sys, "stderr", first)
        logs.configure("INFO")
        logging.getLogger("cds_hooks.test").info("one")
        first.close()
        second = io.StringIO()
        monkeypatch.setattr(sys, "stderr", second)
        logging.getLogger("cds_hooks.test").info("two")
        assert json.loads(second.getvalue())["message"] == "two"
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
