"""The feedback endpoint: `POST /cds-services/{id}/feedback` (CDS Hooks 2.0, "Feedback").

Answers 200 with what was stored, 400 for a malformed body (nothing stored), 404 for an unknown
service, 503 `audit-unavailable` with `Retry-After` when the audit database cannot take it (the
client may retry: a repeated entry is stored once), 503 `feedback-unavailable` when the deployment
keeps no audit trail at all. Feedback on a card this service does not know (returned by another deployment, or
purged) is stored all the same, marked unmatched, and listed in the answer: the user's action is
evidence worth keeping, and the client cannot correct it anyway.
"""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify

from cds_hooks.errors import AuditUnavailable, ServiceUnavailable, UnknownService
from cds_hooks.hooks.feedback_request import parse_feedback
from cds_hooks.web.extensions import registry_of
from cds_hooks.web.recording import recorder_of
from cds_hooks.web.request_limits import json_body

log = logging.getLogger("cds_hooks.feedback")

bp = Blueprint("feedback", __name__)


@bp.post("/cds-services/<service_id>/feedback")
def receive_feedback(service_id: str):
    evaluator = registry_of(current_app).get(service_id)
    if evaluator is None:
        raise UnknownService(service_id)
    recorder = recorder_of(current_app)
    if recorder.store is None:
        raise ServiceUnavailable(
            "this deployment keeps no audit trail to store feedback in", code="feedback-unavailable"
        )
    entries = parse_feedback(json_body())
    reasons = {r["code"]: r.get("display") for r in evaluator.pack.override_reasons if r.get("code")}
    try:
        result = recorder.store.record_feedback(service_id, entries, reasons)
    except Exception as exc:  # noqa: BLE001 - whatever the database says, the client should retry
        recorder.metrics.audit_failures.labels("feedback").inc()
        log.error("feedback write failed: %s (answered 503 audit-unavailable)", type(exc).__name__)
        raise AuditUnavailable("The feedback could not be stored; retry later.") from exc
    for e in result.stored:
        recorder.metrics.observe_feedback(service_id, e.outcome, (e.reason or {}).get("code"), reasons)
    return jsonify(
        {
            "received": len(entries),
            "stored": len(result.stored),
            "duplicates": result.duplicates,
            "unmatchedCards": result.unmatched_cards,
            "unmatchedSuggestions": result.unmatched_suggestions,
        }
    )
