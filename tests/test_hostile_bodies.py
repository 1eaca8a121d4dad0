"""Hostile and malformed bodies: each answers a 400 that names the field, never a 5xx, and every refused
hook call still leaves its audit row (on SQLite and PostgreSQL).

JSON is RFC 8259: UTF-8 only, no NaN or Infinity, one value per key; text holds no NUL and no lone
surrogate; the FHIR elements the engine reads have their FHIR JSON types (web/fhir_types.py).
"""

from __future__ import annotations

import copy
import json
import time
import uuid

import pytest

from cds_hooks.audit.schema import audit_call
from support.audit_db import rows
from support.hooks import SERVICE

FEEDBACK = SERVICE + "/feedback"


def post(client, data: bytes, path: str = SERVICE, content_type: str = "application/json"):
    return client.post(path, data=data, headers={"Content-Type": content_type})


def first(request: dict, key: str) -> dict:
    return request["prefetch"][key]["entry"][0]["resource"]


def the_order(request: dict) -> dict:
    return request["context"]["draftOrders"]["entry"][0]["resource"]


def refused(response, code: str, field: str | None = None) -> dict:
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert body["error"] == code, body
    if field is not None:
        assert field in body["message"], body
    return body


# ---- the JSON itself ------------------------------------------------------------------------------


def test_a_body_that_repeats_a_key_is_refused_naming_the_key(client, seed_request):
    text = json.dumps(seed_request)
    # Two patientIds in one context: which one the service would evaluate is the parser's whim.
    text = text.replace('"patientId": ', '"patientId": "someone-else", "patientId": ', 1)
    refused(post(client, text.encode()), "malformed-json", "patientId")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json_numbers(client, seed_request, constant):
    text = json.dumps(seed_request)[:-1] + f', "x": {constant}}}'
    refused(post(client, text.encode()), "malformed-json")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_a_utf16_or_utf32_body_is_refused(client, seed_request, encoding):
    refused(post(client, json.dumps(seed_request).encode(encoding)), "malformed-json", "UTF-8")


def test_a_latin1_body_is_refused(client, seed_request):
    seed_request["context"]["draftOrders"]["entry"][0]["resource"]["code"]["text"] = "Arthrodèse"
    refused(post(client, json.dumps(seed_request, ensure_ascii=False).encode("latin-1")), "malformed-json", "UTF-8")


# ---- NUL and lone surrogates -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "where, set_it",
    [
        ("hookInstance", lambda r, v: r.__setitem__("hookInstance", v)),
        ("context.userId", lambda r, v: r["context"].__setitem__("userId", v)),
        ("context.draftOrders.entry[0].resource.code.text", lambda r, v: the_order(r)["code"].__setitem__("text", v)),
        (
            "prefetch.conditions.entry[0].resource.code.text",
            lambda r, v: first(r, "conditions")["code"].__setitem__("text", v),
        ),
    ],
)
@pytest.mark.parametrize(
    "bad", ["\\ud800", "abc\\udfff", "\\u0000", "a\\u0000b"], ids=["lone-high", "lone-low", "nul", "nul-inside"]
)
def test_a_nul_or_a_lone_surrogate_in_text_is_a_400_naming_the_field(
    audit_client, audit_store, seed_request, where, set_it, bad
):
    marker = "MARKER-" + uuid.uuid4().hex
    set_it(seed_request, marker)
    text = json.dumps(seed_request).replace(marker, bad)  # the escape as a client would send it
    refused(post(audit_client, text.encode()), "invalid-text", where)
    (row,) = [r for r in rows(audit_store.engine, audit_call)]
    assert row["status"] == 400 and row["error_code"] == "invalid-text"


def test_an_escaped_surrogate_pair_is_ordinary_text(client, seed_request):
    the_order(seed_request)["code"]["text"] = "MARKER"
    text = json.dumps(seed_request).replace("MARKER", "fusion \\ud83e\\uddb4")
    assert post(client, text.encode()).status_code == 200


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda e: e.__setitem__("card", e["card"] + "\\u0000"), "feedback[0].card"),
        (
            lambda e: e.setdefault("overrideReason", {}).__setitem__("userComment", "\\ud800"),
            "feedback[0].overrideReason.userComment",
        ),
    ],
)
def test_feedback_with_a_nul_or_a_lone_surrogate_is_a_400(audit_client, audit_store, mutate, field):
    entry = {"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": "2026-09-10T14:03:00Z"}
    mutate(entry)
    text = json.dumps({"feedback": [entry]}).replace("\\\\", "\\")
    refused(post(audit_client, text.encode(), FEEDBACK), "invalid-text", field)


def test_a_nul_in_the_url_still_leaves_the_calls_audit_row(audit_client, audit_store, seed_request):
    r = audit_client.post("/cds-services/lumbar%00fusion", json=seed_request)
    assert r.status_code == 404
    (row,) = rows(audit_store.engine, audit_call)
    assert row["status"] == 404 and "\x00" not in row["service_id"]


