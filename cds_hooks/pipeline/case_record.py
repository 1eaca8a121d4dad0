"""The whole evaluation of one surgical case, as the case view and the peer-to-peer brief show it.

Built at call time, next to the card, from the same results and the same record, and kept (sealed)
in the audit trail with the response (audit/call_record.py): the case view renders it from there, so
it shows what the surgeon was told and what it rested on, even after the record has changed. Every
criterion with its status, reason, thresholds and evidence (each piece described with its date and,
for findings read from report text, the quoted sentence); what could not be read; the documents a
prior-authorisation packet needs, each present (with the resource) or missing; the objections a
payer's reviewer is likely to raise and what the record offers against each.

The reviewer's wording and the packet's documents are rule pack data (`review.json` in the pack's
folder); this module only assembles them. Nothing here decides a status: the CQL did.
"""

from __future__ import annotations

import functools
import json
from datetime import date
from pathlib import Path

from cds_hooks.packs.loader import RulePack
from cds_hooks.pipeline.cards import UNMET, CardContext, describe, fill_text, plain_number
from cds_hooks.pipeline.criteria import CriterionResult

REVIEW_FILE = "review.json"
_PLACEHOLDER_START = "{"


@functools.lru_cache(maxsize=16)
def _review_file(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def review_data(pack: RulePack) -> dict:
    """The pack's reviewer data (documents, objections); empty when the pack has none."""
    return _review_file(Path(pack.folder) / REVIEW_FILE)


def _kind(pack: RulePack, r: CriterionResult) -> str:
    """Required as the result says (the profile's, or its pathway's, required criteria), else the pack's kind."""
    if r.required:
        return "required"
    return "informational" if pack.criterion(r.id).get("informational") else "advisory"


def _thresholds(template: str, values: dict, sources: dict) -> list[dict]:
    """The profile parameters a criterion's title names ({MinPTWeeks} -> 6), each with where the
    policy states it (the profile's `sources`: policy, section, date, note) when the pack says."""
    out = []
    for part in template.split(_PLACEHOLDER_START)[1:]:
        name = part.split("}", 1)[0]
        if name in values and name not in [t["name"] for t in out]:
            source = sources.get(name) if isinstance(sources.get(name), dict) else None
            out.append({"name": name, "value": values[name], "source": source})
    return out


def _evidence(refs: list[str], resources: dict[str, dict]) -> list[dict]:
    return [{"reference": ref, "text": describe(ref, resources)} for ref in refs]


def _criterion(ctx: CardContext, r: CriterionResult, values: dict) -> dict:
    spec = ctx.pack.criterion(r.id)
    labels = dict(ctx.pack.cards["statusLabels"])
    if spec.get("informational"):
        labels.update(ctx.pack.cards.get("informationalLabels", {}))
    step = spec.get("nextSteps", {}).get(r.status)
    item = {
        "id": r.id,
        "title": fill_text(spec["title"], values),
        "kind": _kind(ctx.pack, r),
        "status": r.status,
        "statusLabel": labels.get(r.status, r.status),
        "level": r.level,
        "reason": r.reason,
        "thresholds": _thresholds(spec["title"], values, getattr(ctx.choice.profile, "sources", None) or {}),
        "evidence": _evidence(r.evidence, ctx.resources),
        "outsideWindow": _evidence(r.outside_window, ctx.resources),
        "next": None,
    }
    if step:
        levels = r.level or ", ".join(ctx.case.levels) or "the operative level"
        item["next"] = fill_text(step, {**values, "level": levels})
    return item


def _needed(document: dict, required: set[str]) -> bool:
    needed = document.get("needed", "always")
    if needed == "always":
        return True
    return isinstance(needed, dict) and needed.get("whenRequired") in required


def _of_types(refs: list[str], types: set[str]) -> list[str]:
    return sorted({ref for ref in refs if ref.split("/", 1)[0] in types})


def _documents(ctx: CardContext, results: list[CriterionResult], review: dict, values: dict) -> list[dict]:
    """Each document of the packet: `present` with the resources that are it; `outside-window` when the
    record holds one only from before the policy's window (it does not count); `not-read` when the EHR
    did not return that kind of data; else `missing`."""
    required = {r.id for r in results if r.required}
    out = []
    for doc in review.get("documents", []):
        source = doc.get("from", {})
        types = set(source.get("resourceTypes", []))
        old: list[str] = []
        if source.get("order"):
            refs = list(ctx.case.references) if ctx.case.codes and ctx.case.levels else []
            described = [{"reference": ref, "text": o.display or o.label} for ref, o in zip(refs, ctx.case.orders)]
        else:
            if source.get("criterion"):
                hits = [r for r in results if r.id == source["criterion"]]
                refs = _of_types([ref for r in hits for ref in r.evidence], types)
                old = _of_types([ref for r in hits for ref in r.outside_window], types)
            else:
                refs = sorted(ref for ref, res in ctx.resources.items() if res.get("resourceType") in types)
            described = _evidence(refs or old, ctx.resources)
        if refs:
            status = "present"
        elif old:
            status = "outside-window"
        elif types & set(ctx.failed_sources):
            status = "not-read"
        else:
            status = "missing"
        out.append(
            {
                "id": doc["id"],
                "title": fill_text(doc["title"], values),
                "needed": _needed(doc, required),
                "status": status,
                "resources": described if status in ("present", "outside-window") else [],
            }
        )
    return out


# What the record offers against an objection when the pack says nothing more: never more than it holds.
ANSWERS = {
    "not-met": "Nothing in the record meets this criterion: what it holds (above) is what the reviewer will cite.",
    "not-documented": "Nothing in the record answers this.",
    "unavailable": "Not checked: the source could not be read. Bring the documents to the call.",
}


def _objections(criteria: list[dict], review: dict) -> list[dict]:
    """For every required criterion not met: the reviewer's objection, what the record holds on it,
    what (if anything) it offers against the objection, and what would answer it."""
    wording = review.get("objections", {})
    out = []
    for c in criteria:
        if c["kind"] != "required" or c["status"] not in UNMET:
            continue
        said = wording.get(c["id"], {}).get(c["status"])
        said = said if isinstance(said, dict) else {"objection": said}
        out.append(
            {
                "criterion": c["id"],
                "level": c["level"],
                "objection": said.get("objection") or f"{c['title']}: {c['statusLabel'].lower()}.",
                "finding": c["reason"],
                "seen": c["evidence"],
                "answer": said.get("answer") or ANSWERS[c["status"]],
                "next": c["next"],
            }
        )
    return out


def _age(birth: str | None, on: str) -> int | None:
    try:
        born, day = date.fromisoformat(birth[:10]), date.fromisoformat(on[:10])
    except (TypeError, ValueError):
        return None
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def _patient(resources: dict[str, dict], patient_id: str, reference_date: str) -> dict:
    p = resources.get(f"Patient/{patient_id}") or {}
    names = p.get("name") if isinstance(p.get("name"), list) else []
    name = next((n for n in names if isinstance(n, dict)), {})
    text = name.get("text") or " ".join([*(name.get("given") or []), name.get("family") or ""]).strip()
    return {
        "name": text or None,
        "birthDate": p.get("birthDate"),
        "gender": p.get("gender"),
        "age": _age(p.get("birthDate"), reference_date),
    }


def _reason(c: dict) -> str:
    text = c["reason"].rstrip(".") or c["title"]
    return f"{text} ({c['statusLabel'].lower()})"


def _sentences(ctx: CardContext, patient: dict, criteria: list[dict], failed: list[str]) -> list[str]:
    """The case in three sentences: who and what, what the record supports, what it does not (yet)."""
    who = (
        " ".join(
            str(x)
            for x in (f"{patient['age']}-year-old" if patient["age"] is not None else None, patient["gender"])
            if x
        )
        or "Patient"
    )
    codes = ", ".join(dict.fromkeys(c for c in ctx.case.codes if c != "text"))
    levels = ", ".join(ctx.case.levels) or "level not stated"
    payer = f", covered by {ctx.choice.payer_name}" if ctx.choice.payer_name else ""
    urgency = "urgent " if ctx.case.urgent else ""
    first = (
        f"{who}{payer}, for {urgency}{ctx.case.label}"
        + (f" ({codes})" if codes else "")
        + f" at {levels}, planned {ctx.case.reference_date}."
    )
    required = [c for c in criteria if c["kind"] == "required"]
    met = [c for c in required if c["status"] not in UNMET]
    unmet = [c for c in required if c["status"] in UNMET]
    second = (
        ("For it, the record shows: " + "; ".join(_reason(c) for c in met) + ".")
        if met
        else "The record meets none of the required criteria."
    )
    if unmet:
        third = "Against it: " + "; ".join(_reason(c) for c in unmet) + "."
    else:
        third = "Every required criterion is met on the record."
    if failed:
        third += f" Not read from the EHR: {', '.join(failed)}."
    return [first, second, third]


def case_record(ctx: CardContext, results: list[CriterionResult]) -> dict:
    """The case view's and the brief's content for one case (JSON-serialisable)."""
    profile = ctx.choice.profile
    values = {k: plain_number(v) for k, v in profile.parameters.items()}
    review = review_data(ctx.pack)
    criteria = [_criterion(ctx, r, values) for r in results]
    patient = _patient(ctx.resources, ctx.patient_id, ctx.case.reference_date)
    pathway = getattr(ctx, "pathway", None)
    return {
        "procedure": ctx.pack.procedure_name,
        # The payer pathway the library chose (docs/criteria.md, "Pathways"), as the surgeon was told.
        "pathway": (
            {"id": pathway.id, "label": pathway.label, "reason": pathway.reason, "excluded": pathway.excluded}
            if pathway is not None
            else None
        ),
        "case": {
            "label": ctx.case.label,
            "codes": [c for c in ctx.case.codes if c != "text"],
            "levels": list(ctx.case.levels),
            "referenceDate": ctx.case.reference_date,
            "urgent": ctx.case.urgent,
            "orders": [
                {
                    "reference": o.reference,
                    "code": o.code,
                    "label": o.label,
                    "display": o.display,
                    "levels": o.levels,
                    "priority": o.priority,
                }
                for o in ctx.case.orders
            ],
        },
        "patient": patient,
        "payer": ctx.choice.payer_name,
        "profile": {
            "name": profile.name,
            "label": profile.label,
            "version": profile.version,
            "url": ctx.policy_url,
            "parameters": values,
        },
        "summary": _sentences(ctx, patient, criteria, ctx.failed_sources),
        "criteria": criteria,
        "unavailable": list(ctx.failed_sources),
        "documents": _documents(ctx, results, review, values),
        "objections": _objections(criteria, review),
        "disclaimer": ctx.pack.cards.get("disclaimer", ""),
    }
