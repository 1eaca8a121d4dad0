"""Shared fixtures: one real CQL engine per test session, the app, and the real FHIR server."""

from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path

import pytest

# Applications built by tests keep their audit database and key files out of the repository (also
# when the shell sets CDS_VAR_DIR to the user's own folder).
os.environ["CDS_VAR_DIR"] = tempfile.mkdtemp(prefix="fusion-cds-test-var-")

from cds_hooks.web.app import create_app
from cds_hooks.config import Config
from cds_hooks.engine.bridge import CqlEngine
from cds_hooks.engine.compiled import engine_from_config
from support.jwt_issuer import JwksServer, Signer

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "fhir_fixtures"
# Every fixture patient (a new rule pack adds its own; the test FHIR server holds them all).
PATIENTS = sorted(p.stem for p in (FIXTURES / "patients").glob("*.json"))


def load_json(path: Path | str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def declared_services() -> dict[str, dict]:
    """The `service` section of every rule pack under cql/, by service id: what discovery must list."""
    docs = (load_json(path) for path in sorted((REPO / "cql").glob("*/pack.json")))
    return {doc["service"]["id"]: doc["service"] for doc in docs}


def request_fixture(name: str, prefetch: bool = True) -> dict:
    return load_json(FIXTURES / "requests" / f"{name}-{'prefetch' if prefetch else 'no-prefetch'}.json")


def patient_bundle(name: str) -> dict:
    return load_json(FIXTURES / "patients" / f"{name}.json")


def _checkout_var_state() -> dict[str, tuple[int, int]]:
    folder = REPO / "var"
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session", autouse=True)
def checkout_var_untouched():
    """The suite never writes the checkout's var/ (the user's own audit database and key)."""
    before = _checkout_var_state()
    yield
    assert _checkout_var_state() == before, "a test wrote into the checkout's var/"


@pytest.fixture(scope="session")
def engine():
    """The engine the service runs by default (compiled); CDS_CQL_ENGINE=reference runs the suite on
    cql-execution instead."""
    eng = engine_from_config(Config(engine_timeout=20.0), workers=2)
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def reference_engine():
    """cql-execution in Node workers, for the tests about those workers."""
    eng = CqlEngine(workers=2, timeout=20.0)
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def app(engine, tmp_path_factory):
    application = create_app(Config.development(var_dir=tmp_path_factory.mktemp("var")), engine=engine)
    application.testing = True
    return application


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture()
def seed_request():
    return copy.deepcopy(request_fixture("seed"))


@pytest.fixture(scope="session")
def fhir_server(tmp_path_factory):
    """The real FHIR server, started once, with every fixture patient loaded as a transaction."""
    from support.fhir_server import FhirServer

    server = FhirServer(tmp_path_factory.mktemp("fhir-server")).start()
    try:
        for name in PATIENTS:
            server.load_bundle(patient_bundle(name))
        yield server
    finally:
        server.stop()


# ------------------------------------------------------------------ audit databases
# Audit tests run against both backends. PostgreSQL is a real server (Debian's package, installed by
# ./scripts/setup --test); when it is missing the tests that need it fail, they are not skipped.

AUDIT_BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres_url():
    """Base URL of a PostgreSQL server: CDS_TEST_POSTGRES_URL, else one started for the session."""
    from support.postgres import PostgresServer

    if os.environ.get("CDS_TEST_POSTGRES_URL"):
        yield os.environ["CDS_TEST_POSTGRES_URL"]
        return
    server = PostgresServer().start()
    try:
        yield server.base_url
    finally:
        server.stop()


@pytest.fixture()
def new_database_url(request, tmp_path):
    """A factory of new, empty databases of one backend: new_database_url("sqlite" | "postgresql")."""
    from support.postgres import create_database

    def make(backend: str) -> str:
        if backend == "sqlite":
            folder = tmp_path / f"sqlite-{len(list(tmp_path.glob('sqlite-*')))}"
            folder.mkdir()
            return f"sqlite:///{folder / 'audit.db'}"
        return create_database(request.getfixturevalue("postgres_url"))

    return make


@pytest.fixture(scope="session", params=AUDIT_BACKENDS)
def audit_app(request, engine, tmp_path_factory):
    """A service whose audit trail is a migrated database of one backend (one per backend per session)."""
    from support.audit_db import audit_settings
    from support.postgres import create_database

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('audit-sqlite') / 'audit.db'}"
    else:
        url = create_database(request.getfixturevalue("postgres_url"))
    var_dir = tmp_path_factory.mktemp("audit-var")
    application = create_app(Config.development(**audit_settings(url, var_dir)), engine=engine)
    application.testing = True
    application.config["AUDIT_DATABASE_URL"] = url
    return application


@pytest.fixture()
def audit_store(audit_app):
    """The audit store of `audit_app`, emptied for this test."""
    from cds_hooks.web.recording import recorder_of
    from support.audit_db import clear

    store = recorder_of(audit_app).store
    clear(store.engine)
    return store


@pytest.fixture()
def audit_client(audit_app, audit_store):
    return audit_app.test_client()


@pytest.fixture(scope="module")
def issuer():
    """A trusted EHR issuer: its JWK Set served on 127.0.0.1, and a signer of its CDS Hooks JWTs."""
    server = JwksServer().start()
    try:
        yield Signer(server, iss="https://ehr.example.org")
    finally:
        server.stop()
