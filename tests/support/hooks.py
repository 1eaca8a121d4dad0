"""Helpers to reshape fixture requests and read results back from cards."""

from __future__ import annotations

import copy

from cds_hooks.pipeline.cards import EXTENSION_KEY

from .conformance import assert_conformant

SERVICE = "/cds-services/lumbar-fusion"
PREFETCH_TYPES = {
    "patient": "Patient",
    "coverage": "Coverage",
    "conditions": "Condition",
    "procedures": "Procedure",
    "encounters": "Encounter",
    "imagingStudies": "ImagingStudy",
    "diagnosticReports": "DiagnosticReport",
    "observations": "Observation",
    "medicationRequests": "MedicationRequest",
    "medicationStatements": "MedicationStatement",
    "documentReferences": "DocumentReference",
}


def resources(request: dict) -> list[dict]:
    """Every resource in a request's prefetch."""
    out = []
    for value in request["prefetch"].values():
        if value is None:
            continue
        if value.get("resourceType") == "Bundle":
            out.extend(e["resource"] for e in value.get("entry", []))
        else:
            out.append(value)
    return out


def find(request: dict, resource_type: str, resource_id: str) -> dict:
    for r in resources(request):
        if r["resourceType"] == resource_type and r["id"] == resource_id:
            return r
    raise KeyError(f"{resource_type}/{resource_id}")


def with_resources(request: dict, items: list[dict]) -> dict:
    """A copy of `request` whose prefetch holds exactly `items`, sorted into their keys."""
    out = copy.deepcopy(request)
    for key, rtype in PREFETCH_TYPES.items():
        if key == "patient":
            continue
        chosen = [copy.deepcopy(r) for r in items if r["resourceType"] == rtype]
        out["prefetch"][key] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(chosen),
            "entry": [{"resource": r} for r in chosen],
        }
    return out


def without(request: dict, *refs: str) -> dict:
    drop = set(refs)
    return with_resources(request, [r for r in resources(request) if f"{r['resourceType']}/{r['id']}" not in drop])


def plus(request: dict, *items: dict) -> dict:
    return with_resources(request, resources(request) + list(items))


def orders(request: dict) -> list[dict]:
    return [e["resource"] for e in request["context"]["draftOrders"]["entry"]]


def call(client, request: dict, status: int = 200, service: str | None = None) -> dict:
    response = client.post(f"/cds-services/{service}" if service else SERVICE, json=request)
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    body = response.get_json()
    if status == 200:
        assert_conformant(body)
    return body


def results(card: dict) -> list[dict]:
    return card["extension"][EXTENSION_KEY]


def statuses(card: dict) -> dict:
    """{"criterion" or "criterion@level": status}"""
    return {(f"{r['id']}@{r['level']}" if r.get("level") else r["id"]): r["status"] for r in results(card)}


def result(card: dict, criterion: str, level: str | None = None) -> dict:
    for r in results(card):
        if r["id"] == criterion and r.get("level") == level:
            return r
    raise KeyError((criterion, level))
