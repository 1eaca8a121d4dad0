"""The audit trail (Da Vinci CRD "Auditing"): every hook call is recorded, with enough to reproduce
what the user saw, and nothing identifying a patient in the clear. Runs on SQLite and PostgreSQL."""

import copy
import hashlib
import hmac
import base64

from sqlalchemy import text

from cds_hooks.audit.schema import audit_call, audit_card, audit_criterion, audit_suggestion
from support.audit_db import PSEUDONYM_KEY, raw_dump, rows
from support.hooks import SERVICE, call, statuses

ACTOR = "test-reader"


def the_call(store, hook_instance):
    (found,) = [r for r in rows(store.engine, audit_call) if r["hook_instance"] == hook_instance]
    return found


def test_a_successful_call_is_recorded_with_its_status_timings_and_source(audit_client, audit_store, seed_request):
    call(audit_client, seed_request)
    row = the_call(audit_store, seed_request["hookInstance"])
    assert row["service_id"] == "lumbar-fusion" and row["hook"] == "order-sign"
    assert row["status"] == 200 and row["error_code"] is None and row["error_class"] is None
    assert row["user_ref"] == "Practitioner/surgeon-1"
    assert row["data_origin"] == "prefetch" and row["unavailable_sources"] == []
    assert row["card_count"] == 1
    assert row["duration_ms"] > 0
    assert set(row["timings"]) == {"orders", "data", "report_text", "note_text", "engine", "cards"}


def test_each_card_is_recorded_with_profile_codes_levels_and_criterion_results(audit_client, audit_store, seed_request):
    card = call(audit_client, seed_request)["cards"][0]
    (stored,) = rows(audit_store.engine, audit_card)
    assert stored["uuid"] == card["uuid"] and stored["indicator"] == card["indicator"] == "warning"
    assert stored["order_codes"] == ["22558"] and stored["levels"] == ["L5-S1"]
    assert stored["profile"] and stored["profile_version"]
    assert stored["required_unmet"] == 3
    recorded = {
        (f"{r['criterion']}@{r['level']}" if r["level"] else r["criterion"]): r["status"]
        for r in rows(audit_store.engine, audit_criterion)
    }
    assert recorded == statuses(card)


def test_each_suggestion_is_recorded_with_its_uuid_and_label(audit_client, audit_store, seed_request):
    card = call(audit_client, seed_request)["cards"][0]
    stored = sorted(rows(audit_store.engine, audit_suggestion), key=lambda r: r["position"])
    assert [(s["uuid"], s["label"]) for s in stored] == [(s["uuid"], s["label"]) for s in card["suggestions"]]
    assert all(s["card_uuid"] == card["uuid"] for s in stored)


def test_the_stored_response_is_exactly_what_the_caller_received(audit_client, audit_store, seed_request):
    body = call(audit_client, seed_request)
    (document,) = audit_store.show(seed_request["hookInstance"], ACTOR)
    assert document["response"] == body


def test_the_stored_record_names_the_draft_orders_profile_and_evidence(audit_client, audit_store, seed_request):
    card = call(audit_client, seed_request)["cards"][0]
    (document,) = audit_store.show(card["uuid"], ACTOR)
    assert document["request"]["context"]["draftOrders"] == seed_request["context"]["draftOrders"]
    (case,) = document["cases"]
    assert case["card"] == card["uuid"] and case["codes"] == ["22558"] and case["levels"] == ["L5-S1"]
    assert case["profile"]["name"] and case["profile"]["version"]
    injection = next(c for c in case["criteria"] if c["id"] == "injection-trial")
    assert injection["status"] == "met" and injection["evidence"]
    manifest = {m["reference"] for m in document["resources"]}
    assert set(injection["evidence"]) <= manifest
    # every prefetch key, and the completed questionnaires the client did not prefetch (no data)
    assert {s["key"] for s in document["sources"]} == set(seed_request["prefetch"]) | {"questionnaireResponses"}