# ---- FHIR element types the engine reads -----------------------------------------------------------

WRONG_TYPES = {
    "a dateTime as a number": (
        lambda r: first(r, "conditions").__setitem__("onsetDateTime", 20260101),
        "prefetch.conditions.entry[0].resource.onsetDateTime",
    ),
    "a dateTime that is no date": (
        lambda r: first(r, "procedures").__setitem__("performedDateTime", "last spring"),
        "prefetch.procedures.entry[0].resource.performedDateTime",
    ),
    "a report date as a number": (
        lambda r: first(r, "diagnosticReports").__setitem__("effectiveDateTime", 1),
        "prefetch.diagnosticReports.entry[0].resource.effectiveDateTime",
    ),
    "a coding's code as a number": (
        lambda r: first(r, "conditions")["code"]["coding"][0].__setitem__("code", 4806),
        "prefetch.conditions.entry[0].resource.code.coding[0].code",
    ),
    "coding as an object": (
        lambda r: first(r, "conditions")["code"].__setitem__("coding", {"code": "M48.06"}),
        "prefetch.conditions.entry[0].resource.code.coding",
    ),
    "a CodeableConcept as a string": (
        lambda r: first(r, "conditions").__setitem__("clinicalStatus", "active"),
        "prefetch.conditions.entry[0].resource.clinicalStatus",
    ),
    "an order's code as a number": (
        lambda r: the_order(r)["code"]["coding"][0].__setitem__("code", 22558),
        "context.draftOrders.entry[0].resource.code.coding[0].code",
    ),
    "an order's bodySite as a string": (
        lambda r: the_order(r).__setitem__("bodySite", "L5-S1"),
        "context.draftOrders.entry[0].resource.bodySite",
    ),
}


@pytest.mark.parametrize("name", WRONG_TYPES)
def test_a_wrongly_typed_fhir_element_is_a_400_naming_it_and_is_recorded(audit_client, audit_store, seed_request, name):
    mutate, field = WRONG_TYPES[name]
    mutate(seed_request)
    refused(audit_client.post(SERVICE, json=seed_request), "invalid-fhir", field)
    (row,) = rows(audit_store.engine, audit_call)
    assert row["status"] == 400 and row["hook_instance"] == seed_request["hookInstance"]


def test_elements_the_model_does_not_know_are_left_alone(client, seed_request):
    first(seed_request, "conditions")["_onsetDateTime"] = {"extension": []}
    first(seed_request, "conditions")["vendorField"] = 7
    assert client.post(SERVICE, json=seed_request).status_code == 200


# ---- work per call -----------------------------------------------------------------------------------


def with_orders(request: dict, count: int, distinct_dates: bool = False) -> dict:
    entry = request["context"]["draftOrders"]["entry"][0]
    entries = []
    for i in range(count):
        e = copy.deepcopy(entry)
        e["resource"]["id"] = f"order-{i}"
        if distinct_dates:
            e["resource"]["occurrenceDateTime"] = f"2027-{1 + i // 28:02d}-{1 + i % 28:02d}"
        entries.append(e)
    request["context"]["draftOrders"]["entry"] = entries
    return request


def test_more_orders_than_one_call_may_carry_is_a_400_at_once(client, app, seed_request):
    limit = app.extensions["cds_hooks"].config.max_orders_per_call
    t0 = time.monotonic()
    body = refused(client.post(SERVICE, json=with_orders(seed_request, 1800)), "too-much-work", "context.draftOrders")
    assert time.monotonic() - t0 < 3.0
    assert str(limit) in body["message"]


def test_more_cases_than_one_call_may_ask_for_is_a_400(engine, tmp_path, seed_request):
    from cds_hooks.config import Config
    from cds_hooks.web.app import create_app

    app = create_app(Config.development(var_dir=tmp_path, max_cases_per_call=2), engine=engine)
    r = app.test_client().post(SERVICE, json=with_orders(seed_request, 3, distinct_dates=True))
    refused(r, "too-much-work", "surgical cases")


def test_an_answer_larger_than_the_response_limit_is_a_400(engine, tmp_path, seed_request):
    from cds_hooks.config import Config
    from cds_hooks.web.app import create_app

    app = create_app(Config.development(var_dir=tmp_path, max_response_bytes=10_000), engine=engine)
    # Three cases of the seed: three cards, well over the smallest limit a site can set.
    request = with_orders(seed_request, 3, distinct_dates=True)
    refused(app.test_client().post(SERVICE, json=request), "too-much-work", "bytes")


def test_the_seed_case_is_well_inside_every_work_limit(client, seed_request):
    assert client.post(SERVICE, json=with_orders(seed_request, 2)).status_code == 200
