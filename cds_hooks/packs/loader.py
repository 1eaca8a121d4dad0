"""Rule packs: a CDS service defined as data.

A rule pack is a folder under `cql/` holding `pack.json` (service definition, prefetch templates,
order codes, policy profiles, card wording, suggestion templates), the CQL library and its ELM
(`elm/`), and the value sets (`valuesets/*.json`, FHIR ValueSet resources). The Python code is a
generic engine over these folders: a second procedure is a second folder.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from cds_hooks.errors import CdsError


class RulePackError(CdsError):
    """A rule pack folder is incomplete or inconsistent."""

    code = "rule-pack-invalid"


@dataclass(frozen=True)
class Profile:
    """A payer policy profile: CQL parameters plus which criteria are required."""

    name: str
    label: str
    version: str
    policy_url: str | None
    parameters: dict
    required: tuple[str, ...]


@dataclass
class RulePack:
    folder: Path
    service: dict
    prefetch: dict[str, str]
    library: dict
    orders: dict
    codes: dict[str, dict]
    profiles: dict[str, Profile]
    default_profile: str
    payers: dict[str, str]
    criteria: list[dict]
    cards: dict
    suggestions: list[dict]
    links: list[dict]
    override_reasons: list[dict]
    elm: list[dict] = field(default_factory=list)
    valuesets: list[dict] = field(default_factory=list)

    @property
    def service_id(self) -> str:
        return self.service["id"]

    @property
    def hook(self) -> str:
        return self.service["hook"]

    @property
    def procedure_name(self) -> str:
        """What the pack's orders are called in cards and documents (pack.json `cards.procedureName`)."""
        return self.cards.get("procedureName") or "procedure"

    def criterion(self, criterion_id: str) -> dict:
        for c in self.criteria:
            if c["id"] == criterion_id:
                return c
        raise KeyError(criterion_id)

    def profile(self, name: str | None) -> Profile:
        return self.profiles.get(name or "", self.profiles[self.default_profile])


def _read_json(path: Path) -> dict:
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise RulePackError(f"{path}: {exc}") from exc


def load_rule_pack(folder: str | Path, common_elm: list[dict] | None = None) -> RulePack:
    """Load one rule pack folder; ELM of shared libraries (FHIRHelpers) is added from `common_elm`."""
    folder = Path(folder)
    spec = _read_json(folder / "pack.json")
    try:
        profiles = {
            name: Profile(
                name=name,
                label=p["label"],
                version=p["version"],
                policy_url=p.get("policyUrl"),
                parameters=dict(p["parameters"]),
                required=tuple(p["required"]),
            )
            for name, p in spec["profiles"].items()
        }
        pack = RulePack(
            folder=folder,
            service=spec["service"],
            prefetch=spec["prefetch"],
            library=spec["library"],
            orders=spec["orders"],
            codes=spec.get("codes", {}),
            profiles=profiles,
            default_profile=spec["defaultProfile"],
            payers=spec.get("payers", {}),
            criteria=spec["criteria"],
            cards=spec["cards"],
            suggestions=spec.get("suggestions", []),
            links=spec.get("links", []),
            override_reasons=spec.get("overrideReasons", []),
        )
    except KeyError as exc:
        raise RulePackError(f"{folder / 'pack.json'}: missing {exc}") from exc
    if pack.default_profile not in pack.profiles:
        raise RulePackError(f"{folder}: defaultProfile {pack.default_profile!r} is not a profile")
    known = {c["id"] for c in pack.criteria}
    for p in pack.profiles.values():
        unknown = set(p.required) - known
        if unknown:
            raise RulePackError(f"{folder}: profile {p.name} requires unknown criteria {sorted(unknown)}")
    elm_dir = folder / "elm"
    # dtr/elm: the documentation questionnaire's pre-population library (packs/dtr.py), run by the same engine.
    pack.elm = [_read_json(p) for p in sorted(elm_dir.glob("*.json")) + sorted((folder / "dtr" / "elm").glob("*.json"))] \
        + list(common_elm or [])
    lib_ids = {e["library"]["identifier"]["id"] for e in pack.elm}
    if pack.library["id"] not in lib_ids:
        raise RulePackError(f"{folder}: ELM for library {pack.library['id']} not found in {elm_dir}")
    pack.valuesets = [_read_json(p) for p in sorted((folder / "valuesets").glob("*.json"))]
    return pack


def load_rule_packs(cql_root: str | Path, names: list[str] | None = None) -> dict[str, RulePack]:
    """Every rule pack under `cql_root` (folders with a pack.json), keyed by service id."""
    root = Path(cql_root)
    common = [_read_json(p) for p in sorted((root / "common" / "elm").glob("*.json"))]
    packs: dict[str, RulePack] = {}
    for pack_json in sorted(root.glob("*/pack.json")):
        if names and pack_json.parent.name not in names:
            continue
        pack = load_rule_pack(pack_json.parent, common)
        if pack.service_id in packs:
            raise RulePackError(f"two rule packs declare service id {pack.service_id!r}")
        packs[pack.service_id] = pack
    if not packs:
        raise RulePackError(f"no rule packs found under {root}")
    return packs
