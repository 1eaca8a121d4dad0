"""Schema migrations (Alembic): they build exactly the tables the code uses, on SQLite and PostgreSQL."""
import os
import subprocess
import sys
import time

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from cds_hooks.audit_schema import metadata
from cds_hooks.database import create_db_engine, current_revision, upgrade
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
    assert "at revision 0001" in out.stdout
    assert current_revision(create_db_engine(url)) == "0001"


STARTER = """
import sys, time
from cds_hooks.database import create_db_engine, upgrade
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
    procs = [subprocess.Popen([sys.executable, "-c", STARTER, url, str(start_at)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert out.strip() == "0001"
