"""Policy profile selection: the payer on the active Coverage picks the profile.

Da Vinci CRD: coverage requirements depend on the patient's payer, found on the Coverage the order
names in `ServiceRequest.insurance`, else the patient's active Coverage. The payer -> profile map is
rule pack data, overridable per site; an unknown payer gets the pack's default profile.
"""

from __future__ import annotations

from dataclasses import dataclass

from cds_hooks.packs.loader import Profile, RulePack
from cds_hooks.pipeline.orders import SurgicalCase


@dataclass(frozen=True)
class ProfileChoice:
    profile: Profile
    payer: str | None  # the payer identifier or name that matched, for the audit trail
    coverage: str | None  # "Coverage/id"
    matched: bool
    payer_name: str | None = None  # what the card shows: the payer's display, else its identifier


def _payer_keys(coverage: dict) -> list[str]:
    keys: list[str] = []
    payors = coverage.get("payor") if isinstance(coverage.get("payor"), list) else []
    for payor in payors:
        if not isinstance(payor, dict):
            continue
        ident = payor.get("identifier") if isinstance(payor.get("identifier"), dict) else {}
        for value in (ident.get("value"), payor.get("display"), payor.get("reference")):
            if isinstance(value, str) and value:
                keys.append(value)
    return keys


def _payer_name(coverage: dict | None) -> str | None:
    if not coverage:
        return None
    for payor in coverage.get("payor") or []:
        if isinstance(payor, dict) and isinstance(payor.get("display"), str):
            return payor["display"]
    keys = _payer_keys(coverage)
    return keys[0] if keys else None


def _active(coverage: dict) -> bool:
    return coverage.get("status") in (None, "active")


def select_profile(
    pack: RulePack, coverages: list[dict], case: SurgicalCase, site_payers: dict[str, str] | None = None
) -> ProfileChoice:
    payers = {k.lower(): v for k, v in {**pack.payers, **(site_payers or {})}.items()}
    named = set()
    for order in case.orders:
        for ins in order.resource.get("insurance") or []:
            if isinstance(ins, dict) and isinstance(ins.get("reference"), str):
                named.add(ins["reference"].rsplit("/", 1)[-1])
    candidates = [c for c in coverages if c.get("id") in named] + [c for c in coverages if _active(c)]
    for coverage in candidates:
        for key in _payer_keys(coverage):
            name = payers.get(key.lower())
            if name and name in pack.profiles:
                return ProfileChoice(
                    pack.profiles[name], key, f"Coverage/{coverage.get('id')}", True, _payer_name(coverage)
                )
    first = candidates[0] if candidates else None
    payer = (_payer_keys(first) or [None])[0] if first else None
    coverage_ref = f"Coverage/{first.get('id')}" if first else None
    return ProfileChoice(pack.profile(None), payer, coverage_ref, False, _payer_name(first))
