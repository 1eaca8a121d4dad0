"""Note attachments by URL: fetched from the call's own FHIR server only, as a Binary read, within the
call's deadline (cds_hooks/pipeline/note_sources.py); the real-server test reads a Binary from sekmet."""

import base64
import json
import time
from dataclasses import replace

import pytest
import requests

from conftest import request_fixture

from cds_hooks.auth.outbound import FhirServerPolicy
from cds_hooks.config import Config
from cds_hooks.hooks.hook_request import parse_hook_request
from cds_hooks.pipeline.note_sources import binary_path, fetch_note_attachments
from cds_hooks.pipeline.patient_data import FetchSettings
from cds_hooks.web.extensions import registry_of

BASE = "https://ehr.example.org/fhir"


def test_a_relative_or_same_server_binary_url_is_a_binary_read():
    assert binary_path(BASE, "Binary/abc-1") == "Binary/abc-1"
    assert binary_path(BASE + "/", f"{BASE}/Binary/abc-1") == "Binary/abc-1"


@pytest.mark.parametrize(
    "url",
    [
        "https://other.example.org/fhir/Binary/abc",  # another origin
        "http://ehr.example.org/fhir/Binary/abc",  # another scheme
        "https://ehr.example.org:8443/fhir/Binary/abc",  # another port
        "https://ehr.example.org/other/Binary/abc",  # outside the FHIR base
        "Patient/abc",  # not a Binary
        "Binary/abc?_format=json",  # a search, not a read
        "../../Binary/abc",
        "//other.example.org/fhir/Binary/abc",
    ],
)
def test_any_other_url_is_never_requested(url):
    assert binary_path(BASE, url) is None


class RecordingClient:
    def __init__(self):
        self.paths = []

    def read(self, path):
        self.paths.append(path)
        return {
            "resourceType": "Binary",
            "contentType": "text/plain",
            "data": base64.b64encode(b"Vapes daily.").decode("ascii"),
        }


def settings(**changes):
    return replace(FetchSettings.from_config(Config.development()), **changes)


def _request(fhir_server=BASE):
    body = request_fixture("seed", prefetch=False)
    body["fhirServer"] = fhir_server
    return parse_hook_request(body, "order-sign")


def _doc(url):
    return {
        "resourceType": "DocumentReference",
        "id": "d1",
        "content": [{"attachment": {"contentType": "text/plain", "url": url}}],
    }


def test_only_the_same_server_attachment_is_fetched():
    client = RecordingClient()
    docs = [_doc("https://other.example.org/fhir/Binary/x"), {**_doc("Binary/y"), "id": "d2"}]
    got = fetch_note_attachments(_request(), docs, settings(), time.monotonic(), client=client)
    assert client.paths == ["Binary/y"] and got == {("d2", 0): ("Vapes daily.", "text/plain")}


def test_nothing_is_fetched_once_the_deadline_has_passed():
    client = RecordingClient()
    got = fetch_note_attachments(
        _request(), [_doc("Binary/y")], settings(deadline=1.0), time.monotonic() - 5, client=client
    )
    assert client.paths == [] and got == {}


def test_nothing_is_fetched_from_a_server_not_on_the_allowlist():
    only_trusted = settings(policy=FhirServerPolicy(servers=("https://trusted.example.org/fhir",)))
    assert fetch_note_attachments(_request(), [_doc("Binary/y")], only_trusted, time.monotonic()) == {}


NOTE_TEXT = (
    "PHYSICAL THERAPY DISCHARGE SUMMARY\nDiagnosis: lumbar radiculopathy\n"
    "Visits attended: 11/12\nDates of service: 11/18/2025 - 01/27/2026\nPt independent with HEP."
)


def _notes_bundle():
    """The seed patient's record with a PT discharge summary whose text is a Binary on the same server."""
    from conftest import patient_bundle

    bundle = json.loads(json.dumps(patient_bundle("seed")).replace("seed-", "seednote-"))
    binary = {
        "resourceType": "Binary",
        "id": "seednote-pt-summary-text",
        "contentType": "text/plain",
        "data": base64.b64encode(NOTE_TEXT.encode("utf-8")).decode("ascii"),
    }
    doc = {
        "resourceType": "DocumentReference",
        "id": "seednote-pt-summary",
        "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "18842-5", "display": "Discharge summary"}]},
        "category": [
            {
                "coding": [
                    {
                        "system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
                        "code": "clinical-note",
                    }
                ]
            }
        ],
        "subject": {"reference": "Patient/seednote-patient"},
        "date": "2026-02-10T09:00:00Z",
        "content": [{"attachment": {"contentType": "text/plain", "url": "Binary/seednote-pt-summary-text"}}],
    }
    for r in (binary, doc):
        bundle["entry"].append({"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}})
    return bundle


@pytest.mark.fhir_server
def test_a_note_is_fetched_by_attachment_url_from_the_real_fhir_server_and_read(app, fhir_server):
    fhir_server.load_bundle(_notes_bundle())
    body = json.loads(json.dumps(request_fixture("seed", prefetch=False)).replace("seed-", "seednote-"))
    body["fhirServer"] = fhir_server.base_url
    evaluator = registry_of(app).get("lumbar-fusion")
    outcome = evaluator.evaluate(parse_hook_request(body, "order-sign"))
    assert "DocumentReference" not in outcome.data.failed_types
    derived = [
        o for o in outcome.data.derived if o["derivedFrom"] == [{"reference": "DocumentReference/seednote-pt-summary"}]
    ]
    pt = [o for o in derived if o["code"]["coding"][0]["code"] == "pt-attendance"]
    assert len(pt) == 1 and pt[0]["valueInteger"] == 11
    assert pt[0]["effectivePeriod"] == {"start": "2025-11-18", "end": "2026-01-27"}
    # Derived, never written back: the server still holds no Observation for the patient.
    stored = requests.get(
        f"{fhir_server.base_url}/Observation", params={"patient": "seednote-patient"}, timeout=10
    ).json()
    assert stored.get("total", 0) == 0 and not stored.get("entry")
