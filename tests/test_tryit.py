"""The try-it page's server side: off unless configured, and the order-sign requests it prepares.

The page itself is tested in a real browser (test_tryit_browser.py); here the HTTP API it uses.
"""

import re

import pytest

from cds_hooks.web.app import create_app
from cds_hooks.config import Config
from cds_hooks.sandbox.fixtures import fixture_prefetch, load_fixture
from conftest import FIXTURES, request_fixture
from support.hooks import call, resources, statuses

SEED_STATUSES = {
    "indication": "met",
    "imaging-severity@L5-S1": "not-met",
    "conservative-care": "not-met",
    "instability@L5-S1": "not-documented",
    "injection-trial": "met",
    "neuropathic-medication": "not-documented",
    "facet-evaluation": "not-documented",
    "nicotine": "not-documented",
    "red-flags": "not-documented",
}
SEED_ORDER = {
    "service": "lumbar-fusion",
    "patient": "fixture:seed",
    "cpt": "22558",
    "levels": ["L5-S1"],
    "priority": "routine",
    "date": "2026-12-14",
}


def prepared(client, **changes) -> dict:
    response = client.post("/try/api/request", json={**SEED_ORDER, **changes})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["request"]


def test_the_page_is_off_unless_configured(engine):
    app = create_app(Config.from_env(auth_disabled=True), engine=engine)
    client = app.test_client()
    assert client.get("/try/").status_code == 404
    assert client.post("/try/api/request", json=SEED_ORDER).status_code == 404


def test_development_serves_the_page_with_a_policy_that_forbids_other_origins(client):
    response = client.get("/try/")
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_page_references_nothing_outside_the_service(client):
    html = client.get("/try/").get_data(as_text=True)
    for ref in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert not re.match(r"^[a-z]+://", ref) and not ref.startswith("//"), ref
    for asset in ("tryit.js", "markdown.js", "tryit.css"):
        response = client.get(f"/try/static/{asset}")
        assert response.status_code == 200
        # The markdown bundle's libraries name URLs in strings and licence comments; what the page
        # actually loads is checked in the browser (test_tryit_browser.py) and forbidden by CSP.
        if asset != "markdown.js":
            assert not re.search(r"https?://", response.get_data(as_text=True)), asset


def test_the_seed_request_gets_the_seed_card(client):
    request = prepared(client)
    assert request["hook"] == "order-sign" and request["context"]["patientId"] == "seed-patient"
    (card,) = call(client, request)["cards"]
    assert statuses(card) == SEED_STATUSES
    assert card["indicator"] == "warning"


def test_bundled_prefetch_is_the_committed_seed_request_prefetch(app):
    templates = app.extensions["cds_hooks"].get("lumbar-fusion").pack.prefetch
    built = fixture_prefetch(load_fixture(FIXTURES, "seed"), templates, {"patientId": "seed-patient"})
    committed = request_fixture("seed")["prefetch"]
    assert set(built) == set(committed)
    as_set = lambda prefetch: {(r["resourceType"], r["id"]) for r in resources({"prefetch": prefetch})}  # noqa: E731
    assert as_set(built) == as_set(committed)
    for key in committed:
        if key != "patient":
            assert built[key]["total"] == committed[key]["total"], key


def test_an_edited_order_changes_the_case(client):
    request = prepared(client, levels=["L4-L5"], cpt="22630", priority="urgent")
    (order,) = [e["resource"] for e in request["context"]["draftOrders"]["entry"]]
    assert order["code"]["coding"][0]["code"] == "22630" and order["priority"] == "urgent"
    (card,) = call(client, request)["cards"]
    assert card["summary"].startswith("Urgent L4-L5 PLIF/TLIF (22630)")
    assert "imaging-severity@L4-L5" in statuses(card)


