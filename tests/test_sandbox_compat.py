"""What the public CDS Hooks sandbox sends gets a correct answer.

The sandbox's order-sign screen signs medication orders only: its request carries one draft
MedicationRequest in a Bundle without `type`, prefetch for the keys it could fetch (and none for the
rest), and no `fhirAuthorization` unless the user went through a SMART launch. This service has
nothing to say about a medication, so the answer is an empty card list, and it must not touch the
FHIR server to reach it. fhir_fixtures/requests/sandbox/medication-order-sign.json is such a request.
"""

import copy
import json
import re

import pytest

from cds_hooks.web.app import create_app
from cds_hooks.config import Config
from conftest import FIXTURES, load_json
from support.hooks import SERVICE, call
from support.live import LiveServer

SANDBOX_REQUEST = FIXTURES / "requests" / "sandbox" / "medication-order-sign.json"
# Tokens the sandbox fills in prefetch templates (it resolves context fields and the user ids).
SANDBOX_TOKENS = {
    "context.patientId",
    "context.userId",
    "context.encounterId",
    "userPractitionerId",
    "userPractitionerRoleId",
    "userPatientId",
    "userRelatedPersonId",
}


@pytest.fixture()
def sandbox_request():
    return copy.deepcopy(load_json(SANDBOX_REQUEST))


def test_the_sandbox_medication_order_sign_gets_an_empty_valid_response(client, sandbox_request):
    assert sandbox_request["context"]["draftOrders"].get("type") is None  # as the sandbox sends it
    assert call(client, sandbox_request) == {"cards": []}


def _refuse(environ, start_response):
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"this FHIR server should not have been called"]


def test_the_answer_needs_no_fhir_access(engine, sandbox_request):
    recorder = LiveServer(_refuse).start()
    try:
        app = create_app(Config.development(), engine=engine)
        sandbox_request["fhirServer"] = f"{recorder.url}/fhir"
        del sandbox_request["prefetch"]  # even with nothing prefetched
        assert call(app.test_client(), sandbox_request) == {"cards": []}
    finally:
        recorder.stop()
    assert recorder.seen == []


def test_the_answer_is_the_same_with_the_sandbox_s_default_headers(client, sandbox_request):
    response = client.post(
        SERVICE,
        data=json.dumps(sandbox_request),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    assert response.status_code == 200 and response.get_json() == {"cards": []}


def test_discovery_gives_the_sandbox_every_field_it_reads(client):
    services = client.get("/cds-services").get_json()["services"]
    for service in services:
        assert {"hook", "id", "title", "description", "prefetch"} <= set(service)


def test_every_prefetch_template_uses_only_tokens_the_sandbox_fills(client):
    for service in client.get("/cds-services").get_json()["services"]:
        for template in service["prefetch"].values():
            tokens = set(re.findall(r"\{\{\s*([^}\s]+)\s*\}\}", template))
            assert tokens <= SANDBOX_TOKENS, template
