"""`cds-hooks fixtures load|remove` puts the fixture patients on a real FHIR server and takes them off.

Each test gets its own empty sekmet FHIR server process, so what it sees on the server is what the
command did.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from conftest import REPO, patient_bundle
from support.fhir_server import FhirServer
from support.live import LiveServer, TransactionRefusingFront

pytestmark = pytest.mark.fhir_server

CLI = str(Path(sys.executable).parent / "cds-hooks")
SEED_KEYS = [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in patient_bundle("seed")["entry"]]


def fixtures(*args):
    return subprocess.run([CLI, "fixtures", *args], capture_output=True, text=True, timeout=120, cwd=REPO)


def report(out) -> list[dict]:
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture()
def server(tmp_path):
    s = FhirServer(tmp_path / "fhir").start()
    yield s
    s.stop()


def status_of(server, key: str) -> int:
    return requests.get(f"{server.base_url}/{key}", timeout=10).status_code


def total(server, query: str) -> int:
    return requests.get(f"{server.base_url}/{query}", timeout=10).json()["total"]


def test_load_writes_every_resource_under_its_fixture_id(server):
    (seed,) = report(fixtures("load", "seed", "--fhir-server", server.base_url, "--json"))
    assert seed["how"] == "transaction"
    assert {r["url"] for r in seed["resources"]} == set(SEED_KEYS)
    assert {r["outcome"] for r in seed["resources"]} == {"created"}
    assert all(status_of(server, key) == 200 for key in SEED_KEYS)


def test_loading_again_updates_and_duplicates_nothing(server):
    fixtures("load", "seed", "--fhir-server", server.base_url)
    (again,) = report(fixtures("load", "seed", "--fhir-server", server.base_url, "--json"))
    assert {r["outcome"] for r in again["resources"]} == {"updated"}
    assert total(server, "Condition?patient=seed-patient") == 6
    assert total(server, "Patient") == 1


def test_dry_run_lists_the_puts_and_sends_nothing(server):
    (plan,) = report(fixtures("load", "seed", "--fhir-server", server.base_url, "--dry-run", "--json"))
    assert plan["how"] == "dry-run"
    assert [(r["method"], r["outcome"]) for r in plan["resources"]] == [("PUT", "planned")] * len(SEED_KEYS)
    assert total(server, "Patient") == 0


def test_the_report_names_each_resource_and_what_happened(server):
    out = fixtures("load", "red-flag", "--fhir-server", server.base_url)
    assert out.returncode == 0, out.stderr
    assert "PUT    Patient/redflag-patient" in out.stdout and "201 created" in out.stdout
    assert "red-flag: wrote 11 resources in one transaction: 11 created" in out.stderr


def test_a_server_that_refuses_transactions_gets_one_put_per_resource(server):
    front = TransactionRefusingFront(server.base_url)
    live = LiveServer(front).start()
    try:
        (seed,) = report(fixtures("load", "seed", "--fhir-server", f"{live.url}/fhir", "--json"))
    finally:
        live.stop()
    assert front.refused == 1
    assert seed["how"] == "per-resource"
    assert {r["outcome"] for r in seed["resources"]} == {"created"}
    assert all(status_of(server, key) == 200 for key in SEED_KEYS)
    puts = [s.path.removeprefix("/fhir/") for s in live.seen if s.method == "PUT"]
    # Referenced resources go first, so servers that check references on write accept each PUT.
    assert puts.index("Patient/seed-patient") < puts.index("Condition/seed-ddd-lumbar")
    assert puts.index("ImagingStudy/seed-mri-2026") < puts.index("DiagnosticReport/seed-mri-2026-report")


def test_mode_put_never_tries_a_transaction(server):
    front = TransactionRefusingFront(server.base_url)
    live = LiveServer(front).start()
    try:
        (seed,) = report(fixtures("load", "seed", "--fhir-server", f"{live.url}/fhir", "--mode", "put", "--json"))
    finally:
        live.stop()
    assert front.refused == 0 and seed["how"] == "per-resource"


def test_mode_transaction_reports_a_refusal_instead_of_falling_back(server):
    front = TransactionRefusingFront(server.base_url)
    live = LiveServer(front).start()
    try:
        out = fixtures("load", "seed", "--fhir-server", f"{live.url}/fhir", "--mode", "transaction")
    finally:
        live.stop()
    assert out.returncode == 1
    assert "does not accept transactions" in out.stderr
    assert total(server, "Patient") == 0


def test_remove_deletes_a_fixture_and_keeps_what_other_fixtures_share(server):
    fixtures("load", "seed", "meets-all", "--fhir-server", server.base_url)
    (seed,) = report(fixtures("remove", "seed", "--fhir-server", server.base_url, "--json"))
    assert {r["outcome"] for r in seed["resources"]} == {"deleted"}
    assert "Practitioner/surgeon-1" not in {r["url"] for r in seed["resources"]}
    assert status_of(server, "Patient/seed-patient") != 200
    assert total(server, "Condition?patient=seed-patient") == 0
    assert status_of(server, "Practitioner/surgeon-1") == 200
    assert status_of(server, "Patient/meets-patient") == 200


def test_removing_every_fixture_removes_the_shared_surgeon_too(server):
    fixtures("load", "--fhir-server", server.base_url)
    reports = report(fixtures("remove", "--fhir-server", server.base_url, "--json"))
    assert all(r["how"] == "transaction" for r in reports)
    assert status_of(server, "Practitioner/surgeon-1") != 200
    assert total(server, "Patient") == 0


def test_remove_without_transactions_deletes_one_resource_at_a_time(server):
    fixtures("load", "red-flag", "--fhir-server", server.base_url)
    live = LiveServer(TransactionRefusingFront(server.base_url)).start()
    try:
        (gone,) = report(fixtures("remove", "red-flag", "--fhir-server", f"{live.url}/fhir", "--json"))
    finally:
        live.stop()
    assert gone["how"] == "per-resource"
    assert status_of(server, "Patient/redflag-patient") != 200
    deletes = [s.path.removeprefix("/fhir/") for s in live.seen if s.method == "DELETE"]
    assert deletes[-1] == "Patient/redflag-patient"  # what references the patient goes first


def test_a_protected_server_is_loaded_with_the_bearer_token(tmp_path):
    server = FhirServer(tmp_path / "fhir", tokens=["fixture-loader-token"]).start()
    try:
        refused = fixtures("load", "seed", "--fhir-server", server.base_url)
        assert refused.returncode == 1
        assert "HTTP 401" in refused.stderr and "--token" in refused.stderr
        (seed,) = report(
            fixtures("load", "seed", "--fhir-server", server.base_url, "--token", "fixture-loader-token", "--json")
        )
        assert {r["outcome"] for r in seed["resources"]} == {"created"}
    finally:
        server.stop()


def test_an_unknown_fixture_name_is_refused_with_the_known_names():
    out = fixtures("load", "nobody", "--fhir-server", "http://127.0.0.1:9/fhir")
    assert out.returncode == 2
    assert "nobody" in out.stderr and "seed" in out.stderr


def test_an_unreachable_server_is_reported_without_a_traceback():
    out = fixtures("load", "seed", "--fhir-server", "http://127.0.0.1:9/fhir", "--timeout", "2")
    assert out.returncode == 1
    assert "cannot reach http://127.0.0.1:9/fhir" in out.stderr
    assert "Traceback" not in out.stderr


def test_list_names_every_fixture_patient():
    out = fixtures("list")
    assert out.returncode == 0
    assert [line.split()[0] for line in out.stdout.splitlines()] == [
        "case-360",
        "cervical-myelopathy",
        "cervical-radiculopathy",
        "cervical-seed",
        "cervical-two-level",
        "cervical-urgent",
        "meets-all",
        "no-imaging",
        "non-fusion",
        "notes-pt",
        "notes-vaping",
        "red-flag",
        "seed",
    ]
