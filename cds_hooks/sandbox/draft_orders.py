"""Draft fusion orders as an EHR would put them in `context.draftOrders` of an order-sign call.

CDS Hooks `order-sign` hook (v1.x): `draftOrders` is a FHIR Bundle of the orders being signed.
FHIR R4 ServiceRequest: `status` draft, `intent` order, `code` (CPT), `bodySite` (one
CodeableConcept per interspace, in the project's spinal-interspace code system), `priority`
(routine | urgent | asap | stat), `occurrenceDateTime` (the planned date, which the criteria count
back from).
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import date
from pathlib import Path

from cds_hooks.errors import CdsError
from cds_hooks.hooks.hook_request import draft_order_resources
from cds_hooks.pipeline.orders import OrderDetector, group_cases
from cds_hooks.spine.levels import INTERSPACES, Region, interspace_coding, interspaces_in, region

CPT = "http://www.ama-assn.org/go/cpt"
PRIORITIES = ("routine", "urgent", "asap", "stat")
SURGICAL_CATEGORY = {
    "coding": [{"system": "http://snomed.info/sct", "code": "387713003", "display": "Surgical procedure"}],
    "text": "Surgical procedure",
}


class OrderError(CdsError, ValueError):
    """An order the flags or the file describe cannot be built."""

    code = "order-invalid"


def parse_levels(values: list[str] | str) -> list[str]:
    """Interspaces named by free text, in spinal order: `L5-S1`, `L4-5`, `L4-S1` (two interspaces)."""
    texts = [values] if isinstance(values, str) else list(values)
    found: list[str] = []
    for text in texts:
        named = interspaces_in(text)
        if not named:
            raise OrderError(f"{text!r} names no spinal interspace (examples: L4-L5, L5-S1, L4-S1, C5-C6)")
        found.extend(named)
    return [s for s in INTERSPACES if s in found]


def _catalogue(orders_spec: dict) -> list[dict]:
    out: list[dict] = []
    for role, key in (("primary", "primary"), ("add-on", "addOn")):
        for entry in orders_spec.get(key, []):
            out.append(
                {
                    "code": entry["code"],
                    "system": entry["system"],
                    "display": entry.get("display"),
                    "label": entry.get("label"),
                    "role": role,
                    "attachesTo": list(entry.get("attachesTo", [])),
                }
            )
    return out


def order_catalogue(packs) -> list[dict]:
    """Every order code the rule packs recognise: `{code, system, display, label, role, attachesTo}`."""
    return [item for pack in packs for item in _catalogue(pack.orders)]


def catalogue_from_folder(cql_root: Path) -> list[dict]:
    """The same catalogue read from `pack.json` files alone (no ELM), for command-line use."""
    out: list[dict] = []
    for pack_file in sorted(Path(cql_root).glob("*/pack.json")):
        with open(pack_file, encoding="utf-8") as f:
            out.extend(_catalogue(json.load(f).get("orders", {})))
    return out


def claiming_services(cql_root: Path, orders: dict, hook: str = "order-sign") -> list[str]:
    """The ids of the services in the `pack.json` files under `cql_root` whose pack claims one of the
    draft orders: the service's own order matching (pipeline/orders.py, with the pack's spinal region),
    so that a command-line caller sends the orders where an EHR's call would get cards from them. A
    site's local order codes are the service's own configuration and are not known here."""
    resources = draft_order_resources(orders)
    claiming: list[str] = []
    for pack_file in sorted(Path(cql_root).glob("*/pack.json")):
        with open(pack_file, encoding="utf-8") as f:
            doc = json.load(f)
        service = doc.get("service") or {}
        if service.get("hook") != hook:
            continue
        spine = doc.get("spine")
        try:
            spinal = (
                region(spine.get("region"))
                if "spine" in doc.get("extensions", []) and isinstance(spine, dict)
                else None
            )
        except ValueError:
            continue  # the service refuses such a pack at start; it serves nothing
        if group_cases(OrderDetector(doc.get("orders", {}), region=spinal).detect(resources)):
            claiming.append(service.get("id", pack_file.parent.name))
    return claiming


def check_levels_for_code(cql_root: Path, cpt: str, levels: list[str]) -> None:
    """Refuses a level that no pack ordering `cpt` has in its spinal region (pack.json `spine.region`):
    such an order would reach a service that never checks it at that level (a C5-C6 ALIF)."""
    regions: list[tuple[str, Region]] = []
    for pack_file in sorted(Path(cql_root).glob("*/pack.json")):
        with open(pack_file, encoding="utf-8") as f:
            doc = json.load(f)
        orders = doc.get("orders", {})
        codes = {e.get("code") for key in ("primary", "addOn") for e in orders.get(key, [])}
        spine = doc.get("spine")
        if cpt in codes and isinstance(spine, dict):
            try:
                regions.append((doc.get("service", {}).get("id", pack_file.parent.name), region(spine.get("region"))))
            except ValueError:
                continue  # the service refuses such a pack at start; nothing to check the level against
    foreign = [lvl for lvl in levels if regions and not any(lvl in r for _, r in regions)]
    if foreign:
        services = "; ".join(f"{sid}: {', '.join(r.interspaces)}" for sid, r in regions)
        raise OrderError(f"{', '.join(foreign)} is not a level of the service that orders CPT {cpt} ({services})")


def fusion_order(
    *,
    patient_id: str,
    cpt: str,
    levels: list[str],
    priority: str = "routine",
    user_id: str | None = None,
    occurrence: str | None = None,
    authored: str | None = None,
    display: str | None = None,
    order_id: str | None = None,
) -> dict:
    """One draft ServiceRequest for a lumbar fusion at `levels`."""
    if not cpt or not cpt.strip():
        raise OrderError("a CPT code is required")
    if not levels:
        raise OrderError("at least one level is required")
    if priority not in PRIORITIES:
        raise OrderError(f"priority must be one of {', '.join(PRIORITIES)}")
    for value, name in ((occurrence, "date"), (authored, "authored date")):
        if value:
            try:
                date.fromisoformat(value)
            except ValueError as exc:
                raise OrderError(f"{name} {value!r} is not a date (YYYY-MM-DD)") from exc
    code = cpt.strip()
    display = display or f"CPT {code}"
    order = {
        "resourceType": "ServiceRequest",
        "id": order_id or f"draft-{uuid.uuid4()}",
        "status": "draft",
        "intent": "order",
        "category": [copy.deepcopy(SURGICAL_CATEGORY)],
        "priority": priority,
        "code": {
            "coding": [{"system": CPT, "code": code, "display": display}],
            "text": f"{'-'.join(_span(levels))} {display}",
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": authored or date.today().isoformat(),
        "bodySite": [interspace_coding(level) for level in levels],
    }
    if occurrence:
        order["occurrenceDateTime"] = occurrence
    if user_id and "/" in user_id:
        order["requester"] = {"reference": user_id}
    return order


def _span(levels: list[str]) -> list[str]:
    """`["L4-L5", "L5-S1"]` -> `["L4", "S1"]` for a readable order text."""
    if len(levels) == 1:
        return [levels[0]]
    return [levels[0].split("-")[0], levels[-1].split("-")[1]]


def bundle(orders: list[dict]) -> dict:
    """`draftOrders`: a collection Bundle of the orders being signed."""
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": o} for o in orders]}


def read_orders_file(path: Path) -> dict:
    """A draft-orders Bundle from a file (a Bundle, or a single ServiceRequest wrapped into one)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise OrderError(f"cannot read {path}: {exc}") from exc
    if isinstance(data, dict) and data.get("resourceType") == "Bundle":
        return data
    if isinstance(data, dict) and isinstance(data.get("resourceType"), str):
        return bundle([data])
    raise OrderError(f"{path} holds neither a Bundle nor a FHIR resource")


