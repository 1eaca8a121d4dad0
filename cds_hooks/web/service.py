"""The service endpoint: `POST /cds-services/{id}` (CDS Hooks 2.0, "Calling a CDS Service").

Answers 200 with `{"cards": [...]}`, 400 for a request the service cannot use (a wrongly typed
FHIR element it would read, web/fhir_types.py; more work than one call may ask, too-much-work), 404 for an unknown
service, 412 when no patient data can be obtained ("HTTP Response": the service could not obtain
the data it needs). Every call, whatever its status, is recorded in the audit trail (web/recording.py).
In shadow mode, or for a site switched off (audit/go_live.py), the answer is `{"cards": []}`.
"""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, g, jsonify, request

from cds_hooks.audit.call_record import CallRecord
from cds_hooks.audit.go_live import EXTENSION as GO_LIVE, LIVE, OFF, Decision
from cds_hooks.engine.bridge import EngineError
from cds_hooks.errors import RulePackMalfunction, ServiceUnavailable, UnknownService
from cds_hooks.hooks.hook_request import HookRequest, parse_hook_request
from cds_hooks.ops.logs import pseudonym
from cds_hooks.pipeline.criteria import CriteriaError
from cds_hooks.web.case_view import attach_links
from cds_hooks.web.extensions import registry_of
from cds_hooks.web.fhir_types import EXTENSION as FHIR_TYPES, check_hook_resources
from cds_hooks.web.recording import recorded
from cds_hooks.web.request_limits import check_hook_fields, json_body

log = logging.getLogger("cds_hooks.service")

bp = Blueprint("service", __name__)


def public_base_url() -> str:
    configured = registry_of(current_app).config.public_base_url
    return (configured or request.host_url).rstrip("/")


def decide_call(request: HookRequest) -> Decision:
    """The mode of the current request's hook call (the caller verified by web/authentication.py, if any)."""
    return current_app.extensions[GO_LIVE].decide(request, g.get("caller"))


@bp.post("/cds-services/<service_id>")
@recorded
def call_service(service_id: str, call: CallRecord):
    evaluator = registry_of(current_app).get(service_id)
    if evaluator is None:
        raise UnknownService(service_id)
    body = json_body()
    check_hook_fields(body)
    hook_request = call.request = parse_hook_request(body, evaluator.pack.hook)
    check_hook_resources(current_app.extensions[FHIR_TYPES], body)  # 400 before the engine could fail on it
    decision = decide_call(hook_request)
    call.mode, call.site = decision.mode, decision.site
    if decision.mode == OFF:  # switched off for this site: no data read, no evaluation
        log.info(
            "hook answered",
            extra={
                "fields": {"service": service_id, "hook_instance": hook_request.hook_instance, "mode": OFF, "cards": 0}
            },
        )
        return jsonify(call.response_sent())
    try:
        outcome = evaluator.evaluate(hook_request, public_base_url())
    except EngineError as exc:
        raise ServiceUnavailable(
            f"the criteria engine could not evaluate this request ({exc.kind})", code="engine-unavailable"
        ) from exc
    except CriteriaError as exc:
        raise RulePackMalfunction("the rule pack returned malformed results") from exc
    if decision.mode == LIVE:
        attach_links(outcome.response, call.id, public_base_url())  # part of what is recorded and sent
    call.outcome = outcome  # recorded (committed) by @recorded before the response leaves
    data = outcome.data
    log.info(
        "hook answered",
        extra={
            "fields": {
                "service": service_id,
                "hook_instance": hook_request.hook_instance,
                "patient": pseudonym(current_app, hook_request.patient_id),
                "cards": len(outcome.response["cards"]),
                "mode": decision.mode,
                "data_source": data.origin if data else None,
                "unavailable": data.failed_types if data else [],
                "timings_ms": {k: round(v * 1000, 1) for k, v in outcome.timings.items()},
            }
        },
    )
    return jsonify(outcome.response if decision.mode == LIVE else call.response_sent())
