"""The rule pack as a typed model, and the checks that run before a pack is served.

A pack is checked in two steps, both at load (the service refuses to start on the first failure):

1. its shape, against the published JSON Schema `cql/schema/rule-pack.schema.json` (draft 2020-12):
   every key known, every code a FHIR Coding (system an absolute URI, code without stray spaces),
   every status one of the five a criterion can have, every card wording present;
2. what a schema cannot say, the references between its parts: a suggestion's `$code` names a code
   of `codes`, its `when.criterion` a declared criterion; a profile requires declared criteria and
   sets only parameters its CQL library declares; every `{placeholder}` in wording is one the card
   fills; payers map to profiles; the library's value sets are in `valuesets/`; extensions are known.

Each problem names the JSON path of the part at fault ($.suggestions[0].resource.code.$code).
Sections the schema allows but this model does not type (a pack may carry more data for its CQL or
its extension) stay reachable as `RulePackModel.section(name)`.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Union

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from pydantic import BaseModel, ConfigDict, Field

SCHEMA_PATH = Path(__file__).resolve().parent.parent.parent / "cql" / "schema" / "rule-pack.schema.json"

# Procedure extensions a pack may opt into ("extensions": ["spine"]), with what each provides.
# The pipeline asks the pack (`RulePack.uses("spine")`); an unknown name is refused at load.
KNOWN_EXTENSIONS = {
    "spine": "interspace levels on orders and findings, radiology report text (cds_hooks/spine/)",
}

Status = Literal["met", "not-met", "not-documented", "waived", "unavailable"]

# Values filled at evaluation time besides the profile's parameters (cards.py, suggestion templates).
RUNTIME_VALUES = {"level", "levels", "patientId", "userId"}
# Each card wording key and the placeholders the card fills in it (pipeline/cards.py).
WORDING_PLACEHOLDERS: dict[str, set[str]] = {
    "levelsNotStated": set(),
    "levelMissing": set(),
    "levelOtherRegion": {"levels"},
    "urgentPrefix": set(),
    "summaryAllMet": {"case", "required"},
    "summaryUnmet": {"case", "unmet", "required"},
    "summaryUncheckable": {"unchecked"},
    "summaryLikelyToFail": set(),
    "orderLine": {"orders", "referenceDate"},
    "orderItem": {"label", "code"},
    "orderItemAtLevels": {"label", "code", "levels"},
    "whyUnmet": {"reasons"},
    "requiredHeading": set(),
    "advisoryHeading": set(),
    "informationalHeading": set(),
    "evidence": {"evidence"},
    "outsideWindow": {"evidence"},
    "next": {"step"},
    "sourcesFailed": {"sources"},
    "profileLine": {"label", "version", "payer"},
    "profilePayer": {"payer"},
    "policyLink": {"label", "version"},
}
PLACEHOLDER = re.compile(r"\{([A-Za-z][A-Za-z0-9]*)\}")

# ---- facts from notes (pack.json `noteEvidence`, docs/note-text.md)
# Per note fact (a note-finding code of spine/note_findings.py): the uses the CQL can give it. A fact
# that can turn a criterion to met ("may-meet") is offered only where the library reads it that way;
# current nicotine use is evidence against "met" only.
NOTE_FACT_USES: dict[str, tuple[str, ...]] = {
    "pt-attendance": ("off", "shown", "may-meet"),
    "nicotine-status": ("off", "shown", "against-met"),
}


class _Part(BaseModel):
    # Frozen: a loaded pack is shared by every call. Extra keys are those the schema allows and the
    # model does not type; they stay in `model_extra`.
    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)


class Coding(_Part):
    """FHIR R4 Coding: `system` is an absolute URI, `code` a FHIR code (schema-checked)."""

    system: str
    code: str
    display: str | None = None


class Service(_Part):
    """CDS Hooks 2.0 Discovery, one service entry."""

    id: str
    hook: str
    title: str
    description: str
    usage_requirements: str | None = Field(None, alias="usageRequirements")


class Library(_Part):
    id: str
    version: str
    results_expression: str = Field("Criteria", alias="resultsExpression")
    gap_dates_expression: str | None = Field(None, alias="gapDatesExpression")


class Profile(_Part):
    """A payer policy profile: CQL parameters (the thresholds) plus which criteria are required."""

    name: str
    label: str
    version: str
    policy_url: str | None = Field(None, alias="policyUrl")
    parameters: dict[str, Union[bool, float, int, str]]
    required: tuple[str, ...]
    # Per pathway id: {"required": [criterion ids], "excluded": bool} (docs/criteria.md, "Pathways").
    pathways: dict[str, dict] = Field(default_factory=dict)
    # Per parameter or pathway id: where the threshold comes from (policy, section, date, note).
    sources: dict[str, dict] = Field(default_factory=dict)


class Criterion(_Part):
    id: str
    title: str
    level_specific: bool = Field(alias="levelSpecific")
    informational: bool = False
    sources: tuple[str, ...]
    next_steps: dict[Status, str] = Field(default_factory=dict, alias="nextSteps")


# ---------------------------------------------------------------- the short card's gaps (cards.gaps)

GapStatus = Literal["not-met", "not-documented"]
# What a gap line fills besides the profile's parameters (pipeline/cards.py, "gap lines").
GAP_VALUES = {"levels", "finding", "since", "earliest"}
GAP_DATED = {"since", "earliest"}
GAP_WORDING_PLACEHOLDERS = {"line": {"group", "gap"}, "unavailable": {"name", "reason"}, "withheld": {"name", "status"}}


class GapEntry(_Part):
    """How one unmet status of a criterion closes (`kind`, a group's `closes`) and what its line says."""

    kind: str
    text: str
    undated: str | None = None
    suggestion: str | None = None


class GapCriterion(_Part):
    name: str
    closes: dict[GapStatus, GapEntry]


class GapGroup(_Part):
    closes: str
    label: str


class Gaps(_Part):
    """pack.json `cards.gaps`: the gap lines of the short card, grouped by how they close."""

    groups: tuple[GapGroup, ...]
    line: str
    unavailable: str
    withheld: str
    criteria: dict[str, GapCriterion]


def gap_problems(doc: dict, fillable: set[str]) -> list[str]:
    """Cross-references of `cards.gaps`: declared criteria, groups and suggestions (whose `when` covers the
    gap), placeholders the card fills, an `undated` line wherever a date may be missing, and a line for
    every unmet status of every criterion a profile or pathway can require."""
    gaps = doc["cards"].get("gaps")
    if gaps is None:
        return []
    problems: list[str] = []
    base = ["cards", "gaps"]
    known = {c["id"] for c in doc["criteria"]}
    kinds = [g["closes"] for g in gaps["groups"]]
    for i, kind in enumerate(kinds):
        if kinds.index(kind) != i:
            problems.append(f"{_path(base + ['groups', i, 'closes'])}: {kind!r} is declared twice")
    for key, allowed in GAP_WORDING_PLACEHOLDERS.items():
        for name in sorted(_placeholders(gaps[key]) - allowed):
            problems.append(f"{_path(base + [key])}: placeholder {{{name}}} is filled by nothing")
    suggestions = {s["id"]: s["when"] for s in doc.get("suggestions", []) if "id" in s}
    for cid, spec in gaps["criteria"].items():
        if cid not in known:
            problems.append(f"{_path(base + ['criteria', cid])}: {cid!r} is not a declared criterion")
        for status, entry in spec["closes"].items():
            path = base + ["criteria", cid, "closes", status]
            if entry["kind"] not in kinds:
                problems.append(f"{_path(path + ['kind'])}: {entry['kind']!r} is not one of $.cards.gaps.groups")
            for key in ("text", "undated"):
                allowed = fillable | GAP_VALUES if key == "text" else (fillable | GAP_VALUES) - GAP_DATED
                for name in sorted(_placeholders(entry.get(key, "")) - allowed):
                    problems.append(f"{_path(path + [key])}: placeholder {{{name}}} is filled by nothing")
            if "undated" not in entry and (entry["kind"] == "time" or _placeholders(entry["text"]) & GAP_DATED):
                problems.append(
                    f"{_path(path)}: a line that gives a date needs an `undated` line for when none is known"
                )
            when = suggestions.get(entry.get("suggestion")) if "suggestion" in entry else None
            if "suggestion" in entry and when is None:
                problems.append(f"{_path(path + ['suggestion'])}: {entry['suggestion']!r} is not a suggestion id")
            elif when is not None and (when["criterion"] != cid or status not in when["status"]):
                problems.append(
                    f"{_path(path + ['suggestion'])}: {entry['suggestion']!r} is not offered for {cid} {status}"
                )
    requirable = {cid for p in doc["profiles"].values() for cid in p["required"]}
    requirable |= {
        cid
        for p in doc["profiles"].values()
        for r in (p.get("pathways") or {}).values()
        for cid in r.get("required", [])
    }
    for cid in sorted(requirable & known):
        for status in ("not-met", "not-documented"):
            if status not in gaps["criteria"].get(cid, {}).get("closes", {}):
                problems.append(
                    f"{_path(base + ['criteria'])}: no line for {cid} {status}, which a profile can require"
                )
    return problems


class CardWording(_Part):
    """Every word of a card that is not a criterion's own (pack.json `cards`)."""

    procedure_name: str = Field(alias="procedureName")
    topic: Coding
    disclaimer: str
    urgent_note: str = Field(alias="urgentNote")
    status_labels: dict[Status, str] = Field(alias="statusLabels")
    status_icons: dict[Status, str] = Field(alias="statusIcons")
    informational_labels: dict[Status, str] = Field(default_factory=dict, alias="informationalLabels")
    informational_icons: dict[Status, str] = Field(default_factory=dict, alias="informationalIcons")
    wording: dict[str, str]
    gaps: Gaps | None = None

    def say(self, key: str, **values: Any) -> str:
        """The wording `key` with its placeholders filled (the keys were checked at load)."""
        return PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), m.group(0))), self.wording.get(key, ""))


