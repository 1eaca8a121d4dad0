"""Every fixture patient gives, from every service, the statuses its pack's expectations file documents.

fhir_fixtures/expected/<service>.json lists, per fixture patient, the card's indicator and every
criterion's status (fhir_fixtures/patients/README.md explains why); a fixture patient a service's file
does not list gets no cards from that service: each service ignores the orders of another procedure.
A new rule pack adds its file and its patients; no test code.
"""

import json

import pytest

from conftest import FIXTURES, REPO, request_fixture
from support.hooks import call, statuses

# Expectations of the services whose pack is in cql/ (a pack's fixtures may be written before the pack).
SERVED = {p.parent.name for p in (REPO / "cql").glob("*/pack.json")}
EXPECTATIONS = {
    p.stem: json.loads(p.read_text(encoding="utf-8"))
    for p in sorted((FIXTURES / "expected").glob("*.json"))
    if p.stem in SERVED
}
PATIENTS = sorted(p.stem for p in (FIXTURES / "patients").glob("*.json"))
CASES = [(service, name) for service, doc in EXPECTATIONS.items() for name in sorted(doc["patients"])]
UNLISTED = [
    (service, name) for service, doc in EXPECTATIONS.items() for name in PATIENTS if name not in doc["patients"]
]


def test_each_expectations_file_names_its_service_and_only_fixture_patients():
    assert EXPECTATIONS
    for service, doc in EXPECTATIONS.items():
        assert doc["service"] == service
        assert set(doc["patients"]) <= set(PATIENTS), set(doc["patients"]) - set(PATIENTS)


@pytest.mark.parametrize("service, name", CASES, ids=[f"{s}:{n}" for s, n in CASES])
def test_patient_gives_documented_statuses_with_prefetch(request, client, service, name):
    expected = EXPECTATIONS[service]["patients"][name]
    req = request_fixture(name)
    if expected.get("readsFhirServer"):  # part of its record (a note's attachment) is read from the EHR's server
        req["fhirServer"] = request.getfixturevalue("fhir_server").base_url
    body = call(client, req, service=service)
    assert len(body["cards"]) == 1
    assert statuses(body["cards"][0]) == expected["statuses"]
    assert body["cards"][0]["indicator"] == expected["indicator"]


@pytest.mark.parametrize("service, name", UNLISTED, ids=[f"{s}:{n}" for s, n in UNLISTED])
def test_a_patient_whose_orders_the_service_does_not_check_gets_no_cards(client, service, name):
    assert call(client, request_fixture(name), service=service) == {"cards": []}
