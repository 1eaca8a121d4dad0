"""A rule pack's documentation questionnaire (Da Vinci DTR 2.x): pack data under `<pack>/dtr/`.

`dtr/dtr.json` names the Questionnaire file, the pre-population Library (CQL in `dtr/`, ELM in
`dtr/elm/`, translated by cql/tools/translate.mjs and loaded into the engine with the pack) and the
prefetch key that brings completed QuestionnaireResponses to the criteria. The Library includes the
pack's criteria library, so the package carries every library the questionnaire needs (DTR 2.x,
"Questionnaire Package": the Questionnaire first, then its Libraries and ValueSets).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path

from cds_hooks.packs.loader import RulePack, RulePackError

CANONICAL_BASE = "http://fusion-cds.example.org/fhir"
LIBRARY_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/library-type", "code": "logic-library"}]}


@dataclass
class DtrPack:
    folder: Path
    questionnaire: dict
    library_id: str
    library_version: str
    prefetch: dict[str, str]
    libraries: list[dict] = field(default_factory=list)  # FHIR Library resources, the questionnaire's first
    valuesets: list[dict] = field(default_factory=list)
    parameters: tuple[str, ...] = ()  # the parameters the pre-population library declares

    @property
    def questionnaire_canonical(self) -> str:
        return f"{self.questionnaire['url']}|{self.questionnaire['version']}"

    def accepts(self, canonical: str) -> bool:
        """Whether `canonical` (with or without `|version`) names this questionnaire."""
        url, _, version = canonical.partition("|")
        return url == self.questionnaire["url"] and version in ("", self.questionnaire["version"])

    def package_bundle(self) -> dict:
        """DTR QuestionnairePackage Bundle (profile DTR-QPackageBundle): a collection whose first entry
        is the Questionnaire (dtrb-1), then every Library it needs and the value sets they use."""
        entries = [self.questionnaire, *self.libraries, *self.valuesets]
        return {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {"fullUrl": f"{r['url']}|{r['version']}" if r.get("version") else r["url"], "resource": r}
                for r in entries
            ],
        }


def _library_resource(elm: dict, cql_text: str | None) -> dict:
    ident = elm["library"]["identifier"]
    includes = (elm["library"].get("includes") or {}).get("def") or []
    content = []
    if cql_text is not None:
        content.append({"contentType": "text/cql", "data": base64.b64encode(cql_text.encode()).decode()})
    content.append(
        {
            "contentType": "application/elm+json",
            "data": base64.b64encode(json.dumps(elm, separators=(",", ":")).encode()).decode(),
        }
    )
    resource = {
        "resourceType": "Library",
        "id": ident["id"],
        "url": f"{CANONICAL_BASE}/Library/{ident['id']}",
        "version": ident.get("version"),
        "name": ident["id"],
        "status": "active",
        "type": LIBRARY_TYPE,
        "content": content,
    }
    related = [
        {"type": "depends-on", "resource": f"{CANONICAL_BASE}/Library/{i['path']}|{i['version']}"}
        for i in includes
        if i.get("path") and i.get("version")
    ]
    if related:
        resource["relatedArtifact"] = related
    return resource


def _cql_source(pack: RulePack, dtr_folder: Path, library_id: str) -> str | None:
    for folder in (dtr_folder, pack.folder, pack.folder.parent / "common"):
        path = folder / f"{library_id}.cql"
        if path.is_file():
            return path.read_text(encoding="utf-8")
    return None


def _needed(elm_by_id: dict[str, dict], root: str) -> list[str]:
    """`root` and every library it includes, transitively, root first."""
    order, todo = [], [root]
    while todo:
        lib = todo.pop(0)
        if lib in order or lib not in elm_by_id:
            continue
        order.append(lib)
        todo.extend(i["path"] for i in (elm_by_id[lib]["library"].get("includes") or {}).get("def") or [])
    return order


def load_dtr(pack: RulePack) -> DtrPack | None:
    """The pack's DTR data, or None when the pack has no `dtr/` folder."""
    folder = pack.folder / "dtr"
    if not (folder / "dtr.json").is_file():
        return None
    try:
        spec = json.loads((folder / "dtr.json").read_text(encoding="utf-8"))
        questionnaire = json.loads((folder / spec["questionnaire"]).read_text(encoding="utf-8"))
        library_id, library_version = spec["library"]["id"], spec["library"]["version"]
        prefetch = dict(spec.get("prefetch") or {})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RulePackError(f"{folder}: {exc}") from exc
    elm_by_id = {e["library"]["identifier"]["id"]: e for e in pack.elm}
    if library_id not in elm_by_id:
        raise RulePackError(f"{folder}: ELM for library {library_id} not found (run node cql/tools/translate.mjs)")
    libraries = [_library_resource(elm_by_id[i], _cql_source(pack, folder, i)) for i in _needed(elm_by_id, library_id)]
    declared = tuple(d["name"] for d in (elm_by_id[library_id]["library"].get("parameters") or {}).get("def") or [])
    return DtrPack(
        folder, questionnaire, library_id, library_version, prefetch, libraries, list(pack.valuesets), declared
    )
