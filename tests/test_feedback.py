"""The feedback endpoint (CDS Hooks 2.0, "Feedback"): validated, stored, joined to the card and the
call it answers. Runs on SQLite and PostgreSQL."""

import copy
import uuid

import pytest

from cds_hooks.audit.schema import feedback, feedback_suggestion
from support.audit_db import raw_dump, rows
from support.hooks import call

FEEDBACK = "/cds-services/lumbar-fusion/feedback"
WHEN = "2026-09-10T14:03:00Z"


def accepted(card, *suggestions):
    return {
        "card": card["uuid"],
        "outcome": "accepted",
        "outcomeTimestamp": WHEN,
        "acceptedSuggestions": [{"id": s["uuid"]} for s in suggestions],
    }


def overridden(card, code=None, comment=None):
    entry = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": WHEN}
    reason = {}
    if code:
        reason["reason"] = {"system": "http://fusion-cds.example.org/fhir/CodeSystem/override-reason", "code": code}
    if comment:
        reason["userComment"] = comment
    if reason:
        entry["overrideReason"] = reason
    return entry


def post(client, *entries, status=200):
    r = client.post(FEEDBACK, json={"feedback": list(entries)})
    assert r.status_code == status, r.get_data(as_text=True)
    return r.get_json()


@pytest.fixture()
def card(audit_client, seed_request):
    return call(audit_client, seed_request)["cards"][0]


def test_accepted_feedback_is_joined_to_the_card_its_call_and_the_suggestion(audit_client, audit_store, card):
    suggestion = card["suggestions"][0]
    answer = post(audit_client, accepted(card, suggestion))
    assert answer == {"received": 1, "stored": 1, "duplicates": 0, "unmatchedCards": [], "unmatchedSuggestions": []}
    (row,) = rows(audit_store.engine, feedback)
    (document,) = audit_store.show(card["uuid"], "test")
    assert row["matched"] is True and row["call_id"] == document["call"]["id"]
    assert row["outcome"] == "accepted" and row["outcome_at"].isoformat() == "2026-09-10T14:03:00"
    (taken,) = rows(audit_store.engine, feedback_suggestion)
    assert taken["suggestion_uuid"] == suggestion["uuid"] and taken["matched"] is True
    assert document["feedback"][0]["acceptedSuggestions"] == [suggestion["uuid"]]


def test_an_override_keeps_the_reason_code_and_the_display_the_service_offered(audit_client, audit_store, card):
    post(audit_client, overridden(card, code="payer-approved"))
    (row,) = rows(audit_store.engine, feedback)
    assert (row["outcome"], row["reason_code"]) == ("overridden", "payer-approved")
    assert row["reason_display"] == "Payer approval already obtained"


def test_an_override_without_a_reason_is_accepted(audit_client, audit_store, card):
    post(audit_client, overridden(card))
    (row,) = rows(audit_store.engine, feedback)
    assert row["outcome"] == "overridden" and row["reason_code"] is None


def test_the_user_comment_is_stored_encrypted_and_read_back(audit_client, audit_store, card):
    comment = "Patient in severe pain, surgery moved up"
    post(audit_client, overridden(card, code="urgent-indication", comment=comment))
    assert comment.encode() not in raw_dump(audit_store.engine)
    (document,) = audit_store.show(card["uuid"], "test")
    assert document["feedback"][0]["entry"]["overrideReason"]["userComment"] == comment


def test_the_same_feedback_sent_twice_is_stored_once(audit_client, audit_store, card):
    entry = overridden(card, code="disagree")
    post(audit_client, entry)
    answer = post(audit_client, entry)
    assert (answer["stored"], answer["duplicates"]) == (0, 1)
    assert len(rows(audit_store.engine, feedback)) == 1


def test_feedback_on_an_unknown_card_is_stored_unmatched_and_reported(audit_client, audit_store):
    stranger = {"uuid": str(uuid.uuid4()), "suggestions": []}
    answer = post(audit_client, overridden(stranger, code="disagree"))
    assert answer["stored"] == 1 and answer["unmatchedCards"] == [stranger["uuid"]]
    (row,) = rows(audit_store.engine, feedback)
    assert row["matched"] is False and row["call_id"] is None


def test_feedback_on_another_services_card_does_not_match(audit_client, audit_store, card):
    """A card is matched only within the service it came from (the URL's service id)."""
    with audit_store.engine.begin() as conn:
        from sqlalchemy import update

        from cds_hooks.audit.schema import audit_call

        conn.execute(update(audit_call).values(service_id="other-service"))
    answer = post(audit_client, overridden(card))
    assert answer["unmatchedCards"] == [card["uuid"]]


def test_an_accepted_suggestion_that_was_not_on_the_card_is_kept_unmatched(audit_client, audit_store, card):
    foreign = {"uuid": str(uuid.uuid4())}
    answer = post(audit_client, accepted(card, card["suggestions"][0], foreign))
    assert answer["unmatchedSuggestions"] == [foreign["uuid"]]
    matched = {r["suggestion_uuid"]: r["matched"] for r in rows(audit_store.engine, feedback_suggestion)}
    assert matched == {card["suggestions"][0]["uuid"]: True, foreign["uuid"]: False}


