"""Cards: one per surgical case: the verdict, what the record supports and what stands between the
order and an approval, each gap with how it closes.

CDS Hooks 2.0, "CDS Service Response" / "Card Attributes": `uuid`, `summary` (< 140 characters),
`detail` (GitHub-flavoured markdown), `indicator` (info | warning | critical), `source` (label,
url, topic), `suggestions` (with `uuid` and `actions`), `selectionBehavior` (required when
suggestions are present), `overrideReasons` (Coding with display) and `links` (label, url, type).
All wording comes from the rule pack; this module only assembles it.

The detail is short (docs/criteria.md, "Gaps"): the pathway, then one line per gap of a required
criterion, grouped by how it closes (the pack's `cards.gaps`), with the dates the library computed.
Every criterion, with its reason and evidence, stays in `extension["org.example.fusion-cds.criteria"]`
and in the case view (case_record.py).

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
from cds_hooks.packs.model import GAP_DATED, GapEntry
from cds_hooks.pipeline.criteria import CriterionResult, GapDate, PathwayResult
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
    # Per criterion time alone can meet: when its clock started and the earliest date it is met.
    gap_dates: dict[str, GapDate] = field(default_factory=dict)

    @property
    def withheld(self) -> set[str]:
        """Criteria whose next steps and suggested orders are withheld: what the case's pathway withholds
        (pack data `pathways[].withholds`). An order marked urgent, asap or stat withholds what the urgent
        pathway does even without a red flag: a card about an urgent order never suggests delaying measures."""
        ids = {self.pathway.id} if self.pathway else set()
        if self.case.urgent:
            ids.add(URGENT_PATHWAY)
        return {cid for p in self.pack.pathways if p["id"] in ids for cid in p.get("withholds") or []}


def _placeholder_names(text: str) -> list[str]:
    return _PLACEHOLDER.findall(text)


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
    say = ctx.pack.wording.say
    prefix = say("urgentPrefix") if ctx.case.urgent else ""
    levels = ", ".join(ctx.case.levels) if ctx.case.levels else say("levelsNotStated")
    span = levels_span(ctx.case.levels) or say("levelsNotStated")
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


def _pathway_values(pathway: PathwayResult) -> dict:
    return {"label": pathway.label or pathway.id, "reason": pathway.reason.rstrip(".")}


def _by_status(items: list[CriterionResult]) -> dict[str, list[CriterionResult]]:
    """A criterion's results grouped by status, in the order the levels come."""
    out: dict[str, list[CriterionResult]] = {}
    for r in items:
        out.setdefault(r.status, []).append(r)
    return out


def _first_clause(text: str) -> str:
    """Up to the first "; " outside parentheses: the library appends its notes that way, and lists inside
    parentheses ("Only supporting diagnoses (A; B)") stay whole."""
    depth = 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0 and text.startswith("; ", i):
            return text[:i]
    return text


def _finding(items: list[CriterionResult]) -> str:
    """What the library found, in short: the first clause of each level's reason (the rest is in the case view)."""
    return "; ".join(dict.fromkeys(_first_clause(r.reason).rstrip(".") for r in items if r.reason))


def _gap_text(entry: GapEntry, values: dict, date: GapDate | None) -> str:
    """The entry's line, dated when the library gave a date, else its `undated` line: a date is never guessed."""
    needs_date = entry.kind == "time" or bool(set(_placeholder_names(entry.text)) & GAP_DATED)
    if needs_date and date is None:
        return fill_text(entry.undated or entry.text, values)
    dated = {"since": date.since, "earliest": date.earliest} if date else {}
    return fill_text(entry.text, {**values, **dated})


def _gap_lines(
    ctx: CardContext, verdict: Verdict, grouped: dict[str, list[CriterionResult]], values: dict
) -> list[str]:
    """One line per gap of a required criterion (per status, its levels together), grouped by how it closes
    in the order of the pack's `cards.gaps.groups`; then what could not be checked and what is withheld.

    Met and waived criteria, advisory and informational ones never make a line: they cannot change the
    verdict. The kinds and words are the pack's (`cards.gaps`); a criterion it does not word gets its
    title, status and reason.
    """
    gaps = ctx.pack.wording.gaps
    labels = ctx.pack.cards["statusLabels"]
    groups = {g.closes: [] for g in gaps.groups} if gaps else {}
    tail: list[str] = []
    for cid in verdict.required:
        spec = gaps.criteria.get(cid) if gaps else None
        name = spec.name if spec else fill_text(ctx.pack.criterion(cid)["title"], values)
        for status, items in _by_status(grouped[cid]).items():
            if status not in UNMET:
                continue
            reason = _finding(items)
            entry = spec.closes.get(status) if spec else None
            if status == "unavailable" and gaps:
                # The whole reason: it says that nothing is concluded from what was not read.
                why = "; ".join(dict.fromkeys(r.reason for r in items if r.reason))
                tail.append(fill_text(gaps.unavailable, {"name": name, "reason": why}))
            elif cid in ctx.withheld and gaps:
                tail.append(fill_text(gaps.withheld, {"name": name, "status": labels.get(status, status)}))
            elif entry is None or entry.kind not in groups:
                tail.append(f"**{name}:** {labels.get(status, status)} — {reason}")
            else:
                levels = [r.level for r in items if r.level] or list(ctx.case.levels)
                line_values = {**values, "levels": _levels_text(ctx, levels), "finding": reason}
                gap = _gap_text(entry, line_values, ctx.gap_dates.get(cid))
                label = next(g.label for g in gaps.groups if g.closes == entry.kind)
                groups[entry.kind].append(fill_text(gaps.line, {"group": label, "gap": gap}))
    return [line for lines in groups.values() for line in lines] + tail


