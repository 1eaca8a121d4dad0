"""Coverage information on the order: the case's criteria verdict in Da Vinci CRD 2.2.1's vocabulary.

CRD 2.2.1, "CDS Hooks Response Profiles", "Coverage Information": the service answers an
`order-sign` call with a `systemActions` entry of type `update` per order, carrying the order with
the `ext-coverage-information` extension. The extension's parts used here (profile
StructureDefinition/ext-coverage-information): `coverage` (1..1, Reference(Coverage)), `covered`
(1..1), `pa-needed`, `doc-needed`, `doc-purpose`, `billingCode`, `reason`, `questionnaire`, `date`
(1..1) and `coverage-assertion-id` (1..1). Its invariants, all kept by construction:

- crd-ci-q1: `questionnaire` only when `doc-needed` is present;
- crd-ci-q2: `covered` = not-covered never carries `pa-needed` (never produced here: see docs/crd.md);
- crd-ci-q3: `info-needed` if and only if something is `conditional` (neither is produced);
- crd-ci-q4 and q5: `pa-needed` is never `satisfied`, so neither `satisfied-pa-id` nor the
  doc-purpose restriction comes into play;
- crd-ci-q6: `info-needed` = OTH needs a `reason` (info-needed is not produced);
- crd-ci-q7: a `reason` always has `text`.

One extension per Coverage on the record, each with its own `coverage-assertion-id` (the same id
for the same coverage and order within one hookInstance). A criterion that could not be checked
(a data source failed) makes the answer `indeterminate` with the reason `technical`; a record with no
active Coverage is `indeterminate` with `coverage-not-found`. Nothing else on the order changes: the
update is the order as the client sent it, with only its coverage-information extensions replaced.
An order that already carries this information, or got it earlier in the same hookInstance, is not
updated again.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date

from cds_hooks.pipeline.criteria import CriterionResult
from cds_hooks.pipeline.orders import SurgicalCase

EXTENSION_URL = "http://hl7.org/fhir/us/davinci-crd/StructureDefinition/ext-coverage-information"
TEMP_CODES = "http://hl7.org/fhir/us/davinci-crd/CodeSystem/temp"
_ASSERTION_NAMESPACE = uuid.UUID("5b7f1b2e-0c55-4d4e-9d59-2f3c0e1c6a11")


@dataclass(frozen=True)
class Verdict:
    """One case's answer in CRD codes, before it is attached to an order and a coverage."""

    covered: str
    pa_needed: str
    doc_needed: str | None
    reason_text: str
    reason_code: str | None = None

    @property
    def needs_documentation(self) -> bool:
        return self.doc_needed is not None


def _overall(items: list[CriterionResult]) -> str:
    statuses = {r.status for r in items}
    if statuses <= {"met", "waived"}:
        return "met"
    for status in ("unavailable", "not-met", "not-documented"):
        if status in statuses:
            return status
    return "not-documented"


def verdict(results: list[CriterionResult], required: tuple[str, ...] | list[str]) -> Verdict:
    """The required criteria's verdict in CRD terms (the mapping, and where it is a judgement, is in
    docs/crd.md). Prior authorization is needed for every fusion order: the criteria are the payer's
    prior-authorization criteria, and meeting them never replaces the review."""
    by_id: dict[str, list[CriterionResult]] = {}
    for r in results:
        if r.id in required:
            by_id.setdefault(r.id, []).append(r)
    overall = {cid: _overall(items) for cid, items in by_id.items()}
    unavailable = sorted(c for c, s in overall.items() if s == "unavailable")
    not_met = sorted(c for c, s in overall.items() if s == "not-met")
    undocumented = sorted(c for c, s in overall.items() if s == "not-documented")
    if unavailable:
        return Verdict(
            "indeterminate",
            "auth-needed",
            None,
            "Could not be checked (a data source failed): " + ", ".join(unavailable),
            "technical",
        )
    if not_met:
        text = f"{len(not_met)} of {len(overall)} required criteria not met ({', '.join(not_met)})"
        if undocumented:
            text += f"; not documented: {', '.join(undocumented)}"
        return Verdict("covered", "auth-needed", "clinical", text + " — likely to fail review")
    if undocumented:
        return Verdict(
            "covered", "auth-needed", "clinical", "Required criteria not documented: " + ", ".join(undocumented)
        )
    return Verdict(
        "covered",
        "auth-needed",
        None,
        f"All {len(overall)} required criteria documented; prior authorization still decides",
    )


NO_COVERAGE = Verdict(
    "indeterminate",
    "auth-needed",
    None,
    "No active Coverage in the record: the payer's criteria could not be attributed",
    "coverage-not-found",
)


def _part(url: str, **value) -> dict:
    return {"url": url, **value}


