"""Durability of the audit trail: the row is committed before the response is sent.

The service runs as a real server process; a burst of requests comes from several threads; the
server is killed with SIGKILL in the middle of it. Every request that got a 200 must have its row.
Runs on SQLite and PostgreSQL.
"""

import os
import signal
import subprocess
import sys
import threading

import pytest
import requests

from cds_hooks.audit.schema import audit_call
from cds_hooks.audit.database import create_db_engine
from conftest import AUDIT_BACKENDS, REPO, request_fixture
from support.audit_db import audit_env, rows
from support.fhir_server import free_port
from support.processes import wait_until_answering

CLI = str(os.path.join(os.path.dirname(sys.executable), "cds-hooks"))
THREADS = 6
PER_THREAD = 40
KILL_AFTER = 20  # successful responses before the kill


def start_server(env, tmp_path):
    port = free_port()
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(
        [CLI, "serve", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    if wait_until_answering(proc, f"{base}/readyz", timeout=90, request_timeout=5):
        return proc, base
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError(f"server did not become ready: {(tmp_path / 'server.log').read_text()[-2000:]}")


@pytest.mark.parametrize("backend", AUDIT_BACKENDS)
def test_every_request_answered_200_before_a_sigkill_has_its_audit_row(backend, new_database_url, tmp_path):
    url = new_database_url(backend)
    env = {**os.environ, **audit_env(url, tmp_path / "var")}
    proc, base = start_server(env, tmp_path)
    body = request_fixture("seed")
    answered: list[str] = []
    failed: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()

    def fire(thread: int):
        session = requests.Session()
        for i in range(PER_THREAD):
            hook_instance = f"burst-{thread}-{i}"
            try:
                r = session.post(
                    f"{base}/cds-services/lumbar-fusion", json={**body, "hookInstance": hook_instance}, timeout=30
                )
            except requests.RequestException:
                with lock:
                    failed.append(hook_instance)
                return  # the server is gone
            with lock:
                if r.status_code == 200 and r.json().get("cards"):
                    answered.append(hook_instance)
                    if len(answered) >= KILL_AFTER:
                        enough.set()
                else:
                    failed.append(hook_instance)

    threads = [threading.Thread(target=fire, args=(t,)) for t in range(THREADS)]
    try:
        for t in threads:
            t.start()
        assert enough.wait(timeout=180), f"only {len(answered)} answers before the time limit"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the server and its CQL workers, mid-burst
        proc.wait(timeout=30)
        for t in threads:
            t.join(timeout=60)

    assert len(failed) >= 1, "the kill must interrupt requests in flight"
    assert len(answered) < THREADS * PER_THREAD, "the burst must not have finished before the kill"
    engine = create_db_engine(url)
    try:
        recorded = {r["hook_instance"]: r["status"] for r in rows(engine, audit_call)}
    finally:
        engine.dispose()
    missing = [h for h in answered if recorded.get(h) != 200]
    assert missing == [], f"{len(missing)} of {len(answered)} answered requests have no audit row"
