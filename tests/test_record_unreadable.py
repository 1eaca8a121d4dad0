"""A patient the EHR does not know gets no criterion verdicts: one info card says the record could not be read.

CDS Hooks 2.0, "Prefetch Data": `null` means the client found no data; an OperationOutcome means it
could not prefetch the key. A Patient read that is null, not found (issue code `not-found`, HTTP
404) or someone else's leaves nothing to check the criteria against.
"""

import pytest

from conftest import request_fixture
from support.hooks import call

VERDICT = "org.example.fusion-cds.verdict"
NOT_FOUND = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "not-found", "diagnostics": "Resource Patient/x is not known"}],
}


def assert_record_unreadable(body):
    (card,) = body["cards"]
    assert card["indicator"] == "info"
    assert card["summary"] == "Patient record could not be read — no criteria were checked"
    assert card["extension"] == {
        VERDICT: {
            "verdict": "record-unreadable",
            "pathway": None,
            "required": [],
            "unreadSources": ["Patient"],
            "suggestions": [],
        }
    }
    assert "suggestions" not in card
    for claim in ("unmet", "Not documented", "Met", "likely to fail"):
        assert claim not in card["summary"] + card["detail"]
    return card


def test_a_null_patient_prefetch_gets_the_record_unreadable_card(client, seed_request):
    seed_request["prefetch"]["patient"] = None
    card = assert_record_unreadable(call(client, seed_request))
    assert "no Patient resource came back" in card["detail"]


def test_a_patient_the_client_reports_not_found_gets_the_record_unreadable_card(client, seed_request):
    seed_request["prefetch"]["patient"] = NOT_FOUND
    card = assert_record_unreadable(call(client, seed_request))
    assert "no patient with this id exists" in card["detail"]


def test_clinical_data_without_its_patient_is_not_evaluated(client, seed_request):
    # Every other key still holds the seed's conditions, imaging and therapy.
    seed_request["prefetch"]["patient"] = None
    body = call(client, seed_request)
    assert_record_unreadable(body)
    assert "MRI" not in body["cards"][0]["detail"]


def test_a_patient_resource_of_another_patient_is_not_this_patients_record(client, seed_request):
    seed_request["prefetch"]["patient"] = dict(seed_request["prefetch"]["patient"], id="someone-else")
    card = assert_record_unreadable(call(client, seed_request))
    assert "another patient's" in card["detail"]


def test_a_patient_read_that_failed_for_another_reason_is_a_failed_source_not_an_unknown_patient(client, seed_request):
    seed_request["prefetch"]["patient"] = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "timeout"}],
    }
    (card,) = call(client, seed_request)["cards"]
    assert card["extension"][VERDICT]["verdict"] == "incomplete"
    assert card["extension"][VERDICT]["unreadSources"] == ["Patient"]
    assert "org.example.fusion-cds.criteria" in card["extension"]


def test_the_evaluator_in_process_answers_an_unknown_patient_without_running_the_criteria(app, seed_request):
    from cds_hooks.hooks.hook_request import parse_hook_request

    seed_request["prefetch"]["patient"] = None
    evaluator = app.extensions["cds_hooks"].get("lumbar-fusion")
    outcome = evaluator.evaluate(parse_hook_request(seed_request, "order-sign"))
    assert outcome.cases == [] and "engine" not in outcome.timings
    assert outcome.response["cards"][0]["extension"][VERDICT]["verdict"] == "record-unreadable"


@pytest.mark.fhir_server
def test_a_patient_the_fhir_server_does_not_have_gets_the_record_unreadable_card(client, fhir_server):
    req = request_fixture("seed", prefetch=False)
    req["fhirServer"] = fhir_server.base_url
    req["context"]["patientId"] = "no-such-patient"
    for order in (e["resource"] for e in req["context"]["draftOrders"]["entry"]):
        order["subject"] = {"reference": "Patient/no-such-patient"}
    assert_record_unreadable(call(client, req))
