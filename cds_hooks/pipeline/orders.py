"""Which draft orders are spinal fusions, at which levels, grouped into surgical cases.

Detection order for each ServiceRequest in `draftOrders` (CDS Hooks order-sign, context.draftOrders):
the rule pack's primary and add-on codes; its concepts from other code systems (`orders.concepts`,
e.g. SNOMED CT; a concept broader than the procedure counts only when the order's text also names
it); the site's map of local order codes; code prefixes (ICD-10-PCS); a text match on the order's
code text or display, as the last resort.

An order's levels come from its `bodySite` (FHIR R4 ServiceRequest.bodySite), else from the levels
its code text names; only the pack's spinal region's interspaces are its levels (pack.json
`spine.region`), and a level of another region is kept apart (`other_levels`) so the card can say why
it does not count. An order that only the pack's text, concepts or code prefixes matched, or an
add-on, whose levels all lie in another region is another service's order and is left alone; so is
an add-on without a primary of this pack in a requisition that holds an order this pack does not
claim (the add-on attaches to that order: one add-on code can follow the primaries of two packs).
Orders sharing `ServiceRequest.requisition` form one surgical case; otherwise
each primary order is a case of its own, with the add-on orders that attach to it. Two cases for the
same operation (the same codes, levels and date: a co-surgeon's order) are one case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from cds_hooks.spine.levels import Region, explicit_interspaces_in, in_spinal_order, interspaces_of_sites

# Orders in these states are not being signed.
_IGNORED_STATUS = {"entered-in-error", "revoked", "completed"}

# How the card names a code of each system ("CPT 22558"); a system not listed shows its code alone.
CODE_SYSTEM_NAMES = {
    "http://www.ama-assn.org/go/cpt": "CPT",
    "http://snomed.info/sct": "SNOMED CT",
    "http://www.cms.gov/Medicare/Coding/ICD10": "ICD-10-PCS",
}


@dataclass
class FusionOrder:
    resource: dict
    reference: str
    code: str
    label: str
    role: str  # "primary" | "add-on"
    attaches_to: tuple[str, ...]
    matched_by: str  # "code" | "concept" | "local-code" | "code-prefix" | "text"
    levels: list[str]
    requisition: str | None
    priority: str | None
    reference_date: str | None
    display: str | None
    system: str | None = None
    other_levels: list[str] = field(default_factory=list)  # levels of another spinal region: not this pack's

    @property
    def code_text(self) -> str:
        """The code as a person reads it: "CPT 22558", "SNOMED CT 55705006"."""
        name = CODE_SYSTEM_NAMES.get(self.system or "")
        return f"{name} {self.code}" if name else self.code


@dataclass
class SurgicalCase:
    """One card's worth of fusion orders: the same operation, possibly several codes and levels."""

    orders: list[FusionOrder]
    levels: list[str] = field(default_factory=list)
    reference_date: str = ""
    urgent: bool = False
    other_levels: list[str] = field(default_factory=list)

    @property
    def codes(self) -> list[str]:
        return [o.code for o in self.orders]

    @property
    def label(self) -> str:
        labels: list[str] = []
        for o in self.orders:
            if o.role == "primary" and o.label not in labels:
                labels.append(o.label)
        if not labels:
            labels = [self.orders[0].label]
        return " + ".join(labels)

    @property
    def references(self) -> list[str]:
        return [o.reference for o in self.orders]


def _codings(concept) -> list[dict]:
    if not isinstance(concept, dict) or not isinstance(concept.get("coding"), list):
        return []
    return [
        c
        for c in concept["coding"]
        if isinstance(c, dict) and isinstance(c.get("code"), str) and isinstance(c.get("system"), (str, type(None)))
    ]


def _texts(concept) -> list[str]:
    if not isinstance(concept, dict):
        return []
    out = [concept["text"]] if isinstance(concept.get("text"), str) else []
    out += [c["display"] for c in _codings(concept) if isinstance(c.get("display"), str)]
    return out