def test_the_patient_id_is_stored_only_as_a_keyed_pseudonym(audit_client, audit_store, seed_request):
    call(audit_client, seed_request)
    patient_id = seed_request["context"]["patientId"]
    expected = hmac.new(base64.b64decode(PSEUDONYM_KEY), patient_id.encode(), hashlib.sha256).hexdigest()
    assert the_call(audit_store, seed_request["hookInstance"])["patient_pseudonym"] == expected
    assert patient_id.encode() not in raw_dump(audit_store.engine)


def test_calls_for_one_patient_share_the_pseudonym(audit_client, audit_store, seed_request):
    second = copy.deepcopy(seed_request)
    second["hookInstance"] = "second-call-same-patient"
    call(audit_client, seed_request)
    call(audit_client, second)
    a, b = the_call(audit_store, seed_request["hookInstance"]), the_call(audit_store, "second-call-same-patient")
    assert a["patient_pseudonym"] == b["patient_pseudonym"]


def test_patient_data_in_the_response_is_not_stored_in_the_clear(audit_client, audit_store, seed_request):
    card = call(audit_client, seed_request)["cards"][0]
    dump = raw_dump(audit_store.engine)
    # The card's detail quotes the MRI impression from the patient's record.
    assert card["detail"][:200].encode() not in dump
    assert b"impression" not in dump


def test_the_access_token_is_never_stored(audit_client, audit_store, seed_request):
    token = seed_request["fhirAuthorization"]["access_token"]
    call(audit_client, seed_request)
    (document,) = audit_store.show(seed_request["hookInstance"], ACTOR)
    assert token not in repr(document)
    assert document["request"]["fhirAuthorization"] == {
        "token_type": "Bearer",
        "scope": "patient/*.read",
        "subject": "fusion-cds",
    }
    assert token.encode() not in raw_dump(audit_store.engine)


def test_a_rejected_request_is_recorded_with_its_status_and_error(audit_client, audit_store, seed_request):
    seed_request["context"].pop("userId")
    r = audit_client.post(SERVICE, json=seed_request)
    assert r.status_code == 400
    row = the_call(audit_store, seed_request["hookInstance"])
    assert (row["status"], row["error_code"], row["error_class"]) == (400, "invalid-request", "InvalidRequest")
    assert row["card_count"] == 0
    (document,) = audit_store.show(seed_request["hookInstance"], ACTOR)
    assert document["response"] == r.get_json()


def test_malformed_json_is_recorded(audit_client, audit_store):
    r = audit_client.post(SERVICE, data="{not json", content_type="application/json")
    assert r.status_code == 400
    (row,) = rows(audit_store.engine, audit_call)
    assert (row["status"], row["error_code"], row["hook_instance"]) == (400, "malformed-json", None)


def test_a_call_to_an_unknown_service_is_recorded_as_404(audit_client, audit_store, seed_request):
    assert audit_client.post("/cds-services/no-such-service", json=seed_request).status_code == 404
    (row,) = rows(audit_store.engine, audit_call)
    assert (row["service_id"], row["status"], row["error_code"]) == ("no-such-service", 404, "unknown-service")


def test_a_call_without_any_patient_data_is_recorded_with_the_failed_sources(audit_client, audit_store, seed_request):
    seed_request.pop("prefetch")
    seed_request.pop("fhirServer")
    assert audit_client.post(SERVICE, json=seed_request).status_code == 412
    row = the_call(audit_store, seed_request["hookInstance"])
    assert (row["status"], row["error_code"], row["error_class"]) == (412, "no-data", "PrefetchIncomplete")
    assert "Condition" in row["unavailable_sources"] and "Procedure" in row["unavailable_sources"]


def test_an_operation_outcome_prefetch_key_is_recorded_as_unavailable(audit_client, audit_store, seed_request):
    seed_request["prefetch"]["procedures"] = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "exception"}],
    }
    call(audit_client, seed_request)
    assert the_call(audit_store, seed_request["hookInstance"])["unavailable_sources"] == ["Procedure"]


