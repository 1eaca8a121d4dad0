"""Run a rule pack's CQL library for one surgical case and read back the criterion results.

The CQL library decides every status; this module only passes it the case (reference date,
operative levels), the profile's parameters and the failed sources, and checks that what comes back
is well formed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cds_hooks.engine.bridge import CqlEngine, EncodedResources
from cds_hooks.errors import CdsError
from cds_hooks.packs.loader import Profile, RulePack
from cds_hooks.pipeline.orders import SurgicalCase
from cds_hooks.pipeline.patient_data import PatientData

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


def parameters_for(case: SurgicalCase, profile: Profile, data: PatientData) -> dict:
    return {
        **profile.parameters,
        "ReferenceDate": case.reference_date,
        "OperativeLevels": list(case.levels),
        "FailedSources": data.failed_types,
    }


def _strings(value) -> list[str]:
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str)]


def evaluate_case(engine: CqlEngine, pack: RulePack, case: SurgicalCase, profile: Profile,
                  data: PatientData, resources: list[dict] | EncodedResources | None = None) -> list[CriterionResult]:
    """Evaluate the pack's library for one case; results ordered as the pack lists its criteria.

    `resources` is what the engine gets (default: all of `data`); the evaluator passes only what the
    library's retrieves can use, encoded once for every case of the call (cds_hooks/engine/retrieves.py).
    """
    expression = pack.library.get("resultsExpression", "Criteria")
    out = engine.evaluate(
        pack.library["id"],
        pack.library.get("version"),
        data.resources if resources is None else resources,
        data.patient_id,
        parameters_for(case, profile, data),
        expressions=[expression],
    )
    raw = out.get(expression)
    if not isinstance(raw, list):
        raise CriteriaError(f"{expression} did not return a list")
    order = {c["id"]: i for i, c in enumerate(pack.criteria)}
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
                required=item["id"] in profile.required,
            )
        )
    missing = set(order) - {r.id for r in results}
    if missing:
        raise CriteriaError(f"the library returned no result for {sorted(missing)}")
    levels = {lvl: i for i, lvl in enumerate(case.levels)}
    results.sort(key=lambda r: (order[r.id], levels.get(r.level or "", -1)))
    return results