def _detail(ctx: CardContext, results: list[CriterionResult], verdict: Verdict) -> str:
    """The short card (CDS Hooks 2.0 Card.detail, GitHub-flavoured markdown): one paragraph per line, so
    that an EHR shows about ten lines. First what the record supports (the pathway) or that the policy
    excludes the documented indication; then the gaps, grouped by how they close; then the policy and
    the disclaimer. Every criterion with its evidence stays in the card's extension and the case view."""
    profile = ctx.choice.profile
    values = {k: plain_number(v) for k, v in profile.parameters.items()}
    say = ctx.pack.wording.say
    lines: list[str] = []
    if verdict.name == "excluded-indication":
        lines.append(f"**{fill_text(ctx.pack.cards['excludedNote'], _pathway_values(ctx.pathway))}**")
    elif ctx.pathway is not None:
        lines.append(fill_text(ctx.pack.cards["pathwayLine"], _pathway_values(ctx.pathway)))
    # Only a pack whose procedure has levels words this (cards.wording.levelMissing); others leave it out.
    if not ctx.case.levels and ctx.pack.wording.wording.get("levelMissing"):
        lines.append(say("levelMissing"))
    # A level of another spinal region on the order is never one of this pack's: the card says so.
    if ctx.case.other_levels and ctx.pack.wording.wording.get("levelOtherRegion"):
        lines.append(say("levelOtherRegion", levels=", ".join(ctx.case.other_levels)))
    if verdict.name == "urgent":
        lines.append(f"**{ctx.pack.cards['urgentNote']}**")
    elif ctx.case.urgent:
        priority = next((o.priority for o in ctx.case.orders if o.priority), "urgent")
        lines.append(f"**{fill_text(ctx.pack.cards['priorityNote'], {'priority': priority})}**")
    wording = ctx.pack.cards.get("couldNotRead", {})
    if verdict.name == "incomplete" and "summary" in wording:
        lines.append(f"**{wording['summary']}**")
    lines.extend(_gap_lines(ctx, verdict, _grouped(results), values))
    # Unread sources no gap line names already (a criterion that could not be checked names its own).
    named = {
        t for r in results if r.required and r.status == "unavailable" for t in ctx.pack.criterion(r.id)["sources"]
    }
    unnamed = [t for t in ctx.failed_sources if t not in named]
    if unnamed:
        sources = "; ".join(
            fill_text(wording.get("source", "{types}: {why}"), {"types": t, "why": _why_unread(ctx, [t])})
            for t in unnamed
        )
        lines.append(f"**{wording.get('heading', 'Could not be checked')}:** {sources}")
    payer = say("profilePayer", payer=ctx.choice.payer_name) if ctx.choice.payer_name else ""
    lines.append(say("profileLine", label=profile.label, version=profile.version, payer=payer))
    lines.append(ctx.pack.cards["disclaimer"])
    # Paragraphs, not lines: CommonMark joins adjacent lines into one paragraph.
    return "\n\n".join(lines)


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


def _closes_gap(ctx: CardContext, suggestion_id: str, hit: CriterionResult) -> bool:
    """Whether the pack names the suggestion as what closes this gap (`cards.gaps`); a pack without gap
    wording offers each suggestion its `when` calls for."""
    gaps = ctx.pack.wording.gaps
    if gaps is None:
        return True
    spec = gaps.criteria.get(hit.id)
    entry = spec.closes.get(hit.status) if spec else None
    return entry is not None and entry.suggestion == suggestion_id


def _suggestions(ctx: CardContext, results: list[CriterionResult], required: list[str]) -> list[tuple[str, dict]]:
    """(pack suggestion id, CDS Hooks suggestion) for each gap of a required criterion that the suggested
    order closes; never for a criterion whose measures the case's pathway or urgency withholds."""
    values = {k: plain_number(v) for k, v in ctx.choice.profile.parameters.items()}
    values["patientId"] = ctx.patient_id
    out = []
    for spec in ctx.pack.suggestions:
        when = spec["when"]
        hits = [
            r
            for r in results
            if r.id == when["criterion"] and r.status in when["status"] and _closes_gap(ctx, spec.get("id", ""), r)
        ]
        if not hits or when["criterion"] in ctx.withheld or when["criterion"] not in required:
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
    suggestions = _suggestions(ctx, results, verdict.required)
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
