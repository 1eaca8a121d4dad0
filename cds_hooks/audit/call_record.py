"""What one hook call leaves in the audit trail, and how it becomes rows.

Da Vinci CRD keeps the call and the response for disputes: the rows hold enough to reproduce what
the user saw (the full response JSON), what it was based on (the request context with the draft
orders, every resource's id and version, each criterion's evidence) and how the call went (status,
error class, latency per stage). The patient's record itself (prefetch) is not copied: its ids and
versions name it. Access tokens are never kept.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

from cds_hooks.audit.sealing import Sealer
from cds_hooks.errors import CdsError
from cds_hooks.hooks.hook_request import HookRequest
from cds_hooks.pipeline.evaluation import CaseOutcome, Outcome
from cds_hooks.pipeline.patient_data import PatientData

UNMET = ("not-met", "not-documented", "unavailable")


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


# Neither a NUL (PostgreSQL text refuses it) nor a lone surrogate (not encodable as UTF-8) may reach a
# plain column: the row of a refused call must be writable whatever the caller sent.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: str) -> str:
    return _UNSTORABLE.sub("\ufffd", value)


def _short(value, limit: int) -> str | None:
    return storable(value[:limit]) if isinstance(value, str) and value else None


@dataclass
class CallRecord:
    """Filled in as a call goes: the request once parsed, the outcome once evaluated, or the error."""

    service_id: str
    received_at: datetime = field(default_factory=utcnow)
    started: float = field(default_factory=time.perf_counter)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    request: HookRequest | None = None
    outcome: Outcome | None = None
    body: dict | None = None  # the raw JSON body, when the request did not parse
    status: int = 200
    error_code: str | None = None
    error_class: str | None = None
    error_message: str | None = None
    data: PatientData | None = None  # what was gathered when the call failed after gathering
    duration_ms: float | None = None
    mode: str = "live"  # audit/go_live.py: live, shadow (evaluated, no cards returned) or off (not evaluated)
    site: str | None = None

    def finish(self) -> None:
        if self.duration_ms is None:
            self.duration_ms = (time.perf_counter() - self.started) * 1000

    def fail(self, exc: BaseException, failure) -> None:
        """Take the status and error the caller got for `exc`: `failure` is web/http_errors.py's
        description of it (status, code, message, error_class), the same the response carries."""
        self.status, self.error_code, self.error_message = failure.status, failure.code, failure.message
        self.error_class = failure.error_class
        self.data = getattr(exc, "data", None) if isinstance(exc, CdsError) else None
        self.finish()

    def response_sent(self) -> dict:
        """The body the caller received: the cards when live; `{"cards": []}` in shadow mode or off."""
        if self.status != 200:
            return {"error": self.error_code, "message": self.error_message}
        if self.mode != "live" or self.outcome is None:
            return {"cards": []}
        return self.outcome.response

    @property
    def patient_data(self) -> PatientData | None:
        return self.outcome.data if self.outcome and self.outcome.data else self.data

    @property
    def cases(self) -> list[CaseOutcome]:
        return self.outcome.cases if self.outcome else []

    # --------------------------------------------------------------- identity of the call

    def raw_body(self) -> dict:
        if self.request is not None:
            return self.request.raw
        return self.body if isinstance(self.body, dict) else {}

    def context(self) -> dict:
        ctx = self.raw_body().get("context")
        return ctx if isinstance(ctx, dict) else {}

    @property
    def hook(self) -> str | None:
        return _short(self.request.hook, 64) if self.request else _short(self.raw_body().get("hook"), 64)

    @property
    def hook_instance(self) -> str | None:
        return _short(self.request.hook_instance if self.request else self.raw_body().get("hookInstance"), 200)

    @property
    def user_ref(self) -> str | None:
        return _short(self.request.user_id if self.request else self.context().get("userId"), 200)

    @property
    def patient_id(self) -> str | None:
        return self.request.patient_id if self.request else _short(self.context().get("patientId"), 1000)


# ------------------------------------------------------------------- rows


def _resource_manifest(data: PatientData | None) -> list[dict]:
    """Every resource the evaluation saw: reference, version, where it came from."""
    if data is None:
        return []
    out: dict[str, dict] = {}
    for key, source in data.sources.items():
        for r in source.resources:
            if not isinstance(r, dict) or r.get("id") is None:
                continue
            ref = f"{r.get('resourceType')}/{r.get('id')}"
            meta = r.get("meta") if isinstance(r.get("meta"), dict) else {}
            entry = {"reference": ref, "source": key, "origin": source.status}
            if isinstance(meta.get("versionId"), str):
                entry["versionId"] = meta["versionId"]
            if isinstance(meta.get("lastUpdated"), str):
                entry["lastUpdated"] = meta["lastUpdated"]
            out.setdefault(ref, entry)
    return list(out.values())


def _sources(data: PatientData | None) -> list[dict]:
    if data is None:
        return []
    return [
        {
            "key": s.key,
            "resourceType": s.resource_type,
            "status": s.status,
            "resources": len(s.resources),
            **({"reason": s.reason} if s.reason else {}),
        }
        for s in data.sources.values()
    ]


def _case(case: CaseOutcome, versions: dict[str, str]) -> dict:
    criteria = []
    for r in case.results:
        item = r.as_extension()
        item["evidenceVersions"] = {ref: versions[ref] for ref in r.evidence if ref in versions}
        criteria.append(item)
    profile = case.choice.profile
    return {
        "card": case.card["uuid"],
        "orders": case.case.references,
        "codes": case.case.codes,
        "levels": case.case.levels,
        "referenceDate": case.case.reference_date,
        "profile": {"name": profile.name, "version": profile.version, "label": profile.label},
        "payer": case.choice.payer,
        "payerMatched": case.choice.matched,
        "coverage": case.choice.coverage,
        "criteria": criteria,
        "evaluation": case.record,  # what the case view and the brief show (pipeline/case_record.py)
    }


def _request_summary(rec: CallRecord) -> dict:
    raw = rec.raw_body()
    out = {k: raw[k] for k in ("hook", "hookInstance", "fhirServer") if k in raw}
    if rec.context():
        out["context"] = rec.context()
    auth = raw.get("fhirAuthorization")
    if isinstance(auth, dict):  # never the token itself
        out["fhirAuthorization"] = {k: auth[k] for k in ("token_type", "scope", "subject") if k in auth}
    if isinstance(raw.get("prefetch"), dict):
        out["prefetchKeys"] = sorted(raw["prefetch"])
    return out


def sealed_content(rec: CallRecord) -> dict:
    data = rec.patient_data
    manifest = _resource_manifest(data)
    versions = {m["reference"]: m["versionId"] for m in manifest if "versionId" in m}
    content = {
        "request": _request_summary(rec),
        "response": rec.response_sent(),
        "sources": _sources(data),
        "resources": manifest,
        "cases": [_case(c, versions) for c in rec.cases],
    }
    if rec.mode == "shadow" and rec.status == 200 and rec.outcome:
        content["shadowResponse"] = rec.outcome.response  # what the user would have seen
    return content


def call_rows(rec: CallRecord, sealer: Sealer) -> dict[str, list[dict]]:
    """The rows of every audit table for one call, keyed by table name."""
    rec.finish()
    data = rec.patient_data
    key_id, sealed = sealer.seal(sealed_content(rec), rec.id)
    timings = {k: round(v * 1000, 3) for k, v in rec.outcome.timings.items()} if rec.outcome else None
    call = {
        "id": rec.id,
        "received_at": rec.received_at,
        "service_id": storable(rec.service_id[:100]),
        "hook": rec.hook,
        "hook_instance": rec.hook_instance,
        "user_ref": rec.user_ref,
        "patient_pseudonym": sealer.pseudonym(rec.patient_id),
        "status": rec.status,
        "error_code": rec.error_code,
        "error_class": rec.error_class,
        "duration_ms": round(rec.duration_ms, 3),
        "timings": timings,
        "data_origin": data.origin if data else None,
        "unavailable_sources": data.failed_types if data else None,
        "card_count": len(rec.response_sent().get("cards", [])),
        "key_id": key_id,
        "sealed": sealed,
        "mode": rec.mode,
        "site": _short(rec.site, 200),
    }
    cards, suggestions, criteria = [], [], []
    if rec.status == 200:
        for position, case in enumerate(rec.cases):
            card = case.card
            cards.append(
                {
                    "uuid": card["uuid"],
                    "call_id": rec.id,
                    "position": position,
                    "indicator": card.get("indicator"),
                    "profile": case.choice.profile.name,
                    "profile_version": case.choice.profile.version,
                    "payer_matched": case.choice.matched,
                    "order_codes": case.case.codes,
                    "levels": case.case.levels,
                    "required_unmet": sum(1 for r in case.results if r.required and r.status in UNMET),
                }
            )
            for i, s in enumerate(card.get("suggestions") or []):
                suggestions.append(
                    {
                        "uuid": s["uuid"],
                        "card_uuid": card["uuid"],
                        "position": i,
                        "label": str(s.get("label", ""))[:300],
                    }
                )
            for r in case.results:
                criteria.append(
                    {
                        "card_uuid": card["uuid"],
                        "criterion": r.id,
                        "level": r.level,
                        "status": r.status,
                        "required": r.required,
                    }
                )
    return {"audit_call": [call], "audit_card": cards, "audit_suggestion": suggestions, "audit_criterion": criteria}
