"""The production server's own edge (gunicorn, caller authentication on), without the proxy in front:
an oversized bearer token gets the service's JSON 401, oversized bodies the service's JSON 413 (declared
or chunked), read by a client still sending its body before the connection closes."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest
import requests

from conftest import FIXTURES, REPO
from support.fhir_server import free_port
from support.processes import wait_until_answering

from test_production_server import CLI, production_env

SERVICE = "/cds-services/lumbar-fusion"


@pytest.fixture(scope="module")
def server(issuer, tmp_path_factory):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = production_env(
        CDS_PUBLIC_BASE_URL=base,
        CDS_TRUSTED_ISSUERS=json.dumps([issuer.issuer_config()]),
        CDS_ALLOW_HTTP_LOOPBACK="true",
        CDS_SERVER_WORKERS="1",
        CDS_ENGINE_WORKERS="1",
        CDS_VAR_DIR=str(tmp_path_factory.mktemp("var")),
    )
    proc = subprocess.Popen(
        [CLI, "serve", "--production", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_until_answering(proc, f"{base}/readyz", timeout=120), "production server did not start"
        yield base
    finally:
        proc.kill()
        proc.wait(timeout=10)


def signed(issuer, base: str, path: str = SERVICE) -> dict:
    return {"Authorization": f"Bearer {issuer.token(base + path)}", "Content-Type": "application/json"}


def test_a_bearer_token_over_8_kb_gets_the_json_401_not_an_html_431(server, issuer):
    token = issuer.token(server + "/cds-services", padding="x" * 9000)
    assert len(token) > 8192
    r = requests.get(server + "/cds-services", headers={"Authorization": f"Bearer {token}"}, timeout=15)
    assert r.status_code == 401
    assert r.json()["error"] == "unauthorized" and "well-formed" in r.json()["message"]


def test_a_chunked_body_over_the_limit_is_a_json_413(server, issuer):
    def chunks():
        for _ in range(30):
            yield b" " * 100_000  # 3 MB, over max_body_bytes (2 MB), with no Content-Length

    r = requests.post(server + SERVICE, data=chunks(), headers=signed(issuer, server), timeout=15)
    assert r.status_code == 413 and r.json()["error"] == "too-large"


def test_a_413_arrives_before_the_connection_closes_on_a_raw_socket(server, issuer):
    host, port = server.removeprefix("http://").split(":")
    headers = signed(issuer, server)
    with socket.create_connection((host, int(port)), timeout=15) as s:
        s.sendall(
            (
                f"POST {SERVICE} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                f"Authorization: {headers['Authorization']}\r\nContent-Length: 8000000\r\n\r\n"
            ).encode()
        )
        left = 8_000_000
        while left:
            s.sendall(b" " * min(65536, left))
            left -= min(65536, left)
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413")


def test_the_seed_case_still_answers(server, issuer):
    body = (FIXTURES / "requests" / "seed-prefetch.json").read_bytes()
    r = requests.post(server + SERVICE, data=body, headers=signed(issuer, server), timeout=30)
    assert r.status_code == 200 and r.json()["cards"]
