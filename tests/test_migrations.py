"""Schema migrations (Alembic): they build exactly the tables the code uses, on SQLite and PostgreSQL."""

import os
import subprocess
import sys
import time

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from cds_hooks.audit.schema import metadata
from cds_hooks.audit.database import create_db_engine, current_revision, head_revision, upgrade
from conftest import AUDIT_BACKENDS, REPO

pytestmark = pytest.mark.parametrize("backend", AUDIT_BACKENDS)
CLI = str(os.path.join(os.path.dirname(sys.executable), "cds-hooks"))


def test_the_migrations_build_exactly_the_declared_schema(new_database_url, backend):
    engine = create_db_engine(new_database_url(backend))
    upgrade(engine)
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert differences == []
    assert set(inspect(engine).get_table_names()) == {t.name for t in metadata.sorted_tables} | {"alembic_version"}


def test_upgrading_an_up_to_date_database_changes_nothing(new_database_url, backend):
    engine = create_db_engine(new_database_url(backend))
    first = upgrade(engine)
    assert upgrade(engine) == first == current_revision(engine)


def test_db_upgrade_command_migrates_the_configured_database(new_database_url, backend, tmp_path):
    url = new_database_url(backend)
    env = {**os.environ, "CDS_DATABASE_URL": url, "CDS_VAR_DIR": str(tmp_path)}
    out = subprocess.run([CLI, "db", "upgrade"], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"at revision {head_revision()}" in out.stdout
    assert current_revision(create_db_engine(url)) == head_revision()


STARTER = """
import sys, time
from cds_hooks.audit.database import create_db_engine, upgrade
url, start_at = sys.argv[1], float(sys.argv[2])
engine = create_db_engine(url)
while time.time() < start_at:
    time.sleep(0.001)
print(upgrade(engine))
"""


def test_several_processes_migrating_at_once_all_succeed(new_database_url, backend):
    """Workers and replicas starting together serialise on the migration lock."""
    url = new_database_url(backend)
    start_at = time.time() + 3
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", STARTER, url, str(start_at)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert out.strip() == head_revision()


def test_the_newest_migration_is_the_head_the_code_expects(new_database_url, backend):
    assert head_revision() == "0002"
    assert upgrade(create_db_engine(new_database_url(backend))) == "0002"


def test_calls_recorded_before_the_go_live_migration_read_as_live(new_database_url, backend):
    from sqlalchemy import select

    from cds_hooks.audit.schema import audit_call

    engine = create_db_engine(new_database_url(backend))
    upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO audit_call (id, received_at, service_id, status, duration_ms, card_count) "
            "VALUES ('c1', '2026-01-01 00:00:00', 'lumbar-fusion', 200, 1.0, 1)"
        )
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(select(audit_call.c.mode, audit_call.c.site)).one() == ("live", None)
