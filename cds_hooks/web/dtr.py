"""DTR `$questionnaire-package`: the documentation questionnaire a coverage-information answer points to.

Da Vinci DTR 2.x, OperationDefinition "questionnaire-package" (`POST [base]/Questionnaire/$questionnaire-package`):
the input Parameters carry `coverage` (1..*, Coverage), and optionally `order`, `referenced`,
`questionnaire` (canonicals) and `context`; the output Parameters (profile
dtr-qpackage-output-parameters) hold one `PackageBundle` per questionnaire: a collection Bundle whose
first entry is the Questionnaire, then the Libraries and ValueSets it needs (DTR-QPackageBundle).
Here the base is `/cds-services/{service}/dtr`, behind the same caller authentication as the hook:
the DTR client is the EHR that called the hook. Bad input answers 400 with an OperationOutcome.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from cds_hooks.web.extensions import registry_of
from cds_hooks.web.request_limits import json_body

bp = Blueprint("dtr", __name__)


def _outcome(status: int, code: str, text: str):
    body = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]}
    return jsonify(body), status, {"Content-Type": "application/fhir+json"}


def _parameters(body) -> list[dict]:
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        return []
    return [p for p in body.get("parameter") or [] if isinstance(p, dict) and isinstance(p.get("name"), str)]


@bp.post("/cds-services/<service_id>/dtr/Questionnaire/$questionnaire-package")
def questionnaire_package(service_id: str):
    evaluator = registry_of(current_app).get(service_id)
    if evaluator is None or evaluator.dtr is None:
        return _outcome(404, "not-found", "this service has no documentation questionnaire")
    body = json_body()
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        return _outcome(400, "structure", "the body must be a FHIR Parameters resource")
    params = _parameters(body)
    coverages = [p for p in params if p["name"] == "coverage"]
    if not coverages or not all(
        isinstance(p.get("resource"), dict) and p["resource"].get("resourceType") == "Coverage" for p in coverages
    ):
        return _outcome(400, "required", "coverage (a Coverage resource) is required, once per coverage")
    wanted = [p.get("valueCanonical") for p in params if p["name"] == "questionnaire"]
    if any(not isinstance(w, str) for w in wanted):
        return _outcome(400, "value", "questionnaire must be a canonical (valueCanonical)")
    dtr = evaluator.dtr
    if wanted and not any(dtr.accepts(w) for w in wanted):
        return _outcome(404, "not-found", "no such questionnaire on this service")
    out = {"resourceType": "Parameters", "parameter": [{"name": "PackageBundle", "resource": dtr.package_bundle()}]}
    return jsonify(out), 200, {"Content-Type": "application/fhir+json"}
