#!/usr/bin/env python3
"""Build CDS Hooks 2.0 ``order-sign`` requests from the fixture patients and draft orders.

For every ``patients/<name>.json`` (a FHIR transaction Bundle) with a matching ``orders/<name>.json``
(a collection Bundle of draft ServiceRequests) this writes:

* ``requests/<name>-prefetch.json``: the request with a ``prefetch`` object;
* ``requests/<name>-no-prefetch.json``: the same request without ``prefetch``, so the service has to
  query ``fhirServer`` itself.

The output is deterministic (fixed hookInstance per file, stable entry order, 2-space indent,
trailing newline): running the script again reproduces the files byte for byte.
Standard library only.
"""
from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
PATIENTS = HERE / "patients"
ORDERS = HERE / "orders"
REQUESTS = HERE / "requests"

# Placeholder; tests substitute the address of the FHIR server they start.
FHIR_SERVER = "http://127.0.0.1:8090/fhir"
USER_ID = "Practitioner/surgeon-1"
AUTHORIZATION = {
    "access_token": "fixture-access-token",
    "token_type": "Bearer",
    "expires_in": 300,
    "scope": "patient/*.read",
    "subject": "fusion-cds",
}
# Namespace for the fixed hookInstance UUIDs (UUIDv5 of the output file name).
HOOK_INSTANCE_NS = uuid.UUID("3c1f9a52-6d0e-5b7a-9f43-2b8e1c7d4a60")

# prefetch key -> resource type. "patient" holds the bare Patient, every other key a searchset Bundle.
PREFETCH_KEYS = [
    ("patient", "Patient"),
    ("coverage", "Coverage"),
    ("conditions", "Condition"),
    ("procedures", "Procedure"),
    ("encounters", "Encounter"),
    ("imagingStudies", "ImagingStudy"),
    ("diagnosticReports", "DiagnosticReport"),
    ("observations", "Observation"),
    ("medicationRequests", "MedicationRequest"),
    ("medicationStatements", "MedicationStatement"),
]


def load(path: Path) -> dict:
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def searchset(resources: list[dict]) -> dict:
    bundle: dict = {"resourceType": "Bundle", "type": "searchset", "total": len(resources)}
    if resources:  # FHIR forbids empty arrays
        bundle["entry"] = [
            {
                "fullUrl": f"{FHIR_SERVER}/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ]
    return bundle


def build_prefetch(resources: list[dict], patient: dict) -> dict:
    prefetch: dict = {}
    for key, rtype in PREFETCH_KEYS:
        if rtype == "Patient":
            prefetch[key] = patient
        else:
            prefetch[key] = searchset([r for r in resources if r["resourceType"] == rtype])
    return prefetch


def build_request(file_stem: str, patient: dict, orders: dict, prefetch: dict | None) -> dict:
    request = {
        "hook": "order-sign",
        "hookInstance": str(uuid.uuid5(HOOK_INSTANCE_NS, file_stem)),
        "fhirServer": FHIR_SERVER,
        "fhirAuthorization": dict(AUTHORIZATION),
        "context": {
            "userId": USER_ID,
            "patientId": patient["id"],
            "draftOrders": orders,
        },
    }
    if prefetch is not None:
        request["prefetch"] = prefetch
    return request


def write(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main() -> int:
    REQUESTS.mkdir(exist_ok=True)
    written = []
    for bundle_path in sorted(PATIENTS.glob("*.json")):
        name = bundle_path.stem
        order_path = ORDERS / f"{name}.json"
        if not order_path.exists():
            print(f"error: {order_path} missing for patient bundle {bundle_path.name}", file=sys.stderr)
            return 1
        bundle = load(bundle_path)
        resources = [e["resource"] for e in bundle.get("entry", [])]
        patients = [r for r in resources if r["resourceType"] == "Patient"]
        if len(patients) != 1:
            print(f"error: {bundle_path.name} must hold exactly one Patient", file=sys.stderr)
            return 1
        patient = patients[0]
        orders = load(order_path)
        for variant, prefetch in (("prefetch", build_prefetch(resources, patient)), ("no-prefetch", None)):
            stem = f"{name}-{variant}"
            out = REQUESTS / f"{stem}.json"
            write(out, build_request(stem, patient, orders, prefetch))
            written.append(out.relative_to(HERE))
    for p in written:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
