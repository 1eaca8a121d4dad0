"""Shared fixtures: one real CQL engine per test session, the app, and the real FHIR server."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from cds_hooks.app import create_app
from cds_hooks.config import Config
from cds_hooks.engine import CqlEngine

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "fhir_fixtures"
PATIENTS = ["seed", "meets-all", "no-imaging", "red-flag", "non-fusion", "case-360"]


def load_json(path: Path | str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def request_fixture(name: str, prefetch: bool = True) -> dict:
    return load_json(FIXTURES / "requests" / f"{name}-{'prefetch' if prefetch else 'no-prefetch'}.json")


def patient_bundle(name: str) -> dict:
    return load_json(FIXTURES / "patients" / f"{name}.json")


@pytest.fixture(scope="session")
def engine():
    eng = CqlEngine(workers=2, timeout=20.0)
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def app(engine):
    application = create_app(Config.development(), engine=engine)
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