def test_patients_and_order_choices_come_from_the_fixtures_and_rule_packs(client):
    patients = client.get("/try/api/patients").get_json()
    seed = next(p for p in patients["patients"] if p["key"] == "fixture:seed")
    assert seed["patientId"] == "seed-patient"
    assert seed["order"] == {"cpt": "22558", "levels": ["L5-S1"], "priority": "routine", "date": "2026-12-14"}
    assert seed["ordersText"] == "1 order: L5-S1 anterior lumbar interbody fusion (ALIF)"
    case360 = next(p for p in patients["patients"] if p["key"] == "fixture:case-360")
    assert case360["order"]["levels"] == ["L4-L5", "L5-S1"]  # every level of the case
    assert {p["source"] for p in patients["patients"]} == {"fixture"} and patients["fhirServer"] is None
    orders = client.get("/try/api/orders").get_json()
    assert {"22558", "22612", "22630", "22633", "22585"} <= {o["code"] for o in orders["orders"]}
    assert orders["services"]["lumbar-fusion"]["levels"] == ["T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
    assert {"22558", "22630"} <= {o["code"] for o in orders["services"]["lumbar-fusion"]["orders"]}


def test_each_fixture_names_the_service_whose_pack_claims_its_orders(client):
    patients = {p["key"]: p for p in client.get("/try/api/patients").get_json()["patients"]}
    assert patients["fixture:seed"]["service"] == "lumbar-fusion"
    assert patients["fixture:cervical-seed"]["service"] == "cervical-fusion"
    assert patients["fixture:non-fusion"]["service"] is None


def test_the_levels_offered_for_a_service_are_those_of_its_spinal_region(client):
    services = client.get("/try/api/orders").get_json()["services"]
    assert services["cervical-fusion"]["levels"] == ["C2-C3", "C3-C4", "C4-C5", "C5-C6", "C6-C7", "C7-T1"]
    cervical_codes = {o["code"] for o in services["cervical-fusion"]["orders"]}
    assert "22551" in cervical_codes and "22558" not in cervical_codes  # an ACDF, not an ALIF


def test_a_fixture_s_orders_can_be_signed_as_written(client):
    request = prepared(client, patient="fixture:case-360", asWritten=True)
    assert request["context"]["draftOrders"] == load_fixture(FIXTURES, "case-360").orders
    (card,) = call(client, request)["cards"]
    assert statuses(card)["instability@L4-L5"] == "not-met" and card["indicator"] == "warning"


def test_the_non_fusion_fixture_as_written_gets_no_cards(client):
    assert call(client, prepared(client, patient="fixture:non-fusion", asWritten=True)) == {"cards": []}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"patient": "fixture:nobody"}, "no fixture patient"),
        ({"patient": "fhir:seed-patient"}, "one of the patients the page lists"),
        ({"levels": []}, "at least one level"),
        ({"levels": ["C5-C6"]}, "C5-C6 is not a level of this service"),
        ({"service": "knee"}, "service must name a service"),
        ({"priority": "whenever"}, "priority must be one of"),
        ({"date": "14/12/2026"}, "is not a date"),
        ({"patient": "fhir:seed-patient", "asWritten": True}, "one of the patients the page lists"),
    ],
    ids=[
        "unknown-fixture",
        "fhir-patient-without-server",
        "no-level",
        "cervical-level",
        "unknown-service",
        "bad-priority",
        "bad-date",
        "as-written-without-fixture",
    ],
)
def test_bad_choices_get_a_clear_json_error(client, change, message):
    response = client.post("/try/api/request", json={**SEED_ORDER, **change})
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "invalid-tryit-request" and message in body["message"]


def test_a_body_that_is_not_json_gets_a_json_error(client):
    response = client.post("/try/api/request", data="not json", content_type="application/json")
    assert response.status_code == 400 and response.get_json()["error"] == "invalid-tryit-request"


@pytest.mark.fhir_server
def test_a_configured_fhir_server_adds_its_patients_and_prefetches_from_it(engine, fhir_server):
    app = create_app(Config.development(tryit_fhir_server=fhir_server.base_url), engine=engine)
    client = app.test_client()
    patients = client.get("/try/api/patients").get_json()
    assert patients["fhirServer"] == fhir_server.base_url and patients["fhirError"] is None
    assert "fhir:seed-patient" in {p["key"] for p in patients["patients"]}
    request = prepared(client, patient="fhir:seed-patient")
    assert request["fhirServer"] == fhir_server.base_url
    assert {(r["resourceType"], r["id"]) for r in resources(request)} == {
        (r["resourceType"], r["id"]) for r in resources(request_fixture("seed"))
    }
    assert statuses(call(client, request)["cards"][0]) == SEED_STATUSES


@pytest.mark.fhir_server
def test_without_prefetch_the_service_fetches_from_the_configured_server(engine, fhir_server):
    app = create_app(Config.development(tryit_fhir_server=fhir_server.base_url), engine=engine)
    client = app.test_client()
    request = prepared(client, patient="fhir:seed-patient", prefetch=False)
    assert "prefetch" not in request
    body = call(client, request)
    assert body["extension"]["org.example.fusion-cds.evaluation"]["dataSource"] == "fetched"
    assert statuses(body["cards"][0]) == SEED_STATUSES


def test_an_unreachable_configured_server_is_reported_and_fixtures_stay_available(engine):
    app = create_app(Config.development(tryit_fhir_server="http://127.0.0.1:9/fhir", fhir_timeout=1.0), engine=engine)
    patients = app.test_client().get("/try/api/patients").get_json()
    assert "could not list patients on http://127.0.0.1:9/fhir" in patients["fhirError"]
    assert "fixture:seed" in {p["key"] for p in patients["patients"]}
