"""The audit database failing under the service: down under load (the real PostgreSQL server stopped as
a crash would stop it, then started again) and locked (a lock held by another session).

Every route that needs the database answers 503 `audit-unavailable` with `Retry-After` while it is
down, the log says why, and calls succeed again once it is back; a lock makes a call wait at most
`database_lock_timeout`, never past its deadline.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
import time
from collections import Counter

import pytest
import requests
from sqlalchemy import text
from sqlalchemy.engine import make_url

from cds_hooks.audit.database import create_db_engine
from cds_hooks.config import Config
from cds_hooks.web.app import create_app
from conftest import AUDIT_BACKENDS, REPO, request_fixture
from support.audit_db import audit_env, audit_settings
from support.fhir_server import free_port
from support.postgres import PostgresServer, create_database
from support.processes import wait_until_answering

from test_production_server import CLI, production_env

DISCOVERY, SERVICE = "/cds-services", "/cds-services/lumbar-fusion"
FEEDBACK = SERVICE + "/feedback"
THREADS = 4
CALL_DEADLINE = 5.0  # CRD: an answer within 5 s


@pytest.fixture(scope="module")
def postgres():
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def service(postgres, issuer, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("outage")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = production_env(
        **audit_env(create_database(postgres.base_url), tmp / "var"),
        CDS_PUBLIC_BASE_URL=base,
        CDS_TRUSTED_ISSUERS=json.dumps([issuer.issuer_config()]),
        CDS_ALLOW_HTTP_LOOPBACK="true",
        CDS_SERVER_WORKERS="2",
        CDS_ENGINE_WORKERS="1",
    )
    log = tmp / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [CLI, "serve", "--production", "--port", str(port)], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        assert wait_until_answering(proc, f"{base}/readyz", timeout=120), log.read_text()[-3000:]
        yield base, log
    finally:
        proc.kill()
        proc.wait(timeout=10)


def one_call(session, issuer, base: str, route: str, n: int):
    headers = {"Authorization": f"Bearer {issuer.token(base + route)}"}
    t0 = time.monotonic()
    try:
        if route == DISCOVERY:
            r = session.get(base + route, headers=headers, timeout=10)
        elif route == SERVICE:
            r = session.post(
                base + route,
                json={**request_fixture("seed"), "hookInstance": f"outage-{n}"},
                headers=headers,
                timeout=10,
            )
        else:
            entry = {
                "card": "0b1f8a3c-9d7e-4a52-8f19-5e2b7c6d4a31",
                "outcome": "overridden",
                "outcomeTimestamp": "2026-09-10T14:03:00Z",
            }
            r = session.post(base + route, json={"feedback": [entry]}, headers=headers, timeout=10)
    except requests.RequestException as exc:
        return route, type(exc).__name__, None, None, time.monotonic() - t0
    error = r.json().get("error") if r.headers.get("Content-Type", "").startswith("application/json") else None
    return route, r.status_code, error, r.headers.get("Retry-After"), time.monotonic() - t0


def test_while_the_database_is_down_every_route_answers_503_audit_unavailable_and_recovers(service, postgres, issuer):
    base, log = service
    phase = ["up"]
    seen: dict[str, list] = {"up": [], "down": [], "back": []}
    stop = threading.Event()
    lock = threading.Lock()
    counter = iter(range(10**6))

    def load(worker: int):
        session = requests.Session()
        routes = [DISCOVERY, SERVICE, FEEDBACK]
        i = worker
        while not stop.is_set():
            current = phase[0]
            answer = one_call(session, issuer, base, routes[i % 3], next(counter))
            i += 1
            if phase[0] == current and current in seen:  # an answer across a phase change counts in neither
                with lock:
                    seen[current].append(answer)

    threads = [threading.Thread(target=load, args=(w,), daemon=True) for w in range(THREADS)]
    for t in threads:
        t.start()
    try:
        time.sleep(3)
        phase[0] = "pausing"
        postgres.pause()
        phase[0] = "down"
        time.sleep(6)
        phase[0] = "resuming"
        postgres.resume()
        time.sleep(3)  # pooled connections are re-checked (pool_pre_ping) and replaced
        phase[0] = "back"
        time.sleep(4)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=20)
        if phase[0] in ("pausing", "down"):
            postgres.resume()

    summary = {name: Counter((r, s, e) for r, s, e, _, _ in answers) for name, answers in seen.items()}
    print(summary, "slowest answer while down: %.3f s" % max((a[4] for a in seen["down"]), default=0))
    assert seen["up"] and seen["down"] and seen["back"]
    assert all(s == 200 for _, s, _, _, _ in seen["up"]), summary["up"]
    assert {route for route, *_ in seen["down"]} == {DISCOVERY, SERVICE, FEEDBACK}
    for route, status, error, retry_after, elapsed in seen["down"]:
        assert (status, error) == (503, "audit-unavailable"), (route, status, error)
        assert retry_after is not None and int(retry_after) > 0
        assert elapsed < CALL_DEADLINE, (route, elapsed)
    assert all(s == 200 for _, s, _, _, _ in seen["back"]), summary["back"]
    output = log.read_text()
    assert "audit database unavailable" in output
    assert "unhandled error" not in output


# ---- a lock held by another session ---------------------------------------------------------------


def hold_lock(backend: str, url: str):
    """Another session's exclusive hold on the audit tables; returns its release function."""
    if backend == "sqlite":
        conn = sqlite3.connect(make_url(url).database, isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN IMMEDIATE")
        return lambda: (conn.rollback(), conn.close())
    engine = create_db_engine(url)
    conn = engine.connect()
    conn.begin()
    conn.execute(text("LOCK TABLE audit_call IN ACCESS EXCLUSIVE MODE"))
    return lambda: (conn.rollback(), conn.close(), engine.dispose())


@pytest.mark.parametrize("backend", AUDIT_BACKENDS)
def test_a_locked_audit_table_makes_a_call_wait_at_most_the_lock_timeout(backend, engine, new_database_url, tmp_path):
    url = new_database_url(backend)
    app = create_app(
        Config.development(**audit_settings(url, tmp_path / "var"), database_lock_timeout=1.0), engine=engine
    )
    client = app.test_client()
    assert client.post(SERVICE, json=request_fixture("seed")).status_code == 200  # warm, migrated
    unlocked, usual = _timed(client)
    assert unlocked.status_code == 200
    release = hold_lock(backend, url)
    answers = []
    caller = threading.Thread(target=lambda: answers.append(_timed(client)), daemon=True)
    try:
        caller.start()
        caller.join(timeout=20)  # the lock is released however long the call waits
    finally:
        release()
    caller.join(timeout=20)
    ((r, elapsed),) = answers
    assert r.status_code == 503 and r.get_json()["error"] == "audit-unavailable"
    assert r.headers["Retry-After"]
    # The lock timeout on top of the call's usual time (with room for a busy machine), not the 10 s of
    # SQLite's old busy timeout or, on PostgreSQL, as long as the lock is held.
    assert elapsed < usual + 1.0 + 2.0, (elapsed, usual)


def _timed(client):
    t0 = time.monotonic()
    r = client.post(SERVICE, json=request_fixture("seed"))
    return r, time.monotonic() - t0