def _date_part(value) -> str | None:
    if isinstance(value, str) and re.match(r"^\d{4}-\d{2}-\d{2}", value):
        return value[:10]
    return None


def reference_date_of(order: dict) -> str | None:
    """The order's date for windows: occurrence[x], else authoredOn (CRD: the date of service)."""
    timing = order.get("occurrenceTiming") if isinstance(order.get("occurrenceTiming"), dict) else {}
    period = order.get("occurrencePeriod") if isinstance(order.get("occurrencePeriod"), dict) else {}
    events = timing.get("event") if isinstance(timing.get("event"), list) else []
    for candidate in (
        order.get("occurrenceDateTime"),
        period.get("start"),
        events[0] if events else None,
        order.get("authoredOn"),
    ):
        found = _date_part(candidate)
        if found:
            return found
    return None


def _requisition_key(order: dict) -> str | None:
    req = order.get("requisition")
    if isinstance(req, dict) and isinstance(req.get("value"), str):
        return f"{req.get('system') or ''}|{req['value']}"
    return None


class OrderDetector:
    """Finds fusion orders using a rule pack's `orders` section and a site's local code map."""

    def __init__(
        self,
        orders_spec: dict,
        local_codes: dict[str, str] | None = None,
        procedure_name: str = "procedure",
        region: Region | None = None,
    ):
        # The label of an order matched without one of its own (by text): the pack's procedure name.
        self.procedure_name = procedure_name
        # The pack's spinal region (None: a pack without the spine extension keeps every level named).
        self.region = region
        self._by_code: dict[tuple[str, str], dict] = {}
        for role, key in (("primary", "primary"), ("add-on", "addOn")):
            for entry in orders_spec.get(key, []):
                self._by_code[(entry["system"], entry["code"])] = {**entry, "role": role}
        self._primary_codes = {code: spec for (_, code), spec in self._by_code.items()}
        # Concepts of other code systems: {"system", "code", "label", "needsText"}.
        self._concepts = {(c["system"], c["code"]): c for c in orders_spec.get("concepts", [])}
        self._prefixes = orders_spec.get("codePrefixes", [])
        self._patterns = [re.compile(p, re.IGNORECASE) for p in orders_spec.get("textPatterns", [])]
        # "system|code" -> a pack code (e.g. a site's local order code for an ALIF -> CPT "22558")
        self._local = dict(local_codes or {})

    def _classify(self, order: dict):
        concept = order.get("code")
        codings = _codings(concept)
        for c in codings:
            spec = self._by_code.get((c.get("system"), c["code"]))
            if spec:
                return spec, "code", c.get("display")
        texts = _texts(concept)
        named = any(p.search(t) for p in self._patterns for t in texts)
        for c in codings:
            found = self._concepts.get((c.get("system"), c["code"]))
            # A concept broader than the procedure ("spinal fusion", any region) needs the text to say which.
            if found and (named or not found.get("needsText")):
                spec = {
                    "system": c.get("system"),
                    "code": c["code"],
                    "label": found.get("label", self.procedure_name),
                    "role": "primary",
                    "attachesTo": [],
                }
                return spec, "concept", c.get("display")
        for c in codings:
            mapped = self._local.get(f"{c.get('system') or ''}|{c['code']}")
            if mapped and mapped in self._primary_codes:
                return self._primary_codes[mapped], "local-code", c.get("display")
        for c in codings:
            for p in self._prefixes:
                if c.get("system") == p["system"] and c["code"].upper().startswith(p["prefix"]):
                    spec = {
                        "system": p["system"],
                        "code": c["code"],
                        "label": p["label"],
                        "role": "primary",
                        "attachesTo": [],
                    }
                    return spec, "code-prefix", c.get("display")
        for text in texts:
            if any(p.search(text) for p in self._patterns):
                spec = {"code": "text", "label": self.procedure_name, "role": "primary", "attachesTo": []}
                return spec, "text", text
        return None, None, None

    def detect(self, resources: list[dict]) -> list[FusionOrder]:
        found: list[FusionOrder] = []
        # Requisitions holding an active order this pack does not claim (another service's, perhaps).
        foreign_requisitions: set[str] = set()
        for index, order in enumerate(resources):
            status = order.get("status")
            if order.get("resourceType") != "ServiceRequest" or (isinstance(status, str) and status in _IGNORED_STATUS):
                continue
            spec, how, display = self._classify(order)
            if spec is None:
                requisition = _requisition_key(order)
                if requisition:
                    foreign_requisitions.add(requisition)
                continue
            named = interspaces_of_sites(order.get("bodySite"))
            if not named:
                # No level in bodySite: the level the order's own text names.
                named = [lvl for text in _texts(order.get("code")) for lvl in explicit_interspaces_in(text)]
            levels, other = self.region.split(named) if self.region else (named, [])
            own_code = how in ("code", "local-code") and spec["role"] == "primary"
            if other and not levels and not own_code:
                continue  # another region's order, matched by words or codes several procedures share
            oid = order.get("id")
            found.append(
                FusionOrder(
                    resource=order,
                    reference=f"ServiceRequest/{oid}" if isinstance(oid, str) else f"draftOrders[{index}]",
                    code=spec["code"],
                    label=spec.get("label", self.procedure_name),
                    role=spec["role"],
                    attaches_to=tuple(spec.get("attachesTo", [])),
                    matched_by=how,
                    levels=levels,
                    requisition=_requisition_key(order),
                    priority=order.get("priority") if isinstance(order.get("priority"), str) else None,
                    reference_date=reference_date_of(order),
                    display=display,
                    system=spec.get("system"),
                    other_levels=other,
                )
            )
        hosted = {o.requisition for o in found if o.role == "primary" and o.requisition}
        return [
            o
            for o in found
            if not (o.role == "add-on" and o.requisition in foreign_requisitions and o.requisition not in hosted)
        ]