def test_a_card_uuid_in_urn_form_matches_the_card(audit_client, audit_store, card):
    entry = overridden(card)
    entry["card"] = "urn:uuid:" + card["uuid"].upper()
    assert post(audit_client, entry)["unmatchedCards"] == []


def test_several_entries_in_one_request_are_all_stored(audit_client, audit_store, card):
    answer = post(audit_client, accepted(card, card["suggestions"][0]), overridden(card, code="disagree"))
    assert answer["stored"] == 2
    assert sorted(r["outcome"] for r in rows(audit_store.engine, feedback)) == ["accepted", "overridden"]


def _valid():
    return {"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": WHEN}


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda e: e.pop("card"), ".card must be"),
        (lambda e: e.update(card="not-a-uuid"), "not a uuid"),
        (lambda e: e.update(card=42), ".card must be"),
        (lambda e: e.update(outcome="ignored"), "accepted or overridden"),
        (lambda e: e.pop("outcome"), "accepted or overridden"),
        (lambda e: e.pop("outcomeTimestamp"), "outcomeTimestamp is required"),
        (lambda e: e.update(outcomeTimestamp="yesterday"), "not an ISO 8601"),
        (lambda e: e.update(outcomeTimestamp="2026-09-10T14:03:00"), "time zone"),
        (lambda e: e.update(outcome="accepted"), "acceptedSuggestions is required"),
        (
            lambda e: e.update(
                outcome="accepted", acceptedSuggestions=[{"id": str(uuid.uuid4())}], overrideReason={"userComment": "x"}
            ),
            "only allowed with outcome overridden",
        ),
        (lambda e: e.update(acceptedSuggestions=[{"id": str(uuid.uuid4())}]), "only allowed with outcome accepted"),
        (lambda e: e.update(outcome="accepted", acceptedSuggestions=[{"uuid": "x"}]), "acceptedSuggestions[0].id"),
        (lambda e: e.update(outcome="accepted", acceptedSuggestions={"id": "x"}), "must be a list"),
        (lambda e: e.update(overrideReason="too expensive"), "overrideReason must be an object"),
        (lambda e: e.update(overrideReason={"reason": {"display": "no code"}}), "reason.code is required"),
        (lambda e: e.update(overrideReason={"userComment": 5}), "userComment must be a string"),
    ],
    ids=[
        "no-card",
        "card-not-uuid",
        "card-not-string",
        "unknown-outcome",
        "no-outcome",
        "no-timestamp",
        "bad-timestamp",
        "timestamp-without-zone",
        "accepted-without-suggestions",
        "reason-with-accepted",
        "suggestions-with-overridden",
        "suggestion-without-id",
        "suggestions-not-list",
        "reason-not-object",
        "reason-coding-without-code",
        "comment-not-string",
    ],
)
def test_a_malformed_entry_is_400_naming_it_and_nothing_is_stored(audit_client, audit_store, mutate, fragment):
    good, bad = _valid(), _valid()
    mutate(bad)
    r = audit_client.post(FEEDBACK, json={"feedback": [good, bad]})
    assert r.status_code == 400 and r.get_json()["error"] == "invalid-feedback"
    message = r.get_json()["message"]
    assert message.startswith("feedback[1]") and fragment in message
    assert rows(audit_store.engine, feedback) == []


@pytest.mark.parametrize(
    "body",
    [{}, {"feedback": []}, {"feedback": "accepted"}, [1], {"feedback": [1]}],
    ids=["no-feedback", "empty", "not-a-list", "not-an-object", "entry-not-object"],
)
def test_a_body_that_is_not_a_feedback_list_is_400(audit_client, audit_store, body):
    r = audit_client.post(FEEDBACK, json=body)
    assert r.status_code == 400 and r.get_json()["error"] == "invalid-feedback"


def test_malformed_json_feedback_is_400(audit_client):
    r = audit_client.post(FEEDBACK, data="{nope", content_type="application/json")
    assert r.status_code == 400 and r.get_json()["error"] == "malformed-json"


def test_feedback_for_an_unknown_service_is_404(audit_client, card):
    r = audit_client.post("/cds-services/no-such-service/feedback", json={"feedback": [overridden(card)]})
    assert r.status_code == 404 and r.get_json()["error"] == "unknown-service"


def test_feedback_without_an_audit_trail_is_503(engine, tmp_path):
    """The offline configuration (audit off) cannot keep feedback, and says so."""
    from cds_hooks.web.app import create_app
    from cds_hooks.config import Config

    app = create_app(Config.development(var_dir=tmp_path, audit_enabled=False), engine=engine)
    r = app.test_client().post(FEEDBACK, json={"feedback": [_valid()]})
    assert r.status_code == 503 and r.get_json()["error"] == "feedback-unavailable"


def test_feedback_on_a_card_from_an_earlier_call_joins_that_call(audit_client, audit_store, seed_request):
    first = call(audit_client, seed_request)["cards"][0]
    later = copy.deepcopy(seed_request)
    later["hookInstance"] = "a-later-call"
    call(audit_client, later)
    post(audit_client, overridden(first))
    (row,) = rows(audit_store.engine, feedback)
    (document,) = audit_store.show(seed_request["hookInstance"], "test")
    assert row["call_id"] == document["call"]["id"]
