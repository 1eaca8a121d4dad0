"""Cards: one per surgical case, criterion by criterion, with evidence and next steps.

CDS Hooks 2.0, "CDS Service Response" / "Card Attributes": `uuid`, `summary` (< 140 characters),
`detail` (GitHub-flavoured markdown), `indicator` (info | warning | critical), `source` (label,
url, topic), `suggestions` (with `uuid` and `actions`), `selectionBehavior` (required when
suggestions are present), `overrideReasons` (Coding with display) and `links` (label, url, type).
All wording comes from the rule pack; this module only assembles it.

The verdict (`extension["org.example.fusion-cds.verdict"]`) follows from the library's results: every
required criterion met or waived is `likely-to-pass`; any not met, not documented or not checkable is
`likely-to-fail`; a source the required criteria read (or the Coverage that picks the policy) that
could not be read makes it `incomplete`; the library's pathway may make it `urgent` (a confirmed,
current red flag) or `excluded-indication`. Only `likely-to-pass` and `urgent` are `info`: an order's
priority alone never changes the indicator, and a card about an urgent order never suggests delaying
measures (what the urgent pathway `withholds` in the pack). The summary always keeps its verdict
within the 140 characters: levels, codes and the procedure's label are shortened or left out first.
"""

from __future__ import annotations

import copy
import logging
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace

from cds_hooks.packs.loader import RulePack
from cds_hooks.pipeline.criteria import CriterionResult, PathwayResult
from cds_hooks.pipeline.orders import SurgicalCase
from cds_hooks.pipeline.profiles import ProfileChoice
from cds_hooks.spine.levels import interspace_coding, levels_span

log = logging.getLogger("cds_hooks.cards")

EXTENSION_KEY = "org.example.fusion-cds.criteria"
VERDICT_KEY = "org.example.fusion-cds.verdict"
SUMMARY_LIMIT = 140  # CDS Hooks 2.0 Card.summary: "<140 characters"
INFO_VERDICTS = ("likely-to-pass", "urgent")
URGENT_PATHWAY = "urgent"  # the pathway of a confirmed, current red flag (docs/criteria.md, "Pathways")
UNMET = ("not-met", "not-documented", "unavailable")
_PLACEHOLDER = re.compile(r"\{([A-Za-z][A-Za-z0-9]*)\}")


@dataclass
class CardContext:
    """Everything a card needs besides the results; built by the evaluation pipeline."""

    pack: RulePack
    case: SurgicalCase
    choice: ProfileChoice
    patient_id: str
    user_id: str
    resources: dict[str, dict]
    failed_sources: list[str]
    policy_url: str | None
    codes: dict[str, dict]
    # Why each failed resource type could not be read ("ImagingStudy" -> "FHIR server answered HTTP 503").
    failed_reasons: dict[str, str] = field(default_factory=dict)
    # The library's pathway for the case (docs/criteria.md, "Pathways"); None when it names none.
    pathway: PathwayResult | None = None

    @property
    def withheld(self) -> set[str]:
        """Criteria whose next steps and suggested orders are withheld: what the case's pathway withholds
        (pack data `pathways[].withholds`). An order marked urgent, asap or stat withholds what the urgent
        pathway does even without a red flag: a card about an urgent order never suggests delaying measures."""
        ids = {self.pathway.id} if self.pathway else set()
        if self.case.urgent:
            ids.add(URGENT_PATHWAY)
        return {cid for p in self.pack.pathways if p["id"] in ids for cid in p.get("withholds") or []}


def fill_text(text: str, values: dict) -> str:
    return _PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), m.group(0))), text)