class SuggestionWhen(_Part):
    criterion: str
    status: tuple[Status, ...]


class Suggestion(_Part):
    id: str
    when: SuggestionWhen
    label: str
    description: str
    resource: dict[str, Any]


class NoteEvidenceRule(_Part):
    """What one note fact may count for, for one criterion (pack.json `noteEvidence`)."""

    fact: str
    criterion: str
    parameter: str
    use: str
    profiles: dict[str, str] = Field(default_factory=dict)
    basis: str

    def use_for(self, profile: str) -> str:
        return self.profiles.get(profile, self.use)


class SpineSettings(_Part):
    """pack.json `spine`: the spinal region whose interspaces are the pack's levels.

    The name is checked against the spine extension's data when the pipeline takes the pack
    (packs/ does not import the extension).
    """

    region: str


class RulePackModel(_Part):
    """pack.json, typed. Built only from a document that passed `check_document`."""

    service: Service
    extensions: tuple[str, ...] = ()
    spine: SpineSettings | None = None
    prefetch: dict[str, str]
    library: Library
    orders: dict[str, Any]
    codes: dict[str, Coding] = Field(default_factory=dict)
    default_profile: str = Field(alias="defaultProfile")
    profiles: dict[str, Profile]
    payers: dict[str, str] = Field(default_factory=dict)
    criteria: tuple[Criterion, ...]
    cards: CardWording
    suggestions: tuple[Suggestion, ...] = ()
    links: tuple[dict[str, Any], ...] = ()
    override_reasons: tuple[Coding, ...] = Field((), alias="overrideReasons")
    note_evidence: tuple[NoteEvidenceRule, ...] = Field((), alias="noteEvidence")

    @classmethod
    def from_document(cls, document: dict) -> "RulePackModel":
        doc = dict(document)
        doc.pop("$schema", None)
        doc["profiles"] = {name: {**p, "name": name} for name, p in doc["profiles"].items()}
        return cls.model_validate(doc)

    def section(self, name: str) -> Any:
        """A top-level section the model does not type (schema-checked all the same), or None."""
        return (self.model_extra or {}).get(name)


@lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _path(parts) -> str:
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else ("." + p if re.fullmatch(r"[A-Za-z_$][\w$-]*", p) else f"[{p!r}]")
    return out


def schema_problems(document: Any) -> list[str]:
    """Shape problems, each as "<JSON path>: <what is wrong>", most specific first."""
    problems = []
    for error in sorted(_validator().iter_errors(document), key=lambda e: list(map(str, e.absolute_path))):
        # A failed oneOf/anyOf reports its best-matching branch's error, which names the real cause.
        leaf = best_match([error]) if error.context else error
        message = leaf.message
        if leaf.validator == "pattern" and isinstance(leaf.schema, dict) and leaf.schema.get("description"):
            message = f"{leaf.instance!r} is not valid: expected {leaf.schema['description']}"
        problems.append(f"{_path(leaf.absolute_path)}: {message}")
    return problems


def _placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def reference_problems(
    doc: dict,
    library_parameters: set[str] | None = None,
    library_valuesets: set[str] | None = None,
    valuesets: set[str] | None = None,
) -> list[str]:
    """The cross-references between a pack's parts (see the module docstring), on a schema-valid document.

    `library_parameters` / `library_valuesets`: what the pack's ELM declares; `valuesets`: the URLs
    of `valuesets/*.json`. Left out (None), those checks are skipped.
    """
    problems: list[str] = []
    criteria = [c["id"] for c in doc["criteria"]]
    known = set(criteria)
    for i, cid in enumerate(criteria):
        if criteria.index(cid) != i:
            problems.append(f"$.criteria[{i}].id: {cid!r} is declared twice")
    for i, name in enumerate(doc.get("extensions", [])):
        if name not in KNOWN_EXTENSIONS:
            problems.append(
                f"$.extensions[{i}]: unknown extension {name!r} (known: {', '.join(sorted(KNOWN_EXTENSIONS))})"
            )
    for name in KNOWN_EXTENSIONS:
        # An extension's settings section is read only when the pack opts into the extension.
        if name in doc and name not in doc.get("extensions", []):
            problems.append(f"$.{name}: settings of the extension {name!r}, which $.extensions does not name")
    profiles = doc["profiles"]
    if doc["defaultProfile"] not in profiles:
        problems.append(f"$.defaultProfile: {doc['defaultProfile']!r} is not a profile")
    for payer, name in doc.get("payers", {}).items():
        if name not in profiles:
            problems.append(f"{_path(['payers', payer])}: {name!r} is not a profile")
    parameters_everywhere = set.intersection(*(set(p["parameters"]) for p in profiles.values()))
    for name, profile in profiles.items():
        for j, cid in enumerate(profile["required"]):
            if cid not in known:
                problems.append(f"{_path(['profiles', name, 'required', j])}: {cid!r} is not a declared criterion")
            elif next(c for c in doc["criteria"] if c["id"] == cid).get("informational"):
                problems.append(
                    f"{_path(['profiles', name, 'required', j])}: {cid!r} is informational and cannot be required"
                )
        pathway_ids = {w["id"] for w in doc.get("pathways", [])}
        for pid, rule in (profile.get("pathways") or {}).items():
            if pid not in pathway_ids:
                problems.append(f"{_path(['profiles', name, 'pathways', pid])}: {pid!r} is not a declared pathway")
            for j, cid in enumerate(rule.get("required", [])):
                if cid not in known:
                    problems.append(
                        f"{_path(['profiles', name, 'pathways', pid, 'required', j])}: {cid!r} is not "
                        "a declared criterion"
                    )
        if library_parameters is not None:
            for param in profile["parameters"]:
                if param not in library_parameters:
                    problems.append(
                        f"{_path(['profiles', name, 'parameters', param])}: the library "
                        f"{doc['library']['id']} declares no parameter {param!r}"
                    )
    fillable = parameters_everywhere | RUNTIME_VALUES

    def check_text(path: list, text: str, allowed: set[str]) -> None:
        for name in sorted(_placeholders(text) - allowed):
            problems.append(
                f"{_path(path)}: placeholder {{{name}}} is filled by nothing (neither a parameter "
                "of every profile nor a value the card provides)"
            )

    for i, c in enumerate(doc["criteria"]):
        check_text(["criteria", i, "title"], c["title"], fillable)
        for status, text in c.get("nextSteps", {}).items():
            check_text(["criteria", i, "nextSteps", status], text, fillable)
    for key, text in doc["cards"]["wording"].items():
        check_text(["cards", "wording", key], text, WORDING_PLACEHOLDERS.get(key, set()))
    problems.extend(gap_problems(doc, fillable))
    codes = doc.get("codes", {})
    for i, s in enumerate(doc.get("suggestions", [])):
        if s["when"]["criterion"] not in known:
            problems.append(
                f"$.suggestions[{i}].when.criterion: {s['when']['criterion']!r} is not a declared criterion"
            )
        check_text(["suggestions", i, "label"], s["label"], fillable)
        check_text(["suggestions", i, "description"], s["description"], fillable)
        for path, node in _walk(s["resource"], ["suggestions", i, "resource"]):
            if isinstance(node, dict) and "$code" in node and node["$code"] not in codes:
                problems.append(f"{_path(path + ['$code'])}: {node['$code']!r} is not a code in $.codes")
            elif isinstance(node, str):
                check_text(path, node, fillable)
    primary = {o["code"] for o in doc["orders"]["primary"]}
    for i, add_on in enumerate(doc["orders"].get("addOn", [])):
        for j, code in enumerate(add_on["attachesTo"]):
            if code not in primary:
                problems.append(f"$.orders.addOn[{i}].attachesTo[{j}]: {code!r} is not a primary order code")
    for i, pattern in enumerate(doc["orders"].get("textPatterns", [])):
        try:
            re.compile(pattern)
        except re.error as exc:
            problems.append(f"$.orders.textPatterns[{i}]: not a regular expression ({exc})")
    problems += _note_evidence_problems(doc, known, library_parameters)
    if library_valuesets is not None and valuesets is not None:
        for url in sorted(library_valuesets - valuesets):
            problems.append(f"$.library: the library uses value set {url} and valuesets/ has no file for it")
    return problems


