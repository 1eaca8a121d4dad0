"""The long-history patient of the benchmark: about 500 resources, and the seed's answer."""

from __future__ import annotations

import json

from benchmarks.long_history import patient_bundle, requests_for
from support.hooks import statuses

from test_cli import SEED_STATUSES


def test_the_record_holds_about_five_hundred_resources():
    assert 450 <= len(patient_bundle()["entry"]) <= 550


def test_the_record_is_the_same_every_time():
    assert json.dumps(patient_bundle()) == json.dumps(patient_bundle())


def test_every_resource_belongs_to_the_long_history_patient():
    refs = {
        json.dumps(e["resource"].get("subject") or e["resource"].get("patient") or e["resource"].get("beneficiary"))
        for e in patient_bundle()["entry"]
        if e["resource"]["resourceType"] not in ("Patient", "Practitioner")
    }
    assert refs == {json.dumps({"reference": "Patient/lh-patient"})}


def test_the_service_gives_the_seed_statuses_for_it(client):
    with_prefetch, _ = requests_for(patient_bundle(), "http://127.0.0.1:9/fhir")
    response = client.post("/cds-services/lumbar-fusion", json=with_prefetch)
    assert response.status_code == 200
    assert statuses(response.get_json()["cards"][0]) == SEED_STATUSES
