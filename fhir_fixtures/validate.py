#!/usr/bin/env python3
"""Validate the FHIR fixtures, draft orders and CDS Hooks requests.

Every resource is parsed with the ``fhir.resources`` R4B models (``pip install fhir.resources==8.3.0``);
R4B is the closest model set that package ships to FHIR R4 4.0.1. On top of schema validation this
checks the fixture conventions (see patients/README.md):

* patient bundles are transaction Bundles whose entries carry ``request: PUT ResourceType/id`` and,
  if present, a ``urn:uuid:`` fullUrl;
* ids are lowercase letters, digits and hyphens, never purely numeric, prefixed per patient and unique
  across all fixtures (a shared resource such as Practitioner/surgeon-1 must be identical everywhere);
* every relative reference resolves inside the patient's bundle, and every subject/patient/beneficiary
  points to that bundle's Patient;
* draft orders are draft ServiceRequests with a CPT code, a body site, a reference date, a requester and
  an insurance that resolve;
* requests/ is exactly what make_requests.py produces from the current bundles and orders.

Exit status 0 when everything is valid, 1 otherwise (2 when fhir.resources is missing).
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

try:
    from fhir.resources.R4B import get_fhir_model_class
except ImportError:  # pragma: no cover - environment problem, not a fixture problem
    print("validate.py needs fhir.resources==8.3.0 (pip install fhir.resources==8.3.0)", file=sys.stderr)
    sys.exit(2)

import make_requests  # noqa: E402  (same directory)

CPT = "http://www.ama-assn.org/go/cpt"
ID_RE = re.compile(r"^[a-z0-9-]{1,64}$")
URN_UUID_RE = re.compile(r"^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
REL_REF_RE = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")
SHARED = {"Practitioner/surgeon-1"}
SUBJECT_KEYS = ("subject", "patient", "beneficiary")

# Required-binding status vocabularies of FHIR R4 (the pydantic models check types, not codes).
STATUS_CODES = {
    "Coverage": {"active", "cancelled", "draft", "entered-in-error"},
    "Encounter": {"planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled",
                  "entered-in-error", "unknown"},
    "Procedure": {"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed",
                  "entered-in-error", "unknown"},
    "ImagingStudy": {"registered", "available", "cancelled", "entered-in-error", "unknown"},
    "DiagnosticReport": {"registered", "partial", "preliminary", "final", "amended", "corrected", "appended",
                         "cancelled", "entered-in-error", "unknown"},
    "Observation": {"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                    "entered-in-error", "unknown"},
    "MedicationRequest": {"active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft",
                          "unknown"},
    "MedicationStatement": {"active", "completed", "entered-in-error", "intended", "stopped", "on-hold",
                            "unknown", "not-taken"},
    "ServiceRequest": {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"},
}
CONDITION_CLINICAL = ("http://terminology.hl7.org/CodeSystem/condition-clinical",
                      {"active", "recurrence", "relapse", "inactive", "remission", "resolved"})
CONDITION_VERIFICATION = ("http://terminology.hl7.org/CodeSystem/condition-ver-status",
                          {"unconfirmed", "provisional", "differential", "confirmed", "refuted", "entered-in-error"})
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

errors: list[str] = []


def err(where: str, msg: str) -> None:
    errors.append(f"{where}: {msg}")


def load(path: Path):
    try:
        with path.open(encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        err(str(path.relative_to(HERE)), f"cannot read JSON: {exc}")
        return None


def fhir_validate(where: str, resource) -> bool:
    if not isinstance(resource, dict) or "resourceType" not in resource:
        err(where, "not a FHIR resource (no resourceType)")
        return False
    try:
        cls = get_fhir_model_class(resource["resourceType"])
    except Exception as exc:  # unknown resource type
        err(where, f"unknown resourceType {resource['resourceType']!r}: {exc}")
        return False
    try:
        cls.model_validate(resource)
    except Exception as exc:
        first = str(exc).strip().splitlines()
        err(where, f"invalid {resource['resourceType']}: " + " | ".join(first[:6]))
        return False
    return True


def check_codes(where: str, res: dict) -> None:
    """Status codes and a few FHIR R4 invariants the pydantic models do not enforce."""
    rtype = res.get("resourceType")
    if rtype in STATUS_CODES and res.get("status") not in STATUS_CODES[rtype]:
        err(where, f"status {res.get('status')!r} is not a FHIR R4 {rtype}.status code")
    if rtype == "Condition":
        for field, (system, codes) in (("clinicalStatus", CONDITION_CLINICAL),
                                       ("verificationStatus", CONDITION_VERIFICATION)):
            for c in (res.get(field) or {}).get("coding", []):
                if c.get("system") != system or c.get("code") not in codes:
                    err(where, f"{field} coding {c} is not from {system}")
        ver = {c.get("code") for c in (res.get("verificationStatus") or {}).get("coding", [])}
        if "entered-in-error" in ver and "clinicalStatus" in res:
            err(where, "con-5: no clinicalStatus when verificationStatus is entered-in-error")
    if rtype == "Observation":
        for cat in res.get("category", []):
            for c in cat.get("coding", []):
                if c.get("system") != OBSERVATION_CATEGORY:
                    err(where, f"category coding {c} should use {OBSERVATION_CATEGORY}")


def references(node, path=""):
    """Yield (json-path, reference string) for every Reference.reference below node."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield path, value
            else:
                yield from references(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from references(value, f"{path}[{i}]")


def check_patient_bundle(path: Path, seen: dict) -> dict | None:
    where = f"patients/{path.name}"
    bundle = load(path)
    if bundle is None:
        return None
    fhir_validate(where, bundle)
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
        err(where, "must be a Bundle of type transaction")
        return None
    resources: dict[str, dict] = {}
    full_urls = set()
    for i, entry in enumerate(bundle.get("entry", [])):
        res = entry.get("resource", {})
        key = f"{res.get('resourceType')}/{res.get('id')}"
        ewhere = f"{where} entry[{i}] {key}"
        fhir_validate(ewhere, res)
        check_codes(ewhere, res)
        rid = res.get("id", "")
        if not ID_RE.match(rid) or rid.isdigit():
            err(ewhere, "id must be lowercase letters, digits and hyphens, and not purely numeric")
        if "fullUrl" in entry:
            if not URN_UUID_RE.match(entry["fullUrl"]):
                err(ewhere, f"fullUrl {entry['fullUrl']!r} is not urn:uuid:<uuid>")
            if entry["fullUrl"] in full_urls:
                err(ewhere, "duplicate fullUrl")
            full_urls.add(entry["fullUrl"])
        req = entry.get("request", {})
        if req.get("method") != "PUT" or req.get("url") != key:
            err(ewhere, f"request must be PUT {key}, found {req}")
        if key in resources:
            err(ewhere, "duplicate resource in bundle")
        resources[key] = res
        if key in seen:
            other_file, other_res = seen[key]
            if key not in SHARED:
                err(ewhere, f"id also used in {other_file}")
            elif other_res != res:
                err(ewhere, f"shared resource differs from the copy in {other_file}")
        else:
            seen[key] = (where, res)

    patients = [k for k in resources if k.startswith("Patient/")]
    if len(patients) != 1:
        err(where, f"expected exactly one Patient, found {patients}")
        return None
    patient_key = patients[0]
    patient_id = patient_key.split("/", 1)[1]
    prefix = patient_id[: -len("patient")] if patient_id.endswith("-patient") else patient_id + "-"
    for key, res in resources.items():
        ewhere = f"{where} {key}"
        if key not in SHARED and not res["id"].startswith(prefix):
            err(ewhere, f"id should start with the patient prefix {prefix!r}")
        for rpath, target in references(res):
            m = REL_REF_RE.match(target)
            if not m:
                err(ewhere, f"{rpath}: reference {target!r} is not ResourceType/id")
            elif target not in resources:
                err(ewhere, f"{rpath}: reference {target!r} does not resolve inside the bundle")
        for skey in SUBJECT_KEYS:
            val = res.get(skey)
            if isinstance(val, dict) and "reference" in val and val["reference"] != patient_key:
                err(ewhere, f"{skey} must point to {patient_key}")
        if res["resourceType"] == "Coverage" and res.get("status") == "active":
            payor = (res.get("payor") or [{}])[0]
            if not payor.get("display") or not payor.get("identifier", {}).get("value"):
                err(ewhere, "payor[0] needs a display and an identifier.value")
        if res["resourceType"] == "DiagnosticReport":
            if not res.get("conclusion") or not res.get("presentedForm"):
                err(ewhere, "radiology reports need conclusion and presentedForm")
    if not any(k.startswith("Coverage/") and r.get("status") == "active" for k, r in resources.items()):
        err(where, "no active Coverage")
    return {"patient": patient_key, "resources": resources}


def check_orders(path: Path, record: dict | None) -> None:
    where = f"orders/{path.name}"
    bundle = load(path)
    if bundle is None:
        return
    fhir_validate(where, bundle)
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "collection":
        err(where, "must be a Bundle of type collection")
        return
    entries = bundle.get("entry", [])
    if not entries:
        err(where, "no draft orders")
    for i, entry in enumerate(entries):
        res = entry.get("resource", {})
        ewhere = f"{where} entry[{i}] {res.get('resourceType')}/{res.get('id')}"
        fhir_validate(ewhere, res)
        check_codes(ewhere, res)
        if res.get("resourceType") != "ServiceRequest":
            err(ewhere, "draft orders must be ServiceRequests")
            continue
        rid = res.get("id", "")
        if not ID_RE.match(rid) or rid.isdigit():
            err(ewhere, "bad id")
        if res.get("status") != "draft" or res.get("intent") != "order":
            err(ewhere, "status must be draft and intent order")
        if not any(c.get("system") == CPT for c in res.get("code", {}).get("coding", [])):
            err(ewhere, "code needs a CPT coding")
        if not res.get("code", {}).get("text"):
            err(ewhere, "code needs text")
        body = res.get("bodySite") or []
        if not body or not body[0].get("coding") or not body[0].get("text"):
            err(ewhere, "bodySite needs a coding and text")
        for field in ("occurrenceDateTime", "authoredOn", "priority", "requester", "insurance", "reasonReference"):
            if field not in res:
                err(ewhere, f"missing {field}")
        if record is None:
            continue
        if res.get("subject", {}).get("reference") != record["patient"]:
            err(ewhere, f"subject must be {record['patient']}")
        for rpath, target in references(res):
            if target not in record["resources"]:
                err(ewhere, f"{rpath}: {target!r} not found in patients/{path.name}")
        for ins in res.get("insurance", []):
            if not ins.get("reference", "").startswith("Coverage/"):
                err(ewhere, "insurance must reference a Coverage")


def check_request(path: Path) -> None:
    where = f"requests/{path.name}"
    req = load(path)
    if req is None:
        return
    if req.get("hook") != "order-sign":
        err(where, "hook must be order-sign")
    for field in ("hookInstance", "fhirServer", "fhirAuthorization", "context"):
        if field not in req:
            err(where, f"missing {field}")
    ctx = req.get("context", {})
    for field in ("userId", "patientId", "draftOrders"):
        if field not in ctx:
            err(where, f"context.{field} missing")
    if "draftOrders" in ctx:
        fhir_validate(f"{where} context.draftOrders", ctx["draftOrders"])
        for i, e in enumerate(ctx["draftOrders"].get("entry", [])):
            fhir_validate(f"{where} context.draftOrders.entry[{i}]", e.get("resource"))
    for key, value in (req.get("prefetch") or {}).items():
        pwhere = f"{where} prefetch.{key}"
        if not fhir_validate(pwhere, value):
            continue
        if value["resourceType"] == "Bundle":
            entries = value.get("entry", [])
            if value.get("type") != "searchset" or value.get("total") != len(entries):
                err(pwhere, "must be a searchset Bundle whose total equals its entry count")
            for i, e in enumerate(entries):
                fhir_validate(f"{pwhere}.entry[{i}]", e.get("resource"))
        elif key != "patient":
            err(pwhere, "only the patient key may hold a bare resource")


def check_requests_up_to_date(names: list[str]) -> None:
    """requests/ must equal what make_requests.py would write now."""
    for name in names:
        bundle = json.loads((HERE / "patients" / f"{name}.json").read_text(encoding="utf-8"))
        resources = [e["resource"] for e in bundle.get("entry", [])]
        patient = next((r for r in resources if r["resourceType"] == "Patient"), None)
        orders = json.loads((HERE / "orders" / f"{name}.json").read_text(encoding="utf-8"))
        for variant, prefetch in (("prefetch", make_requests.build_prefetch(resources, patient)),
                                  ("no-prefetch", None)):
            stem = f"{name}-{variant}"
            expected = make_requests.build_request(stem, patient, orders, prefetch)
            text = json.dumps(expected, indent=2, ensure_ascii=False) + "\n"
            target = HERE / "requests" / f"{stem}.json"
            if not target.exists() or target.read_text(encoding="utf-8") != text:
                err(f"requests/{stem}.json", "stale or missing: run python3 fhir_fixtures/make_requests.py")


def main() -> int:
    seen: dict = {}
    records: dict[str, dict | None] = {}
    patient_files = sorted((HERE / "patients").glob("*.json"))
    for path in patient_files:
        records[path.stem] = check_patient_bundle(path, seen)
    order_ids: set[str] = set()
    for path in sorted((HERE / "orders").glob("*.json")):
        if path.stem not in records:
            err(f"orders/{path.name}", "no patient bundle with the same name")
        check_orders(path, records.get(path.stem))
        data = load(path) or {}
        for e in data.get("entry", []):
            key = f"{e['resource'].get('resourceType')}/{e['resource'].get('id')}"
            if key in seen or key in order_ids:
                err(f"orders/{path.name}", f"id {key} is not globally unique")
            order_ids.add(key)
    for name in records:
        if not (HERE / "orders" / f"{name}.json").exists():
            err(f"patients/{name}.json", "no orders file with the same name")
    request_files = sorted((HERE / "requests").glob("*.json"))
    for path in request_files:
        check_request(path)
    check_requests_up_to_date([n for n in records if (HERE / "orders" / f"{n}.json").exists()])

    checked = len(patient_files) + len(list((HERE / "orders").glob("*.json"))) + len(request_files)
    if errors:
        for e in errors:
            print("ERROR", e, file=sys.stderr)
        print(f"{len(errors)} problem(s) in {checked} files", file=sys.stderr)
        return 1
    print(f"ok: {checked} files, {len(seen) + len(order_ids)} distinct resources valid (fhir.resources R4B)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
