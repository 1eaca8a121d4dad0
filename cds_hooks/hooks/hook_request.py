"""The CDS Hooks request: validated where the service depends on it, lenient everywhere else.

CDS Hooks 2.0, "Calling a CDS Service" (HTTP Request): `hook`, `hookInstance`, `context` are
required; `fhirServer`, `fhirAuthorization` and `prefetch` are optional. The `order-sign` hook's
context carries `userId`, `patientId`, optional `encounterId`, and `draftOrders`, a FHIR Bundle of
the orders being signed (hook definition "order-sign", version 1.x).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cds_hooks.errors import InvalidRequest


@dataclass(frozen=True)
class FhirAuthorization:
    """CDS Hooks 2.0 "Passing the Access Token to the CDS Service"."""

    access_token: str
    token_type: str = "Bearer"
    scope: str | None = None
    subject: str | None = None

    def __repr__(self) -> str:  # never print the token
        return f"FhirAuthorization(token_type={self.token_type!r}, scope={self.scope!r})"


@dataclass
class HookRequest:
    hook: str
    hook_instance: str
    user_id: str
    patient_id: str
    encounter_id: str | None
    draft_orders: list[dict]
    fhir_server: str | None
    fhir_authorization: FhirAuthorization | None
    prefetch: dict | None
    raw: dict = field(repr=False, default_factory=dict)


def _required_string(obj: dict, key: str, where: str) -> str:
    value = obj.get(key)
    if value is None:
        raise InvalidRequest(f"{where}{key} is required")
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{where}{key} must be a non-empty string")
    return value.strip()


def draft_order_resources(draft_orders) -> list[dict]:
    """Resources in `draftOrders`, accepted leniently.

    Real clients send Bundles without `type`, with `resource` missing on some entries, or (rarely) a
    bare list or a single resource. Anything unambiguous is accepted; only a value that holds no
    resource at all is an error.
    """
    if isinstance(draft_orders, dict) and draft_orders.get("resourceType") == "Bundle":
        entries = draft_orders.get("entry") or []
        if not isinstance(entries, list):
            raise InvalidRequest("context.draftOrders.entry must be a list")
        resources = [e.get("resource") for e in entries if isinstance(e, dict)]
    elif isinstance(draft_orders, dict) and isinstance(draft_orders.get("resourceType"), str):
        resources = [draft_orders]
    elif isinstance(draft_orders, list):
        resources = [e.get("resource", e) if isinstance(e, dict) else None for e in draft_orders]
    else:
        raise InvalidRequest("context.draftOrders must be a FHIR Bundle of the orders being signed")
    return [r for r in resources if isinstance(r, dict) and isinstance(r.get("resourceType"), str)]


def parse_hook_request(body, expected_hook: str) -> HookRequest:
    """Validate the parts of an order-sign request the service relies on; raise 400 otherwise."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    hook = _required_string(body, "hook", "")
    if hook != expected_hook:
        raise InvalidRequest(f"this service answers the {expected_hook} hook, not {hook}")
    hook_instance = _required_string(body, "hookInstance", "")
    context = body.get("context")
    if not isinstance(context, dict):
        raise InvalidRequest("context is required and must be an object")
    user_id = _required_string(context, "userId", "context.")
    patient_id = _required_string(context, "patientId", "context.")
    if "draftOrders" not in context:
        raise InvalidRequest("context.draftOrders is required")
    orders = draft_order_resources(context["draftOrders"])
    encounter_id = context.get("encounterId") if isinstance(context.get("encounterId"), str) else None

    fhir_server = body.get("fhirServer")
    if fhir_server is not None and (not isinstance(fhir_server, str) or not fhir_server.strip()):
        raise InvalidRequest("fhirServer must be a URL string")
    auth = None
    raw_auth = body.get("fhirAuthorization")
    if raw_auth is not None:
        if not isinstance(raw_auth, dict) or not isinstance(raw_auth.get("access_token"), str):
            raise InvalidRequest("fhirAuthorization must be an object with an access_token")
        auth = FhirAuthorization(
            access_token=raw_auth["access_token"],
            token_type=str(raw_auth.get("token_type") or "Bearer"),
            scope=raw_auth.get("scope") if isinstance(raw_auth.get("scope"), str) else None,
            subject=raw_auth.get("subject") if isinstance(raw_auth.get("subject"), str) else None,
        )
    prefetch = body.get("prefetch")
    if prefetch is not None and not isinstance(prefetch, dict):
        raise InvalidRequest("prefetch must be an object keyed by prefetch template name")
    return HookRequest(
        hook=hook,
        hook_instance=hook_instance,
        user_id=user_id,
        patient_id=patient_id,
        encounter_id=encounter_id,
        draft_orders=orders,
        fhir_server=fhir_server.strip().rstrip("/") if isinstance(fhir_server, str) else None,
        fhir_authorization=auth,
        prefetch=prefetch,
        raw=body,
    )
