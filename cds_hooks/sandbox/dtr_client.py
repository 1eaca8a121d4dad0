"""The EHR's DTR client: fetch the questionnaire package, pre-populate it from the record, answer it.

Da Vinci DTR 2.x, "Pre-population": the client runs the package's CQL Library against the patient's
record and fills each item from its SDC `initialExpression` (language text/cql-identifier, a define of
the Library named by the Questionnaire's `cqf-library`). The result is a QuestionnaireResponse in
progress; answered and marked completed it is stored in the record, where the next order-sign call
reads it as attested evidence.
"""

from __future__ import annotations

import copy
from datetime import datetime, timezone

INITIAL_EXPRESSION = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-initialExpression"
CQF_LIBRARY = "http://hl7.org/fhir/StructureDefinition/cqf-library"


def questionnaire_of(package_parameters: dict) -> dict:
    """The Questionnaire of the first PackageBundle of a $questionnaire-package answer (dtrb-1: first entry)."""
    bundle = next(p["resource"] for p in package_parameters["parameter"] if p["name"] == "PackageBundle")
    return bundle["entry"][0]["resource"]


def _expression(item: dict) -> str | None:
    for ext in item.get("extension") or []:
        if ext.get("url") == INITIAL_EXPRESSION:
            return ext["valueExpression"]["expression"]
    return None


def _library(questionnaire: dict) -> tuple[str, str | None]:
    canonical = next(e["valueCanonical"] for e in questionnaire.get("extension") or [] if e.get("url") == CQF_LIBRARY)
    url, _, version = canonical.partition("|")
    return url.rsplit("/", 1)[-1], version or None


def _answer(item: dict, value) -> list[dict]:
    """The CQL value as a QuestionnaireResponse answer of the item's type; none when there is no value."""
    if value is None:
        return []
    kind = item["type"]
    if kind == "choice":
        coding = next(
            (o["valueCoding"] for o in item.get("answerOption") or [] if o.get("valueCoding", {}).get("code") == value),
            None,
        )
        return [{"valueCoding": coding}] if coding else []
    key = {
        "integer": "valueInteger",
        "decimal": "valueDecimal",
        "boolean": "valueBoolean",
        "date": "valueDate",
        "string": "valueString",
    }.get(kind)
    if key is None:
        return []
    if kind == "date" and isinstance(value, str):
        value = value[:10]
    return [{key: value}]


def prepopulate(engine, questionnaire: dict, resources: list[dict], patient_id: str, parameters: dict) -> dict:
    """A QuestionnaireResponse (status in-progress) with every item the record can answer."""
    library_id, version = _library(questionnaire)
    expressions = [e for e in (_expression(i) for i in questionnaire["item"]) if e]
    values = engine.evaluate(library_id, version, resources, patient_id, parameters, expressions=expressions)
    items = []
    for item in questionnaire["item"]:
        answers = _answer(item, values.get(_expression(item))) if _expression(item) else []
        out = {"linkId": item["linkId"], "text": item["text"]}
        if answers:
            out["answer"] = answers
        items.append(out)
    return {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": f"{questionnaire['url']}|{questionnaire['version']}",
        "status": "in-progress",
        "subject": {"reference": f"Patient/{patient_id}"},
        "item": items,
    }


def complete(
    response: dict, answers: dict[str, list[dict]], author: dict, response_id: str, when: datetime | None = None
) -> dict:
    """The response with the user's answers (linkId -> answer list, replacing the pre-populated ones),
    completed, authored now by `author`."""
    out = copy.deepcopy(response)
    out["id"] = response_id
    for item in out["item"]:
        if item["linkId"] in answers:
            if answers[item["linkId"]]:
                item["answer"] = answers[item["linkId"]]
            else:
                item.pop("answer", None)
    out["status"] = "completed"
    out["author"] = author
    moment = when or datetime.now(timezone.utc)
    if moment.tzinfo is None:  # FHIR dateTime with a time needs its offset
        moment = moment.replace(tzinfo=timezone.utc)
    out["authored"] = moment.isoformat(timespec="seconds")
    return out