def _note_evidence_problems(doc: dict, known: set[str], library_parameters: set[str] | None) -> list[str]:
    """`noteEvidence`: a known note fact, once; a use that fact can have (here and per profile); a declared
    criterion and profile; a parameter the library declares and no profile sets as a threshold."""
    problems: list[str] = []
    seen: set[str] = set()
    profiles = doc["profiles"]
    for i, rule in enumerate(doc.get("noteEvidence", [])):
        where = ["noteEvidence", i]
        fact = rule["fact"]
        if fact not in NOTE_FACT_USES:
            problems.append(
                f"{_path(where + ['fact'])}: {fact!r} is no note fact a criterion can read "
                f"(known: {', '.join(sorted(NOTE_FACT_USES))})"
            )
            continue
        if fact in seen:
            problems.append(f"{_path(where + ['fact'])}: {fact!r} has a second rule")
        seen.add(fact)
        allowed = NOTE_FACT_USES[fact]
        for path, use in [(where + ["use"], rule["use"])] + [
            (where + ["profiles", name], use) for name, use in rule.get("profiles", {}).items()
        ]:
            if use not in allowed:
                problems.append(f"{_path(path)}: a {fact} fact cannot be used {use!r} (allowed: {', '.join(allowed)})")
        for name in rule.get("profiles", {}):
            if name not in profiles:
                problems.append(f"{_path(where + ['profiles', name])}: {name!r} is not a profile")
        if rule["criterion"] not in known:
            problems.append(f"{_path(where + ['criterion'])}: {rule['criterion']!r} is not a declared criterion")
        if library_parameters is not None and rule["parameter"] not in library_parameters:
            problems.append(
                f"{_path(where + ['parameter'])}: the library {doc['library']['id']} declares no parameter "
                f"{rule['parameter']!r}"
            )
        for name, profile in profiles.items():
            if rule["parameter"] in profile["parameters"]:
                problems.append(
                    f"{_path(['profiles', name, 'parameters', rule['parameter']])}: set by "
                    f"$.noteEvidence[{i}], not by a profile"
                )
    return problems


def _walk(node: Any, path: list):
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, path + [key])
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, path + [i])
