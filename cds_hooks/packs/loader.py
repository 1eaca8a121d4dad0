"""Rule packs: a CDS service defined as data.

A rule pack is a folder under `cql/` holding `pack.json` (service definition, prefetch templates,
order codes, policy profiles, card wording, suggestion templates), the CQL library and its ELM
(`elm/`), and the value sets (`valuesets/*.json`, FHIR ValueSet resources). The Python code is a
generic engine over these folders: a second procedure is a second folder. What a pack may hold, and
what is checked before it is served: cql/schema/rule-pack.schema.json and packs/model.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from cds_hooks.errors import CdsError
from cds_hooks.packs.model import CardWording, Profile, RulePackModel, reference_problems, schema_problems


class RulePackError(CdsError):
    """A rule pack folder is incomplete or inconsistent."""

    code = "rule-pack-invalid"


@dataclass
class RulePack:
    """A loaded, checked rule pack: the typed model (`model`) plus the pack's ELM and value sets.

    The dict-valued attributes (`service`, `criteria`, `cards`, ...) are pack.json's sections as
    written, for code that reads them as data; they were checked with the model.
    """

    folder: Path
    model: RulePackModel
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
    pathways: list[dict] = field(default_factory=list)
    # pack.json `noteEvidence` as written: what facts from notes may count for (docs/note-text.md)
    note_evidence: list[dict] = field(default_factory=list)

    def pathway_rules(self, profile: Profile) -> list[dict]:
        """The profile's pathway table as the library's `PathwayRules` parameter."""
        return [
            {
                "id": p["id"],
                "label": p["label"],
                "required": list(profile.pathways.get(p["id"], {}).get("required", profile.required)),
                "excluded": bool(profile.pathways.get(p["id"], {}).get("excluded", False)),
            }
            for p in self.pathways
        ]

    def note_parameters(self, profile: Profile) -> dict[str, str]:
        """The profile's note allowances as the library's parameters ({"NoteNicotineUse": "against-met"})."""
        return {r["parameter"]: r.get("profiles", {}).get(profile.name, r["use"]) for r in self.note_evidence}

    @property
    def service_id(self) -> str:
        return self.model.service.id

    @property
    def hook(self) -> str:
        return self.model.service.hook

    @property
    def procedure_name(self) -> str:
        """What the pack's orders are called in cards and documents (pack.json `cards.procedureName`)."""
        return self.model.cards.procedure_name

    @property
    def wording(self) -> CardWording:
        return self.model.cards

    def uses(self, extension: str) -> bool:
        """Whether the pack opted into a procedure extension (pack.json `extensions`)."""
        return extension in self.model.extensions

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


def _refuse(pack_json: Path, problems: list[str]) -> RulePackError:
    more = (
        f" (and {len(problems) - 1} more: {'; '.join(problems[1:4])}{'; ...' if len(problems) > 4 else ''})"
        if len(problems) > 1
        else ""
    )
    return RulePackError(f"rule pack {pack_json} is invalid: {problems[0]}{more}")


def load_rule_pack(folder: str | Path, common_elm: list[dict] | None = None) -> RulePack:
    """Load one rule pack folder and check it (model.py); ELM of shared libraries (FHIRHelpers) comes
    from `common_elm`. A pack that fails a check raises RulePackError naming the file and JSON path."""
    folder = Path(folder)
    pack_json = folder / "pack.json"
    spec = _read_json(pack_json)
    problems = schema_problems(spec)
    if problems:
        raise _refuse(pack_json, problems)
    elm_dir = folder / "elm"
    own_elm = [_read_json(p) for p in sorted(elm_dir.glob("*.json"))]
    # dtr/elm: the documentation questionnaire's pre-population library (packs/dtr.py), run by the same engine.
    dtr_elm = [_read_json(p) for p in sorted((folder / "dtr" / "elm").glob("*.json"))]
    elm = own_elm + dtr_elm + list(common_elm or [])
    library = next(
        (
            e["library"]
            for e in own_elm
            if e.get("library", {}).get("identifier", {}).get("id") == spec["library"]["id"]
        ),
        None,
    )
    if library is None:
        raise _refuse(pack_json, [f"$.library.id: no ELM for library {spec['library']['id']} in {elm_dir}"])
    valuesets = [_read_json(p) for p in sorted((folder / "valuesets").glob("*.json"))]
    library_parameters = {p["name"] for p in library.get("parameters", {}).get("def", [])}
    problems = reference_problems(
        spec,
        library_parameters=library_parameters,
        library_valuesets={v["id"] for v in library.get("valueSets", {}).get("def", [])},
        valuesets={v.get("url") for v in valuesets},
    )
    defines = {d.get("name") for d in library.get("statements", {}).get("def", [])}
    for key in ("resultsExpression", "pathwayExpression", "gapDatesExpression"):
        if key in spec["library"] and spec["library"][key] not in defines:
            problems.append(f"$.library.{key}: the library defines no {spec['library'][key]!r}")
    if "gapDatesExpression" in spec["library"] and "SigningDate" not in library_parameters:
        problems.append("$.library.gapDatesExpression: the library must declare the parameter SigningDate (Date)")
    if problems:
        raise _refuse(pack_json, problems)
    model = RulePackModel.from_document(spec)
    return RulePack(
        folder=folder,
        model=model,
        service=spec["service"],
        prefetch=spec["prefetch"],
        library=spec["library"],
        orders=spec["orders"],
        codes=spec.get("codes", {}),
        profiles=dict(model.profiles),
        default_profile=model.default_profile,
        payers=spec.get("payers", {}),
        criteria=spec["criteria"],
        cards=spec["cards"],
        suggestions=spec.get("suggestions", []),
        links=spec.get("links", []),
        override_reasons=spec.get("overrideReasons", []),
        pathways=spec.get("pathways", []),
        note_evidence=spec.get("noteEvidence", []),
        elm=elm,
        valuesets=valuesets,
    )


def add_local_codes(pack: RulePack, additions: dict[str, list[str]]) -> None:
    """Add a site's own codes to the pack's value sets (FHIR R4 ValueSet.compose.include, one per system).

    `additions` maps a value set id or url to `system|code` strings: the way a site makes its local
    visit types or order codes count where the standard codes do. The engine and the retrieve filter
    both read the value sets, so the codes count everywhere the value set is used.
    """
    for vs in pack.valuesets:
        codes = list(additions.get(vs.get("id"), [])) + list(additions.get(vs.get("url"), []))
        by_system: dict[str, list[str]] = {}
        for item in codes:
            system, sep, code = item.rpartition("|")
            if not sep or not system or not code:
                raise RulePackError(f"local value set code {item!r} for {vs.get('id')}: expected system|code")
            by_system.setdefault(system, []).append(code)
        for system, values in by_system.items():
            vs.setdefault("compose", {}).setdefault("include", []).append(
                {"system": system, "concept": [{"code": c} for c in values]}
            )


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