def plain_number(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# ---------------------------------------------------------------- evidence descriptions


def _concept_text(concept) -> str | None:
    if not isinstance(concept, dict):
        return None
    if isinstance(concept.get("text"), str) and concept["text"]:
        return concept["text"]
    for c in concept.get("coding") or []:
        if isinstance(c, dict) and isinstance(c.get("display"), str):
            return c["display"]
    for c in concept.get("coding") or []:
        if isinstance(c, dict) and isinstance(c.get("code"), str):
            return c["code"]
    return None


def _date(resource: dict) -> str | None:
    for key in (
        "effectiveDateTime",
        "performedDateTime",
        "started",
        "recordedDate",
        "onsetDateTime",
        "authoredOn",
        "issued",
        "dateAsserted",
        "occurrenceDateTime",
    ):
        if isinstance(resource.get(key), str):
            return resource[key][:10]
    for key in ("effectivePeriod", "performedPeriod", "period", "onsetPeriod", "effectivePeriod"):
        period = resource.get(key)
        if isinstance(period, dict):
            start, end = period.get("start"), period.get("end")
            if isinstance(start, str) and isinstance(end, str):
                return f"{start[:10]} to {end[:10]}"
            if isinstance(start, str):
                return start[:10]
    return None


def _value_text(obs: dict) -> str | None:
    if isinstance(obs.get("valueQuantity"), dict):
        q = obs["valueQuantity"]
        return f"{plain_number(q.get('value'))} {q.get('unit') or q.get('code') or ''}".strip()
    if isinstance(obs.get("valueCodeableConcept"), dict):
        return _concept_text(obs["valueCodeableConcept"])
    for key in ("valueString", "valueInteger", "valueBoolean", "valueDateTime"):
        if key in obs:
            return str(obs[key])
    return None


def _sites(resource: dict) -> str | None:
    site = resource.get("bodySite")
    sites = site if isinstance(site, list) else [site]
    texts = [t for t in (_concept_text(s) for s in sites) if t]
    return ", ".join(texts) if texts else None


_SOURCE_EXTENSION = "http://fusion-cds.example.org/fhir/StructureDefinition/report-text-source"
_SUPERSEDED_EXTENSION = "http://fusion-cds.example.org/fhir/StructureDefinition/report-text-superseded"


def _parts(extension: dict) -> dict:
    out = {}
    for e in extension.get("extension") or []:
        if isinstance(e, dict) and isinstance(e.get("url"), str):
            out[e["url"]] = next((v for k, v in e.items() if k.startswith("value")), None)
    return out


def _report_text_source(obs: dict) -> dict | None:
    """The sentence a derived Observation was read from (extension report-text-source), if any."""
    for e in obs.get("extension") or []:
        if isinstance(e, dict) and e.get("url") == _SOURCE_EXTENSION:
            return _parts(e)
    return None


def _describe_derived(obs: dict, when: str | None) -> str:
    """A finding read from report text: what it says, and the quoted sentence (and what the impression overruled)."""
    source = _report_text_source(obs) or {}
    what = (_concept_text(obs.get("code")) or "Finding").replace(" (from the report text)", "")
    value = _value_text(obs)
    for comp in obs.get("component") or []:
        text = _concept_text(comp.get("valueCodeableConcept")) if isinstance(comp, dict) else None
        if text:
            value = f"{value}, {text.lower()}" if value else text.lower()
    site = _sites(obs)
    line = f"Report text ({source.get('section', 'report')}{', ' + when if when else ''}): {what}"
    line += f": {value.lower()}" if value else ""
    line += f" at {site}" if site else ""
    line += f" — “{source.get('quote', '')}”"
    overruled = [
        _parts(e) for e in obs.get("extension") or [] if isinstance(e, dict) and e.get("url") == _SUPERSEDED_EXTENSION
    ]
    if overruled:
        line += (
            " (the impression wins over the findings section, which reads "
            + "; ".join(f"{o.get('reading', '')}: “{o.get('quote', '')}”" for o in overruled)
            + ")"
        )
    return line


def describe(reference: str, resources: dict[str, dict]) -> str:
    """One line naming what a piece of evidence is, where and when."""
    r = resources.get(reference)
    if r is None:
        return reference
    kind = r.get("resourceType")
    when = _date(r)
    if kind == "ImagingStudy":
        codes = r.get("procedureCode") if isinstance(r.get("procedureCode"), list) else []
        what = r.get("description") or next((t for t in map(_concept_text, codes) if t), None) or "Imaging study"
    elif kind == "DiagnosticReport":
        what = _concept_text(r.get("code")) or "Report"
        conclusion = r.get("conclusion")
        if isinstance(conclusion, str) and conclusion.strip():
            text = " ".join(conclusion.split())
            what = f"{what} — impression: “{text[:240]}{'…' if len(text) > 240 else ''}”"
    elif kind == "Condition":
        what = _concept_text(r.get("code")) or "Condition"
        severity = _concept_text(r.get("severity"))
        if severity:
            what += f", {severity.lower()}"
    elif kind == "Observation" and _report_text_source(r):
        return _describe_derived(r, when)
    elif kind == "Observation":
        what = _concept_text(r.get("code")) or "Observation"
        value = _value_text(r)
        if value:
            what += f": {value}"
    elif kind in ("MedicationRequest", "MedicationStatement"):
        what = _concept_text(r.get("medicationCodeableConcept")) or "Medication"
    elif kind == "Encounter":
        types = r.get("type") if isinstance(r.get("type"), list) else []
        what = next((t for t in map(_concept_text, types) if t), None) or "Encounter"
    else:
        what = _concept_text(r.get("code")) or kind or "Record"
    site = _sites(r) if kind in ("Condition", "Observation", "Procedure") else None
    parts = [what]
    if site:
        parts.append(f"at {site}")
    line = " ".join(parts)
    return f"{line} ({when})" if when else line


# ---------------------------------------------------------------- card assembly


def _levels_text(ctx: CardContext, levels: list[str]) -> str:
    return ", ".join(levels) if levels else ctx.pack.wording.say("levelsNotStated")


def _grouped(results: list[CriterionResult]) -> dict[str, list[CriterionResult]]:
    grouped: dict[str, list[CriterionResult]] = {}
    for r in results:
        grouped.setdefault(r.id, []).append(r)
    return grouped


def _worst(results: list[CriterionResult]) -> str:
    for status in ("unavailable", "not-met", "not-documented", "met", "waived"):
        if any(r.status == status for r in results):
            return status
    return "not-documented"


def _overall(items: list[CriterionResult]) -> str:
    """One status for a criterion over all its levels: met only when every level is met."""
    statuses = {r.status for r in items}
    if statuses <= {"met", "waived"}:
        return "waived" if statuses == {"waived"} else "met"
    for status in ("not-met", "unavailable", "not-documented"):
        if status in statuses:
            return status
    return _worst(items)


@dataclass
class Verdict:
    """What the card concludes for one case, before any wording."""

    name: str  # likely-to-pass | likely-to-fail | incomplete | urgent | excluded-indication
    required: list[str]
    unmet: list[str]
    unchecked: list[str]
    unread: list[str]  # failed resource types that matter to this verdict

    @property
    def indicator(self) -> str:
        return "info" if self.name in INFO_VERDICTS else "warning"


def _required(ctx: CardContext, grouped: dict[str, list[CriterionResult]]) -> list[str]:
    """The criteria this case must meet: the pathway's when the library names them, else the profile's."""
    ids = ctx.pathway.required if ctx.pathway else ctx.choice.profile.required
    return [cid for cid in grouped if cid in ids]


def _unread(ctx: CardContext, required: list[str]) -> list[str]:
    """Failed resource types that a required criterion reads, that say whose record it is (Patient) or
    that choose the policy (Coverage)."""
    relevant = {"Patient", "Coverage"}
    for cid in required:
        relevant.update(ctx.pack.criterion(cid).get("sources", []))
    return [t for t in ctx.failed_sources if t in relevant]


def judge(ctx: CardContext, results: list[CriterionResult]) -> Verdict:
    grouped = _grouped(results)
    required = _required(ctx, grouped)
    unmet = [cid for cid in required if _overall(grouped[cid]) in UNMET]
    unchecked = [cid for cid in unmet if _overall(grouped[cid]) == "unavailable"]
    unread = _unread(ctx, required)
    if ctx.pathway and ctx.pathway.id == URGENT_PATHWAY:
        name = "urgent"
    elif ctx.pathway and ctx.pathway.excluded:
        name = "excluded-indication"
    elif unread or unchecked:
        name = "incomplete"
    elif unmet:
        name = "likely-to-fail"
    else:
        name = "likely-to-pass"
    return Verdict(name, required, unmet, unchecked, unread)


def _code_list(case: SurgicalCase, joiner: str) -> str:
    """Codes in order, each once, with how many levels it is ordered at: "22633, 22634x2" or "22633+22634x2".

    The same code at the same levels twice (a co-surgeon's order) is one procedure.
    """
    counts = Counter(
        code for code, _ in dict.fromkeys((o.code, tuple(o.levels)) for o in case.orders) if code != "text"
    )
    return joiner.join(f"{code}x{n}" if n > 1 else code for code, n in counts.items())


def _fits(text: str) -> bool:
    return len(text) < SUMMARY_LIMIT


def summary_of(ctx: CardContext, verdict: Verdict) -> str:
    """The card's summary; the verdict always fits, whatever must give way first (codes, levels, label)."""
    values = {
        "required": len(verdict.required),
        "unmet": len(verdict.unmet) - len(verdict.unchecked),
        "unchecked": len(verdict.unchecked),
    }
    key = verdict.name
    if key == "incomplete" and not values["unmet"]:
        key = "incomplete-unchecked" if values["unchecked"] else "incomplete-met"
    phrases = [
        fill_text(ctx.pack.cards["verdicts"][key], values),
        fill_text(ctx.pack.cards["verdictsShort"][key], values),
    ]
    prefix = "Urgent " if ctx.case.urgent else ""
    levels = ", ".join(ctx.case.levels) if ctx.case.levels else "level not stated"
    span = levels_span(ctx.case.levels) or "level not stated"
    label = ctx.case.label
    codes, short_codes = _code_list(ctx.case, ", "), _code_list(ctx.case, "+")
    whats = [
        f"{levels} {label}" + (f" ({codes})" if codes else ""),
        f"{span} {label}" + (f" ({short_codes})" if short_codes else ""),
        f"{span} {label}",
        f"{span}" + (f" ({short_codes})" if short_codes else ""),
        span,
    ]
    for phrase in phrases:
        for what in whats:
            for lead in (prefix, ""):
                candidate = f"{lead}{what}: {phrase}"
                if _fits(candidate):
                    return candidate
    room = SUMMARY_LIMIT - 1 - len(f": {phrases[1]}")
    return f"{span[: max(room - 1, 0)]}…: {phrases[1]}"


def _why_unread(ctx: CardContext, types: list[str]) -> str:
    reasons = list(dict.fromkeys(ctx.failed_reasons.get(t) or "no answer" for t in types))
    return "; ".join(reasons)


def shown_reason(ctx: CardContext, result: CriterionResult) -> str:
    """The reason the card gives: never a finding about records that could not be read."""
    sources = ctx.pack.criterion(result.id).get("sources", [])
    unread = [t for t in ctx.failed_sources if t in sources]
    wording = ctx.pack.cards.get("couldNotRead", {})
    if result.status == "unavailable":
        unread = unread or list(ctx.failed_sources)
        if unread and "criterion" in wording:
            return fill_text(wording["criterion"], {"types": ", ".join(unread), "why": _why_unread(ctx, unread)})
    if result.status == "not-documented" and unread and "notDocumented" in wording:
        return fill_text(wording["notDocumented"], {"types": ", ".join(unread), "why": _why_unread(ctx, unread)})
    return result.reason


# Evidence reads best from the study to the finding to the treatment.
_EVIDENCE_ORDER = [
    "ImagingStudy",
    "DiagnosticReport",
    "Observation",
    "Condition",
    "Procedure",
    "Encounter",
    "MedicationRequest",
    "MedicationStatement",
]


def _evidence_key(reference: str, resources: dict[str, dict]):
    kind = reference.split("/", 1)[0]
    rank = _EVIDENCE_ORDER.index(kind) if kind in _EVIDENCE_ORDER else len(_EVIDENCE_ORDER)
    return rank, _date(resources.get(reference) or {}) or "", reference


def _criterion_lines(ctx: CardContext, cid: str, items: list[CriterionResult], values: dict) -> list[str]:
    spec = ctx.pack.criterion(cid)
    labels = dict(ctx.pack.cards["statusLabels"])
    icons = dict(ctx.pack.cards.get("statusIcons", {}))
    if spec.get("informational"):
        labels.update(ctx.pack.cards.get("informationalLabels", {}))
        icons.update(ctx.pack.cards.get("informationalIcons", {}))
    say = ctx.pack.wording.say
    overall = _overall(items)
    title = fill_text(spec["title"], values)
    lines = [f"- {icons.get(overall, '')} **{title}** — {labels.get(overall, overall)}".replace("-  **", "- **")]
    level_specific = spec.get("levelSpecific") and any(r.level for r in items)
    for r in items:
        indent = "  "
        if level_specific:
            lines.append(f"  - {icons.get(r.status, '')} {r.level}: {labels.get(r.status, r.status)} — {r.reason}")
            indent = "    "
        elif r.reason:
            lines.append(f"  - {r.reason}")
        for ref in sorted(r.evidence, key=lambda ref: _evidence_key(ref, ctx.resources)):
            lines.append(f"{indent}- {say('evidence', evidence=describe(ref, ctx.resources))}")
        for ref in r.outside_window:
            lines.append(f"{indent}- {say('outsideWindow', evidence=describe(ref, ctx.resources))}")
        step = spec.get("nextSteps", {}).get(r.status) if cid not in ctx.withheld else None
        if step and (level_specific or r is items[0]):
            step = fill_text(step, {**values, "level": r.level or _levels_text(ctx, ctx.case.levels)})
            lines.append(f"{indent}- {say('next', step=step)}")
    return lines


def _pathway_values(pathway: PathwayResult) -> dict:
    return {"label": pathway.label or pathway.id, "reason": pathway.reason.rstrip(".")}


def _detail(ctx: CardContext, results: list[CriterionResult], verdict: Verdict) -> str:
    profile = ctx.choice.profile
    unmet = verdict.unmet
    values = {k: plain_number(v) for k, v in profile.parameters.items()}
    grouped = _grouped(results)
    # Header paragraphs are separated by blank lines: CommonMark joins adjacent lines into one paragraph.
    say = ctx.pack.wording.say
    header: list[str] = []
    orders = "; ".join(
        say(
            "orderItemAtLevels" if o.levels else "orderItem",
            label=o.label,
            code=o.code_text,
            levels=", ".join(o.levels),
        )
        for o in ctx.case.orders
    )
    if verdict.name == "excluded-indication":
        header.append(f"**{fill_text(ctx.pack.cards['excludedNote'], _pathway_values(ctx.pathway))}**")
    header.append(say("orderLine", orders=orders, referenceDate=ctx.case.reference_date))
    if ctx.pathway is not None:
        header.append(fill_text(ctx.pack.cards["pathwayLine"], _pathway_values(ctx.pathway)))
    # Only a pack whose procedure has levels words this (cards.wording.levelMissing); others leave it out.
    if not ctx.case.levels and ctx.pack.wording.wording.get("levelMissing"):
        header.append(say("levelMissing"))
    # A level of another spinal region on the order is never one of this pack's: the card says so.
    if ctx.case.other_levels and ctx.pack.wording.wording.get("levelOtherRegion"):
        header.append(say("levelOtherRegion", levels=", ".join(ctx.case.other_levels)))
    if unmet:
        reasons = []
        for cid in unmet:
            worst = next((r for r in grouped[cid] if r.status in UNMET), grouped[cid][0])
            reasons.append(worst.reason)
        header.append(say("whyUnmet", reasons=" ".join(f"{r.rstrip('.')}." for r in dict.fromkeys(reasons) if r)))
    if verdict.name == "urgent":
        header.append(f"**{ctx.pack.cards['urgentNote']}**")
    elif ctx.case.urgent:
        priority = next((o.priority for o in ctx.case.orders if o.priority), "urgent")
        header.append(f"**{fill_text(ctx.pack.cards['priorityNote'], {'priority': priority})}**")
    if verdict.name == "incomplete" and "summary" in ctx.pack.cards.get("couldNotRead", {}):
        header.append(f"**{ctx.pack.cards['couldNotRead']['summary']}**")
    lines: list[str] = ["\n\n".join(header)]
    required = set(verdict.required)
    sections = (
        (say("requiredHeading"), [c["id"] for c in ctx.pack.criteria if c["id"] in required]),
        (
            say("advisoryHeading"),
            [c["id"] for c in ctx.pack.criteria if c["id"] not in required and not c.get("informational")],
        ),
        (
            say("informationalHeading"),
            [c["id"] for c in ctx.pack.criteria if c["id"] not in required and c.get("informational")],
        ),
    )
    for heading, ids in sections:
        ids = [i for i in ids if i in grouped]
        if not ids:
            continue
        lines.append("")
        lines.append(f"### {heading}")
        for cid in ids:
            lines.extend(_criterion_lines(ctx, cid, grouped[cid], values))
    if ctx.failed_sources:
        wording = ctx.pack.cards.get("couldNotRead", {})
        lines.append("")
        lines.append(f"**{wording.get('heading', 'Could not be checked')}:**")
        for t in ctx.failed_sources:
            lines.append(
                "- " + fill_text(wording.get("source", "{types}: {why}"), {"types": t, "why": _why_unread(ctx, [t])})
            )
    lines.append("")
    payer = say("profilePayer", payer=ctx.choice.payer_name) if ctx.choice.payer_name else ""
    lines.append(say("profileLine", label=profile.label, version=profile.version, payer=payer))
    lines.append("")
    lines.append(ctx.pack.cards["disclaimer"])
    return "\n".join(lines)


def _materialise(template, values: dict, ctx: CardContext, levels: list[str]):
    """Fill a suggestion's resource template: placeholders, `$code` and `$levels` markers."""
    if isinstance(template, dict):
        if "$code" in template:
            coding = ctx.codes[template["$code"]]
            return {"coding": [dict(coding)], "text": coding.get("display") or coding["code"]}
        out = {}
        for key, value in template.items():
            if isinstance(value, dict) and value.get("$levels"):
                out[key] = [interspace_coding(lvl) for lvl in levels]
            else:
                out[key] = _materialise(value, values, ctx, levels)
        return out
    if isinstance(template, list):
        return [_materialise(v, values, ctx, levels) for v in template]
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        if whole and isinstance(values.get(whole.group(1)), (int, float)):
            return values[whole.group(1)]
        return fill_text(template, values)
    return copy.deepcopy(template)


def _valid_fhir(resource: dict) -> bool:
    from fhir.resources.R4B import get_fhir_model_class  # imported late: it is slow to import

    try:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        return True
    except Exception as exc:  # noqa: BLE001 - any validation failure means "do not send it"
        log.error("suggestion resource failed FHIR validation: %s", type(exc).__name__)
        return False


def _suggestions(ctx: CardContext, results: list[CriterionResult]) -> list[tuple[str, dict]]:
    """(pack suggestion id, CDS Hooks suggestion) for each suggestion whose criterion status calls for it."""
    values = {k: plain_number(v) for k, v in ctx.choice.profile.parameters.items()}
    values["patientId"] = ctx.patient_id
    out = []
    for spec in ctx.pack.suggestions:
        when = spec["when"]
        hits = [r for r in results if r.id == when["criterion"] and r.status in when["status"]]
        if not hits or when["criterion"] in ctx.withheld:
            continue
        levels = [r.level for r in hits if r.level] or list(ctx.case.levels)
        vals = {**values, "levels": _levels_text(ctx, levels)}
        resource = _materialise(spec["resource"], vals, ctx, levels)
        if "/" in ctx.user_id:
            resource["requester"] = {"reference": ctx.user_id}
        else:
            resource.pop("requester", None)
        if "bodySite" in resource and not resource["bodySite"]:
            resource.pop("bodySite")
        if not _valid_fhir(resource):
            continue
        out.append(
            (
                spec.get("id", ""),
                {
                    "label": fill_text(spec["label"], vals),
                    "uuid": str(uuid.uuid4()),
                    "actions": [
                        {"type": "create", "description": fill_text(spec["description"], vals), "resource": resource}
                    ],
                },
            )
        )
    return out


def build_card(ctx: CardContext, results: list[CriterionResult]) -> dict:
    # What the card shows about a criterion never rests on records that could not be read.
    results = [replace(r, reason=shown_reason(ctx, r)) for r in results]
    verdict = judge(ctx, results)
    profile = ctx.choice.profile
    source = {"label": profile.label, "topic": dict(ctx.pack.cards["topic"])}
    if ctx.policy_url:
        source["url"] = ctx.policy_url
    card = {
        "uuid": str(uuid.uuid4()),
        "summary": summary_of(ctx, verdict),
        "indicator": verdict.indicator,
        "detail": _detail(ctx, results, verdict),
        "source": source,
    }
    suggestions = _suggestions(ctx, results)
    if suggestions:
        card["suggestions"] = [s for _, s in suggestions]
        card["selectionBehavior"] = "any"
    if ctx.pack.override_reasons:
        card["overrideReasons"] = [dict(r) for r in ctx.pack.override_reasons]
    links = []
    if ctx.policy_url:
        links.append(
            {
                "label": ctx.pack.wording.say("policyLink", label=profile.label, version=profile.version),
                "url": ctx.policy_url,
                "type": "absolute",
            }
        )
    links.extend(dict(link) for link in ctx.pack.links)
    if links:
        card["links"] = links
    card["extension"] = {
        EXTENSION_KEY: [r.as_extension() for r in results],
        VERDICT_KEY: {
            "verdict": verdict.name,
            "pathway": ctx.pathway.id if ctx.pathway else None,
            "required": verdict.required,
            "unreadSources": verdict.unread,
            "suggestions": [sid for sid, _ in suggestions],
        },
    }
    return card


def unreadable_record_card(pack: RulePack, why: str) -> dict:
    """The one card for a patient whose record does not exist: no criterion is checked or reported.

    `why` is a key of the pack's `cards.recordUnreadable.why` (no-data, not-found, other-patient).
    """
    wording = pack.cards["recordUnreadable"]
    reason = wording.get("why", {}).get(why, why)
    return {
        "uuid": str(uuid.uuid4()),
        "summary": wording["summary"],
        "indicator": "info",
        "detail": fill_text(wording["detail"], {"why": reason, "procedure": pack.procedure_name})
        + "\n\n"
        + pack.cards["disclaimer"],
        "source": {"label": pack.cards["topic"]["display"], "topic": dict(pack.cards["topic"])},
        "extension": {
            VERDICT_KEY: {
                "verdict": "record-unreadable",
                "pathway": None,
                "required": [],
                "unreadSources": ["Patient"],
                "suggestions": [],
            }
        },
    }