def group_cases(orders: list[FusionOrder], now: datetime | None = None) -> list[SurgicalCase]:
    """Orders sharing a requisition are one case; otherwise one case per primary plus its add-ons."""
    groups: list[list[FusionOrder]] = []
    by_requisition: dict[str, list[FusionOrder]] = {}
    loose: list[FusionOrder] = []
    for o in orders:
        if o.requisition:
            if o.requisition not in by_requisition:
                by_requisition[o.requisition] = []
                groups.append(by_requisition[o.requisition])
            by_requisition[o.requisition].append(o)
        else:
            loose.append(o)
    for o in loose:
        if o.role == "primary":
            groups.append([o])
    for o in loose:
        if o.role != "primary":
            host = next((g for g in groups if any(p.role == "primary" and p.code in o.attaches_to for p in g)), None)
            if host is not None:
                host.append(o)
            else:
                groups.append([o])
    today = (now or datetime.now(timezone.utc)).date().isoformat()
    cases: list[SurgicalCase] = []
    same_operation: dict[tuple, SurgicalCase] = {}
    for group in groups:
        levels = [lvl for o in group for lvl in o.levels]
        primaries = [o for o in group if o.role == "primary"] or group
        ref = next((o.reference_date for o in primaries if o.reference_date), None)
        ref = ref or next((o.reference_date for o in group if o.reference_date), None) or today
        case = SurgicalCase(
            orders=group,
            levels=in_spinal_order(levels),
            reference_date=ref,
            urgent=any(o.priority in ("urgent", "stat", "asap") for o in group),
            other_levels=in_spinal_order(lvl for o in group for lvl in o.other_levels),
        )
        key = (tuple(sorted({(o.system, o.code) for o in group}, key=str)), tuple(case.levels), ref)
        twin = same_operation.get(key)
        if twin is not None:
            # The same operation ordered twice (surgeon and co-surgeon): one case, one card.
            twin.orders.extend(group)
            twin.urgent = twin.urgent or case.urgent
            twin.other_levels = in_spinal_order(twin.other_levels + case.other_levels)
            continue
        same_operation[key] = case
        cases.append(case)
    return cases
