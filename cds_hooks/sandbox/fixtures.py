"""The bundled fixture patients: their transaction Bundles, their draft orders, their prefetch.

`fhir_fixtures/patients/<name>.json` is a FHIR R4 transaction Bundle whose entries are all
`PUT Type/id` (FHIR R4 "RESTful API", update as create), `fhir_fixtures/orders/<name>.json` a
collection Bundle of the draft orders being signed. Prefetch built here answers each CDS Hooks
prefetch template (CDS Hooks 2.0, "Prefetch Template") from the patient's Bundle: a read gives the
resource or `null`, a search gives a searchset Bundle of the patient's resources of that type. Search
parameters other than the patient are not applied; the fixtures are written so that none is needed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cds_hooks.errors import CdsError
from cds_hooks.hooks.prefetch import TemplateError, render, resource_type_of

_SUBJECT_FIELDS = ("subject", "patient", "beneficiary")


class FixtureError(CdsError, ValueError):
    """A fixture name or file that does not exist or is not what it should be."""

    code = "fixture-invalid"


@dataclass
class FixturePatient:
    name: str
    bundle: dict
    orders: dict | None

    @property
    def resources(self) -> list[dict]:
        return [e["resource"] for e in self.bundle.get("entry", []) if isinstance(e.get("resource"), dict)]

    @property
    def patient(self) -> dict:
        return next(r for r in self.resources if r.get("resourceType") == "Patient")

    @property
    def patient_id(self) -> str:
        return self.patient["id"]

    def label(self) -> str:
        """`seed: Marisol J Ventner (female, 1974-03-18)`: synthetic people only."""
        p = self.patient
        names = p.get("name") or [{}]
        name = " ".join([*names[0].get("given", []), names[0].get("family", "")]).strip() or p["id"]
        return f"{self.name}: {name} ({p.get('gender', 'unknown')}, {p.get('birthDate', 'no birth date')})"


def _load(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise FixtureError(f"cannot read {path}: {exc}") from exc


def fixture_names(root: Path) -> list[str]:
    return sorted(p.stem for p in (Path(root) / "patients").glob("*.json"))


def load_fixture(root: Path, name: str) -> FixturePatient:
    """One fixture patient by name (`seed`, `meets-all`, ...)."""
    root = Path(root)
    if name not in fixture_names(root):
        raise FixtureError(f"no fixture patient {name!r}; known: {', '.join(fixture_names(root))}")
    bundle = _load(root / "patients" / f"{name}.json")
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
        raise FixtureError(f"{name}: patients/{name}.json is not a transaction Bundle")
    orders_path = root / "orders" / f"{name}.json"
    orders = _load(orders_path) if orders_path.exists() else None
    fixture = FixturePatient(name, bundle, orders)
    if sum(1 for r in fixture.resources if r.get("resourceType") == "Patient") != 1:
        raise FixtureError(f"{name}: the Bundle must hold exactly one Patient")
    return fixture


def load_fixtures(root: Path, names: list[str] | None = None) -> list[FixturePatient]:
    return [load_fixture(root, n) for n in (names or fixture_names(root))]


def _belongs_to(resource: dict, patient_id: str) -> bool:
    if resource.get("resourceType") == "Patient":
        return resource.get("id") == patient_id
    for name in _SUBJECT_FIELDS:
        ref = resource.get(name)
        if isinstance(ref, dict) and ref.get("reference") == f"Patient/{patient_id}":
            return True
    return False


def fixture_prefetch(
    fixture: FixturePatient, templates: dict[str, str], context: dict, user_id: str | None = None
) -> dict:
    """Prefetch for every template the fixture can answer (a template with an unknown token is left out)."""
    resources = fixture.resources
    out: dict = {}
    for key, template in templates.items():
        try:
            query = render(template, context, user_id)
        except TemplateError:
            continue  # CDS Hooks 2.0: a client leaves out what it chooses not to satisfy
        rtype = resource_type_of(query)
        if "?" not in query and "/" in query:
            ident = query.split("/", 1)[1]
            out[key] = next((r for r in resources if r.get("resourceType") == rtype and r.get("id") == ident), None)
            continue
        matches = [r for r in resources if r.get("resourceType") == rtype and _belongs_to(r, fixture.patient_id)]
        bundle: dict = {"resourceType": "Bundle", "type": "searchset", "total": len(matches)}
        if matches:  # FHIR forbids empty arrays
            bundle["entry"] = [{"resource": r, "search": {"mode": "match"}} for r in matches]
        out[key] = bundle
    return out