def test_when_the_audit_row_cannot_be_written_the_caller_gets_503_and_no_cards(audit_client, audit_store, seed_request):
    engine = audit_store.engine
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_criterion RENAME TO audit_criterion_away"))
    try:
        r = audit_client.post(SERVICE, json=seed_request)
    finally:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE audit_criterion_away RENAME TO audit_criterion"))
    assert r.status_code == 503 and r.get_json()["error"] == "audit-unavailable"
    assert "cards" not in r.get_json()
    # The call's transaction was rolled back as a whole: no half-written call.
    assert rows(engine, audit_call) == [] and rows(engine, audit_card) == []


def test_reading_a_call_is_written_to_the_access_log(audit_client, audit_store, seed_request):
    call(audit_client, seed_request)
    audit_store.show(seed_request["hookInstance"], "dr-audit@host", purpose="dispute 42")
    (entry,) = audit_store.access_entries()
    assert entry["actor"] == "dr-audit@host" and entry["command"] == "show" and entry["records"] == 1
    assert "dispute 42" in entry["detail"]


def test_a_body_over_the_size_limit_is_recorded_as_413(audit_client, audit_store):
    limit = audit_client.application.config["MAX_CONTENT_LENGTH"]
    r = audit_client.post(SERVICE, data=b"{" + b" " * limit + b"}", content_type="application/json")
    assert r.status_code == 413
    (row,) = rows(audit_store.engine, audit_call)
    assert (row["status"], row["error_code"]) == (413, "too-large")


def test_a_call_is_found_by_call_id_card_suggestion_or_hook_instance(audit_client, audit_store, seed_request):
    card = call(audit_client, seed_request)["cards"][0]
    call_id = the_call(audit_store, seed_request["hookInstance"])["id"]
    for ident in (call_id, card["uuid"], card["suggestions"][1]["uuid"], seed_request["hookInstance"]):
        assert audit_store.find_calls(ident) == [call_id], ident
    assert audit_store.find_calls("nothing-like-it") == []


# ------------------------------------------------------------------ when the commit waits for the disk


def _durability_of_each_write(audit_app, monkeypatch):
    from cds_hooks.web.recording import recorder_of

    store = recorder_of(audit_app).store
    seen, real = [], store.record_call
    monkeypatch.setattr(store, "record_call", lambda rec, durable=True: seen.append(durable) or real(rec, durable))
    return seen


def test_a_call_that_returns_a_card_waits_for_its_audit_commit_to_reach_the_disk(
    audit_app, audit_client, audit_store, seed_request, monkeypatch
):
    seen = _durability_of_each_write(audit_app, monkeypatch)
    call(audit_client, seed_request)
    assert seen == [True]
    assert the_call(audit_store, seed_request["hookInstance"])["card_count"] == 1


def test_a_call_that_returns_no_card_is_still_recorded_without_waiting_for_the_disk(
    audit_app, audit_client, audit_store, monkeypatch
):
    from conftest import request_fixture

    seen = _durability_of_each_write(audit_app, monkeypatch)
    body = request_fixture("non-fusion")
    assert call(audit_client, body) == {"cards": []}
    assert seen == [False]
    row = the_call(audit_store, body["hookInstance"])
    assert row["status"] == 200 and row["card_count"] == 0


def test_a_write_that_does_not_wait_leaves_its_connection_waiting_again(audit_store):
    from cds_hooks.audit.database import commit_durability, is_sqlite

    if not is_sqlite(audit_store.engine):  # PostgreSQL: SET LOCAL ends with the transaction
        with commit_durability(audit_store.engine, durable=False) as conn, conn.begin():
            from cds_hooks.audit.database import relax_transaction

            relax_transaction(conn)
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"
        with audit_store.engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
        return
    with commit_durability(audit_store.engine, durable=False) as conn:
        raw = conn.connection.dbapi_connection
        assert raw.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert raw.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again