def coverage_extension(
    v: Verdict, coverage_ref: dict, assertion_id: str, on: date, billing_codes: list[dict], questionnaire: str | None
) -> dict:
    """One ext-coverage-information extension (parts in the profile's order)."""
    reason = {"text": v.reason_text}
    if v.reason_code:
        reason["coding"] = [{"system": TEMP_CODES, "code": v.reason_code}]
    parts = [
        _part("coverage", valueReference=coverage_ref),
        _part("covered", valueCode=v.covered),
        _part("pa-needed", valueCode=v.pa_needed),
    ]
    if v.needs_documentation:
        parts.append(_part("doc-needed", valueCode=v.doc_needed))
        parts.append(_part("doc-purpose", valueCode="withpa"))
    parts.extend(_part("billingCode", valueCoding=dict(c)) for c in billing_codes)
    parts.append(_part("reason", valueCodeableConcept=reason))
    if v.needs_documentation and questionnaire:
        parts.append(_part("questionnaire", valueCanonical=questionnaire))
    parts.append(_part("date", valueDate=on.isoformat()))
    parts.append(_part("coverage-assertion-id", valueString=assertion_id))
    return {"url": EXTENSION_URL, "extension": parts}


_TRACE_PARTS = ("date", "coverage-assertion-id")


def _information(extensions: list[dict]) -> list[dict]:
    return [
        {**e, "extension": [p for p in e.get("extension", []) if p.get("url") not in _TRACE_PARTS]}
        for e in extensions
        if isinstance(e, dict)
    ]


def digest(extensions: list[dict]) -> str:
    """What the coverage information says, whatever day it was said on and whatever its trace id."""
    return hashlib.sha256(json.dumps(_information(extensions), sort_keys=True).encode()).hexdigest()


class CoverageLedger:
    """Coverage information already sent, by (hookInstance, order): a bounded in-process memory, so a
    repeated call of the same hookInstance does not update an order with what it already got."""

    def __init__(self, size: int = 10_000):
        self.size = size
        self._sent: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, hook_instance: str, order_ref: str, info_digest: str) -> bool:
        key = (hook_instance, order_ref)
        with self._lock:
            if self._sent.get(key) == info_digest:
                self._sent.move_to_end(key)
                return False
            self._sent[key] = info_digest
            self._sent.move_to_end(key)
            while len(self._sent) > self.size:
                self._sent.popitem(last=False)
            return True


def _billing_codes(order) -> list[dict]:
    code = order.resource.get("code") if isinstance(order.resource.get("code"), dict) else {}
    return [
        {k: c[k] for k in ("system", "code", "display") if isinstance(c.get(k), str)}
        for c in code.get("coding") or []
        if isinstance(c, dict) and c.get("code") == order.code
    ]


def _active_coverages(coverages: list[dict]) -> list[dict]:
    return [c for c in coverages if isinstance(c.get("id"), str) and c.get("status", "active") == "active"]


def system_actions(
    cases: list[tuple[SurgicalCase, Verdict]],
    coverages: list[dict],
    hook_instance: str,
    questionnaire: str | None,
    ledger: CoverageLedger,
    today: date,
) -> list[dict]:
    """CDS Hooks 2.0 `systemActions`: one `update` per fusion order whose coverage information is new."""
    actions = []
    active = _active_coverages(coverages)
    for case, case_verdict in cases:
        for order in case.orders:
            resource = order.resource
            if not isinstance(resource.get("id"), str):
                continue  # an update needs the order's id to name the order it changes
            order_ref = f"{resource['resourceType']}/{resource['id']}"
            targets = [({"reference": f"Coverage/{c['id']}"}, case_verdict) for c in active] or [
                ({"display": "No active Coverage in the record"}, NO_COVERAGE)
            ]
            extensions = [
                coverage_extension(
                    v,
                    ref,
                    str(
                        uuid.uuid5(
                            _ASSERTION_NAMESPACE, f"{hook_instance}|{order_ref}|{json.dumps(ref, sort_keys=True)}"
                        )
                    ),
                    today,
                    _billing_codes(order),
                    questionnaire,
                )
                for ref, v in targets
            ]
            existing = resource.get("extension") if isinstance(resource.get("extension"), list) else []
            already = [e for e in existing if isinstance(e, dict) and e.get("url") == EXTENSION_URL]
            info = digest(extensions)
            if already and digest(already) == info:
                continue
            if not ledger.first_time(hook_instance, order_ref, info):
                continue
            updated = copy.deepcopy(resource)
            updated["extension"] = [
                copy.deepcopy(e) for e in existing if not (isinstance(e, dict) and e.get("url") == EXTENSION_URL)
            ] + extensions
            actions.append(
                {
                    "type": "update",
                    "description": f"Coverage information for {order_ref}: {targets[0][1].reason_text}"[:500],
                    "resource": updated,
                }
            )
    return actions
