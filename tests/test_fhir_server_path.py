"""Without prefetch, the service fetches from a real FHIR server and reaches the same verdicts.

The server is sekmet-fhir (a real FHIR R4 server process, started by the test session) with every
fixture patient loaded as a transaction Bundle.
"""

import json

import pytest
import requests

from conftest import FIXTURES, request_fixture
from support.hooks import call, results

pytestmark = pytest.mark.fhir_server

# Every fixture patient with a card, for the service whose expectations list it (fhir_fixtures/expected/).
FUSION_PATIENTS = sorted(
    (p.stem, name)
    for p in (FIXTURES / "expected").glob("*.json")
    if (FIXTURES.parent / "cql" / p.stem / "pack.json").exists()
    for name in json.loads(p.read_text(encoding="utf-8"))["patients"]
)


def verdicts(body):
    """Everything in a response that must not depend on where the data came from."""
    out = []
    for card in body["cards"]:
        out.append(
            {
                "indicator": card["indicator"],
                "summary": card["summary"],
                "results": results(card),
                "suggestions": [s["label"] for s in card.get("suggestions", [])],
            }
        )
    return out


def fetched(name, fhir_server):
    req = request_fixture(name, prefetch=False)
    req["fhirServer"] = fhir_server.base_url
    return req


@pytest.mark.parametrize("service, name", FUSION_PATIENTS, ids=[f"{s}:{n}" for s, n in FUSION_PATIENTS])
def test_no_prefetch_gives_the_same_cards_as_full_prefetch(client, fhir_server, service, name):
    with_prefetch = request_fixture(name)
    with_prefetch["fhirServer"] = fhir_server.base_url  # what prefetch leaves out (a note's attachment) is read there
    with_prefetch = call(client, with_prefetch, service=service)
    without = call(client, fetched(name, fhir_server), service=service)
    assert verdicts(without) == verdicts(with_prefetch)
    assert without["extension"]["org.example.fusion-cds.evaluation"]["dataSource"] == "fetched"


def test_results_are_the_same_when_the_server_pages_every_few_resources(app, fhir_server):
    registry = app.extensions["cds_hooks"]
    evaluator = registry.get("lumbar-fusion")
    saved = evaluator.fetch_settings.page_size
    evaluator.fetch_settings.page_size = 2  # _count=2: seed has 6 Conditions -> 3 pages
    try:
        paged = call(app.test_client(), fetched("seed", fhir_server))
    finally:
        evaluator.fetch_settings.page_size = saved
    assert verdicts(paged) == verdicts(call(app.test_client(), request_fixture("seed")))


def test_page_cap_turns_a_source_that_pages_forever_into_unavailable(app, fhir_server):
    evaluator = app.extensions["cds_hooks"].get("lumbar-fusion")
    saved = (evaluator.fetch_settings.page_size, evaluator.fetch_settings.max_pages)
    evaluator.fetch_settings.page_size, evaluator.fetch_settings.max_pages = 1, 2
    try:
        body = call(app.test_client(), fetched("seed", fhir_server))
    finally:
        evaluator.fetch_settings.page_size, evaluator.fetch_settings.max_pages = saved
    statuses = {r["id"]: r["status"] for r in results(body["cards"][0]) if not r.get("level")}
    assert statuses["indication"] == "unavailable"  # six Conditions need six pages of one


def test_a_failing_resource_type_marks_only_its_criteria_unavailable(client, fhir_server):
    req = fetched("seed", fhir_server)
    # Prefetch everything but Procedure, and make the service fetch Procedure from a path the server rejects.
    full = request_fixture("seed")
    req["prefetch"] = {k: v for k, v in full["prefetch"].items() if k != "procedures"}
    req["fhirServer"] = fhir_server.base_url + "/no-such-base"
    card = call(client, req)["cards"][0]
    by_id = {r["id"]: r["status"] for r in results(card) if not r.get("level")}
    assert by_id["conservative-care"] == "unavailable"
    assert by_id["injection-trial"] == "unavailable"
    assert by_id["indication"] == "met"
    assert "Could not be checked" in card["detail"]


def test_the_fixture_server_really_holds_the_seed_record(fhir_server):
    r = requests.get(f"{fhir_server.base_url}/Condition", params={"patient": "seed-patient"}, timeout=10)
    assert r.status_code == 200 and r.json()["total"] == 6


def test_findings_read_from_report_text_are_never_written_to_the_ehr(client, fhir_server):
    """A copy of the seed patient without coded stenosis grades: the report text decides, and stays in the service."""
    from conftest import patient_bundle

    bundle = json.loads(json.dumps(patient_bundle("seed")).replace("seed-", "seedtext-"))
    bundle["entry"] = [
        e for e in bundle["entry"] if e["resource"]["id"] not in ("seedtext-stenosis-l5s1", "seedtext-stenosis-l4l5")
    ]
    fhir_server.load_bundle(bundle)
    req = json.loads(json.dumps(request_fixture("seed", prefetch=False)).replace("seed-", "seedtext-"))
    req["fhirServer"] = fhir_server.base_url
    card = call(client, req)["cards"][0]
    r = [r for r in results(card) if r["id"] == "imaging-severity"][0]
    assert r["status"] == "not-met" and [ref for ref in r["evidence"] if ref.startswith("Observation/derived-")]
    stored = requests.get(
        f"{fhir_server.base_url}/Observation", params={"patient": "seedtext-patient"}, timeout=10
    ).json()
    assert stored.get("total", 0) == 0 and not stored.get("entry")