def patient_of(orders: dict) -> str | None:
    """The patient id the orders are for (`subject` of the first order that names one)."""
    for entry in orders.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        ref = (resource or {}).get("subject", {}).get("reference") if isinstance(resource, dict) else None
        if isinstance(ref, str) and ref.startswith("Patient/"):
            return ref.split("/", 1)[1]
    return None


def requester_of(orders: dict) -> str | None:
    for entry in orders.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        ref = (resource or {}).get("requester", {}).get("reference") if isinstance(resource, dict) else None
        if isinstance(ref, str) and "/" in ref:
            return ref
    return None


def order_summary(orders: dict) -> dict | None:
    """The orders of a draft-orders Bundle as one editable fusion order.

    CPT code, priority and date of the first ServiceRequest; the levels of all of them (a 360 case
    spread over several orders covers every level its orders name). None when there is no
    ServiceRequest.
    """
    requests_ = [e.get("resource") for e in orders.get("entry") or [] if isinstance(e, dict)]
    requests_ = [r for r in requests_ if isinstance(r, dict) and r.get("resourceType") == "ServiceRequest"]
    if not requests_:
        return None
    first = requests_[0]
    codings = (first.get("code") or {}).get("coding") or []
    levels = {
        c["code"]
        for r in requests_
        for site in r.get("bodySite") or []
        for c in site.get("coding") or []
        if c.get("code") in INTERSPACES
    }
    return {
        "cpt": next((c.get("code") for c in codings if c.get("system") == CPT), None),
        "levels": [s for s in INTERSPACES if s in levels],
        "priority": first.get("priority") or "routine",
        "date": (first.get("occurrenceDateTime") or "")[:10] or None,
    }


def describe_orders(orders: dict) -> str:
    """`3 orders: L5-S1 anterior lumbar interbody fusion (ALIF); ...` from the orders' texts."""
    texts = []
    for e in orders.get("entry") or []:
        r = e.get("resource") if isinstance(e, dict) else None
        if isinstance(r, dict):
            code = r.get("code") or {}
            texts.append(
                code.get("text")
                or next((c.get("display") for c in code.get("coding") or []), None)
                or r.get("resourceType", "order")
            )
    return f"{len(texts)} order{'s' if len(texts) != 1 else ''}: " + "; ".join(texts)
