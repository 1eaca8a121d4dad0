"""Run a rule pack's CQL library for one surgical case and read back the criterion results.

The CQL library decides every status; this module only passes it the case (reference date,
operative levels), the profile's parameters and the failed sources, and checks that what comes back
is well formed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cds_hooks.engine.bridge import CqlEngine, EncodedResources
from cds_hooks.errors import CdsError
from cds_hooks.packs.loader import Profile, RulePack
from cds_hooks.pipeline.orders import SurgicalCase
from cds_hooks.pipeline.patient_data import PatientData

ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
STATUSES = ("met", "not-met", "not-documented", "waived", "unavailable")


class CriteriaError(CdsError):
    """The library returned something that is not a well-formed criterion result."""

    code = "criteria-error"


@dataclass
class CriterionResult:
    id: str
    status: str
    level: str | None
    reason: str
    evidence: list[str] = field(default_factory=list)
    outside_window: list[str] = field(default_factory=list)
    required: bool = False

    def as_extension(self) -> dict:
        out = {"id": self.id, "status": self.status, "required": self.required}
        if self.level:
            out["level"] = self.level
        out["reason"] = self.reason
        out["evidence"] = list(self.evidence)
        if self.outside_window:
            out["outsideWindow"] = list(self.outside_window)
        return out


@dataclass
class PathwayResult:
    """The payer pathway the library chose for the case (docs/criteria.md, "Pathways")."""

    id: str
    label: str
    required: list[str]
    reason: str
    evidence: list[str] = field(default_factory=list)
    excluded: bool = False

    def as_extension(self) -> dict:
        return {
            "id": self.id,
            "label": self.label,
            "required": list(self.required),
            "reason": self.reason,
            "evidence": list(self.evidence),
            "excluded": self.excluded,
        }


@dataclass(frozen=True)
class GapDate:
    """When a criterion is met by time alone if the plan is followed (docs/criteria.md, "Gaps"):
    the date its clock started and the earliest reference date it is met, as ISO dates."""

    since: str
    earliest: str


@dataclass
class CaseEvaluation:
    results: list[CriterionResult]
    pathway: PathwayResult | None
    gap_dates: dict[str, GapDate] = field(default_factory=dict)


def parameters_for(
    case: SurgicalCase,
    profile: Profile,
    data: PatientData,
    pack: RulePack | None = None,
    signing_date: str | None = None,
) -> dict:
    """The library's parameters; `signing_date` (ISO date of the hook call) only dates the "by time" gaps."""
    params = {
        **profile.parameters,
        "ReferenceDate": case.reference_date,
        "OperativeLevels": list(case.levels),
        "FailedSources": data.failed_types,
    }
    # Only a library that dates its gaps declares SigningDate (pack.json `library.gapDatesExpression`).
    if signing_date and (pack is None or "gapDatesExpression" in pack.library):
        params["SigningDate"] = signing_date
    if pack is not None and pack.pathways:
        params["PathwayRules"] = pack.pathway_rules(profile)
    if pack is not None:
        params.update(pack.note_parameters(profile))
    return params


def _pathway(raw, known: set[str]) -> PathwayResult | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not isinstance(raw.get("required"), list):
        raise CriteriaError(f"malformed pathway result: {raw!r:.200}")
    required = _strings(raw["required"])
    if set(required) - known:
        raise CriteriaError(f"pathway {raw['id']} requires unknown criteria {sorted(set(required) - known)}")
    return PathwayResult(
        id=raw["id"],
        label=str(raw.get("label") or raw["id"]),
        required=required,
        reason=str(raw.get("reason") or ""),
        evidence=sorted(set(_strings(raw.get("evidence")))),
        excluded=raw.get("excluded") is True,
    )


def _gap_dates(raw, known: set[str]) -> dict[str, GapDate]:
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise CriteriaError(f"gap dates are not a list: {raw!r:.200}")
    out = {}
    for item in raw:
        ok = isinstance(item, dict) and item.get("criterion") in known
        if not ok or not all(
            isinstance(item.get(k), str) and ISO_DATE.fullmatch(item[k]) for k in ("since", "earliest")
        ):
            raise CriteriaError(f"malformed gap date: {item!r:.200}")
        out[item["criterion"]] = GapDate(item["since"], item["earliest"])
    return out


def _strings(value) -> list[str]:
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str)]


def evaluate_case(
    engine: CqlEngine,
    pack: RulePack,
    case: SurgicalCase,
    profile: Profile,
    data: PatientData,
    resources: list[dict] | EncodedResources | None = None,
) -> list[CriterionResult]:
    """Evaluate the pack's library for one case; results ordered as the pack lists its criteria."""
    return evaluate_case_with_pathway(engine, pack, case, profile, data, resources).results


def evaluate_case_with_pathway(
    engine: CqlEngine,
    pack: RulePack,
    case: SurgicalCase,
    profile: Profile,
    data: PatientData,
    resources: list[dict] | EncodedResources | None = None,
    signing_date: str | None = None,
) -> CaseEvaluation:
    """The criterion results and the pathway of one case, from one engine call.

    `resources` is what the engine gets (default: all of `data`); the evaluator passes only what the
    library's retrieves can use, encoded once for every case of the call (cds_hooks/engine/retrieves.py).
    A criterion is required when the pathway the library chose requires it (the profile's `required`
    when the library names no pathway).
    """
    expression = pack.library.get("resultsExpression", "Criteria")
    pathway_expression = pack.library.get("pathwayExpression") if pack.pathways else None
    dates_expression = pack.library.get("gapDatesExpression")
    extra = [e for e in (pathway_expression, dates_expression) if e]
    out = engine.evaluate(
        pack.library["id"],
        pack.library.get("version"),
        data.resources if resources is None else resources,
        data.patient_id,
        parameters_for(case, profile, data, pack, signing_date),
        expressions=[expression] + extra,
    )
    raw = out.get(expression)
    if not isinstance(raw, list):
        raise CriteriaError(f"{expression} did not return a list")
    order = {c["id"]: i for i, c in enumerate(pack.criteria)}
    pathway = _pathway(out.get(pathway_expression), set(order)) if pathway_expression else None
    required = set(pathway.required) if pathway else set(profile.required)
    results: list[CriterionResult] = []
    for item in raw:
        if not isinstance(item, dict) or item.get("id") not in order or item.get("status") not in STATUSES:
            raise CriteriaError(f"malformed criterion result: {item!r:.200}")
        results.append(
            CriterionResult(
                id=item["id"],
                status=item["status"],
                level=item.get("level") if isinstance(item.get("level"), str) else None,
                reason=str(item.get("reason") or ""),
                evidence=sorted(set(_strings(item.get("evidence")))),
                outside_window=sorted(set(_strings(item.get("outsideWindow")))),
                required=item["id"] in required,
            )
        )
    missing = set(order) - {r.id for r in results}
    if missing:
        raise CriteriaError(f"the library returned no result for {sorted(missing)}")
    levels = {lvl: i for i, lvl in enumerate(case.levels)}
    results.sort(key=lambda r: (order[r.id], levels.get(r.level or "", -1)))
    gap_dates = _gap_dates(out.get(dates_expression), set(order)) if dates_expression else {}
    return CaseEvaluation(results, pathway, gap_dates)
