"""The database-backed JWT replay store (audit/replay_db.py): atomic across processes, on SQLite and PostgreSQL."""

import subprocess
import sys
import time

import pytest

from cds_hooks.audit.schema import replay_jti
from cds_hooks.audit.database import create_db_engine, upgrade
from cds_hooks.audit.replay_db import DatabaseReplayStore
from conftest import AUDIT_BACKENDS, REPO
from support.audit_db import rows

pytestmark = pytest.mark.parametrize("backend", AUDIT_BACKENDS)


class Clock:
    def __init__(self, now=1_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture()
def db(new_database_url, backend):
    url = new_database_url(backend)
    engine = create_db_engine(url)
    upgrade(engine)
    yield url, engine
    engine.dispose()


def test_a_key_is_accepted_the_first_time_and_refused_after(db, backend):
    _, engine = db
    store = DatabaseReplayStore(engine)
    expiry = time.time() + 300
    assert store.first_use("issuer|jti-1", expiry) is True
    assert store.first_use("issuer|jti-1", expiry) is False
    assert store.first_use("issuer|jti-2", expiry) is True


def test_the_key_itself_is_not_stored(db, backend):
    _, engine = db
    DatabaseReplayStore(engine).first_use("https://ehr.example.org|jti-secret-value", time.time() + 60)
    (row,) = rows(engine, replay_jti)
    assert "jti-secret-value" not in row["key_hash"] and len(row["key_hash"]) == 64


def test_a_key_may_be_used_again_once_its_record_has_expired(db, backend):
    _, engine = db
    clock = Clock()
    store = DatabaseReplayStore(engine, clock=clock)
    assert store.first_use("k", clock.now + 60)
    clock.now += 61
    assert store.first_use("k", clock.now + 60) is True
    assert store.first_use("k", clock.now + 60) is False


def test_two_stores_on_one_database_share_what_they_have_seen(db, backend):
    """Two replicas: a jti used at one is a replay at the other."""
    url, engine = db
    other = create_db_engine(url)
    try:
        assert DatabaseReplayStore(engine).first_use("k", time.time() + 60)
        assert DatabaseReplayStore(other).first_use("k", time.time() + 60) is False
    finally:
        other.dispose()


def test_purge_deletes_only_expired_keys(db, backend):
    _, engine = db
    clock = Clock()
    store = DatabaseReplayStore(engine, clock=clock)
    store.first_use("old", clock.now + 10)
    store.first_use("live", clock.now + 1000)
    clock.now += 20
    assert store.purge() == 1
    assert len(rows(engine, replay_jti)) == 1
    assert store.first_use("live", clock.now + 1000) is False


def test_expired_keys_are_purged_by_the_store_itself_from_time_to_time(db, backend):
    _, engine = db
    clock = Clock()
    store = DatabaseReplayStore(engine, clock=clock, purge_interval=60)
    for i in range(5):
        store.first_use(f"k{i}", clock.now + 10)
    clock.now += 61
    store.first_use("new", clock.now + 10)
    assert [r["expires_at"] for r in rows(engine, replay_jti)] == [clock.now + 10]


WORKER = """
import json, random, sys, time
from cds_hooks.audit.database import create_db_engine
from cds_hooks.audit.replay_db import DatabaseReplayStore
url, start_at, n = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
store = DatabaseReplayStore(create_db_engine(url))
while time.time() < start_at:
    time.sleep(0.001)
order = list(range(n))
random.shuffle(order)  # each process meets the keys in its own order, so they collide on many
t0 = time.time()
won = [k for k in order if store.first_use(f"shared-{k}", time.time() + 600)]
print(json.dumps({"won": won, "t0": t0, "t1": time.time()}))
"""


def test_of_several_processes_using_the_same_keys_at_once_exactly_one_wins_each(db, backend):
    url, _ = db
    processes, keys = 4, 150
    start_at = time.time() + 3  # all processes begin together, after their imports
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, str(start_at), str(keys)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    reports = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        reports.append(__import__("json").loads(out))
    every = sorted(k for r in reports for k in r["won"])
    assert every == list(range(keys))  # each key won exactly once, by some process
    # The processes really competed: every one was still claiming keys when the last one started.
    assert max(r["t0"] for r in reports) < min(r["t1"] for r in reports)
