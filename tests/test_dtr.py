"""Da Vinci DTR 2.x conformance: the questionnaire package, pre-population from the record with the
criteria's own CQL, and a completed QuestionnaireResponse read back as attested evidence."""

import base64
import copy
import json
from datetime import datetime

import pytest
from fhir.resources.R4B import get_fhir_model_class

from cds_hooks.sandbox.dtr_client import complete, prepopulate, questionnaire_of
from cds_hooks.web.extensions import registry_of
from conftest import request_fixture
from support.hooks import plus, resources

PACKAGE = "/cds-services/lumbar-fusion/dtr/Questionnaire/$questionnaire-package"
QUESTIONNAIRE = "http://fusion-cds.example.org/fhir/Questionnaire/lumbar-fusion-documentation"
SNOMED = "http://snomed.info/sct"


def seed_coverage() -> dict:
    return request_fixture("seed")["prefetch"]["coverage"]["entry"][0]["resource"]


def package(client, *extra):
    body = {"resourceType": "Parameters", "parameter": [{"name": "coverage", "resource": seed_coverage()}, *extra]}
    return client.post(PACKAGE, json=body)


def test_the_package_is_output_parameters_with_a_bundle_whose_first_entry_is_the_questionnaire(client):
    """DTR 2.x dtr-qpackage-output-parameters (PackageBundle 1..*) and DTR-QPackageBundle (collection,
    dtrb-1: the first resource is a Questionnaire), with the Libraries it depends on."""
    r = package(client)
    assert r.status_code == 200
    out = r.get_json()
    get_fhir_model_class("Parameters").model_validate(out)
    bundles = [p["resource"] for p in out["parameter"] if p["name"] == "PackageBundle"]
    assert len(bundles) == 1 and bundles[0]["type"] == "collection"
    first = bundles[0]["entry"][0]["resource"]
    assert first["resourceType"] == "Questionnaire" and first["url"] == QUESTIONNAIRE
    libraries = {
        e["resource"]["url"] + "|" + e["resource"]["version"]: e["resource"]
        for e in bundles[0]["entry"]
        if e["resource"]["resourceType"] == "Library"
    }
    cqf = next(e["valueCanonical"] for e in first["extension"] if e["url"].endswith("cqf-library"))
    assert cqf in libraries
    needed = {a["resource"] for lib in libraries.values() for a in lib.get("relatedArtifact", [])}
    assert needed <= set(libraries), "every depends-on library travels in the package"
    for lib in libraries.values():
        assert {c["contentType"] for c in lib["content"]} >= {"application/elm+json"}


def test_the_pre_population_library_includes_the_criteria_library_rather_than_copying_it(client):
    bundle = package(client).get_json()["parameter"][0]["resource"]
    dtr = next(
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Library" and e["resource"]["name"] == "LumbarFusionDocumentation"
    )
    assert "http://fusion-cds.example.org/fhir/Library/LumbarFusionCriteria|1.0.0" in [
        a["resource"] for a in dtr["relatedArtifact"]
    ]


def test_every_item_has_an_initial_expression_the_library_defines(client):
    """SDC initialExpression, DTR "Pre-population": each item names a define of the cqf-library."""
    bundle = package(client).get_json()["parameter"][0]["resource"]
    q = bundle["entry"][0]["resource"]

    dtr = next(
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Library" and e["resource"]["name"] == "LumbarFusionDocumentation"
    )
    elm = json.loads(
        base64.b64decode(next(c["data"] for c in dtr["content"] if c["contentType"] == "application/elm+json"))
    )
    defines = {d["name"] for d in elm["library"]["statements"]["def"]}
    for item in q["item"]:
        expr = next(e["valueExpression"] for e in item["extension"] if e["url"].endswith("initialExpression"))
        assert expr["language"] == "text/cql-identifier" and expr["expression"] in defines, item["linkId"]


@pytest.mark.parametrize(
    "body, status",
    [
        ({"resourceType": "Bundle"}, 400),
        ({"resourceType": "Parameters", "parameter": []}, 400),
        (
            {
                "resourceType": "Parameters",
                "parameter": [{"name": "coverage", "resource": {"resourceType": "Patient"}}],
            },
            400,
        ),
        (
            {
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "coverage", "resource": {"resourceType": "Coverage"}},
                    {"name": "questionnaire", "valueCanonical": "http://x.org/Q/other"},
                ],
            },
            404,
        ),
    ],
    ids=["not-parameters", "no-coverage", "coverage-not-a-coverage", "unknown-questionnaire"],
)
def test_bad_input_gets_an_operation_outcome_and_a_4xx(client, body, status):
    r = client.post(PACKAGE, json=body)
    assert r.status_code == status
    assert r.get_json()["resourceType"] == "OperationOutcome"


def prepopulated_seed(app, client):
    q = questionnaire_of(package(client).get_json())
    seed = request_fixture("seed")
    engine = registry_of(app).engine
    return q, prepopulate(
        engine,
        q,
        resources(seed),
        "seed-patient",
        {"ReferenceDate": "2026-12-14", "ConservativeWindowMonths": 12, "ImagingWindowMonths": 12},
    )


def answers(response: dict) -> dict:
    return {i["linkId"]: next(iter(i["answer"][0].values())) for i in response["item"] if i.get("answer")}


def test_the_seed_is_pre_populated_from_its_record_by_the_real_engine(app, client):
    """The seed (README): one PT session after the evaluation, an L5-S1 ESI on 2026-08-05, no
    flexion-extension films, no red flag, no smoking status."""
    q, response = prepopulated_seed(app, client)
    get_fhir_model_class("QuestionnaireResponse").model_validate(response)
    got = answers(response)
    assert got["injection"] is True and got["injection-date"] == "2026-08-05"
    assert got["flexion-extension-films"] is False and got["red-flag"] is False
    assert got["pt-session-count"] >= 1 and got["pt-first-date"] <= got["pt-last-date"]
    assert "smoking-status" not in got and "quit-date" not in got


def nicotine(card: dict) -> dict:
    return next(r for r in card["extension"]["org.example.fusion-cds.criteria"] if r["id"] == "nicotine")


def attested(app, client, status_code: str, quit_date: str | None) -> dict:
    q, draft = prepopulated_seed(app, client)
    answer = {
        "smoking-status": [{"valueCoding": {"system": SNOMED, "code": status_code}}],
        "quit-date": [{"valueDate": quit_date}] if quit_date else [],
    }
    return complete(
        draft,
        answer,
        {"reference": "Practitioner/surgeon-1", "display": "Dr. Ana Ruiz"},
        "seed-dtr-1",
        when=datetime(2026, 11, 30, 9, 0),
    )


def test_a_completed_questionnaire_turns_nicotine_from_not_documented_to_met_attested(app, client):
    """The next evaluation reads the QuestionnaireResponse (prefetch key questionnaireResponses) as
    evidence attributed to its author and date, and says it is attested, not coded."""
    seed = request_fixture("seed")
    before = nicotine(client.post("/cds-services/lumbar-fusion", json=seed).get_json()["cards"][0])
    assert before["status"] == "not-documented"
    qr = attested(app, client, "8517006", "2025-03-01")
    body = copy.deepcopy(seed)
    body["hookInstance"] += "-after-dtr"
    body["prefetch"]["questionnaireResponses"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": qr}],
    }
    after = nicotine(client.post("/cds-services/lumbar-fusion", json=body).get_json()["cards"][0])
    assert after["status"] == "met"
    assert after["evidence"] == ["QuestionnaireResponse/seed-dtr-1"]
    assert "Dr. Ana Ruiz" in after["reason"] and "2026-11-30" in after["reason"] and "not coded" in after["reason"]


def test_an_attested_recent_quit_is_not_met(app, client):
    body = copy.deepcopy(request_fixture("seed"))
    body["prefetch"]["questionnaireResponses"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": attested(app, client, "8517006", "2026-12-01")}],
    }
    assert nicotine(client.post("/cds-services/lumbar-fusion", json=body).get_json()["cards"][0])["status"] == "not-met"


def test_coded_data_wins_over_an_attestation(app, client):
    """An attestation is read only where the coded record says nothing."""
    seed = request_fixture("seed")
    smoker = {
        "resourceType": "Observation",
        "id": "seed-smoker",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "72166-2"}]},
        "subject": {"reference": "Patient/seed-patient"},
        "effectiveDateTime": "2026-11-01",
        "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "77176002", "display": "Smoker"}]},
    }
    body = plus(seed, smoker)
    body["prefetch"]["questionnaireResponses"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": attested(app, client, "266919005", None)}],
    }
    result = nicotine(client.post("/cds-services/lumbar-fusion", json=body).get_json()["cards"][0])
    assert result["status"] == "not-met" and result["evidence"] == ["Observation/seed-smoker"]


def test_an_unprefetched_questionnaire_key_is_no_data_not_a_failed_source(client):
    """Supplementary evidence never marks a source failed nor forces a fetch."""
    out = client.post("/cds-services/lumbar-fusion", json=request_fixture("seed")).get_json()
    assert out["extension"]["org.example.fusion-cds.evaluation"]["unavailableSources"] == []


def _nicotine_with(app, client, qr: dict, tag: str) -> dict:
    body = copy.deepcopy(request_fixture("seed"))
    body["hookInstance"] += tag
    body["prefetch"]["questionnaireResponses"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": qr}],
    }
    return nicotine(client.post("/cds-services/lumbar-fusion", json=body).get_json()["cards"][0])


def test_an_attested_former_smoker_without_a_quit_date_is_not_met_or_documented(app, client):
    """Attested is not more than coded: a former smoker with no quit date proves no abstinence window."""
    result = _nicotine_with(app, client, attested(app, client, "8517006", None), "-no-quit-date")
    assert result["status"] == "not-documented"


def test_an_unfinished_attestation_counts_for_nothing(app, client):
    qr = attested(app, client, "266919005", None)
    qr["status"] = "in-progress"
    assert _nicotine_with(app, client, qr, "-in-progress")["status"] == "not-documented"


def test_an_answer_to_another_questionnaire_counts_for_nothing(app, client):
    qr = attested(app, client, "266919005", None)
    qr["questionnaire"] = "http://example.org/fhir/Questionnaire/intake"
    assert _nicotine_with(app, client, qr, "-other-questionnaire")["status"] == "not-documented"


def test_an_attestation_dated_after_the_surgery_date_counts_for_nothing(app, client):
    qr = attested(app, client, "266919005", None)
    qr["authored"] = "2027-01-05T09:00:00+00:00"
    assert _nicotine_with(app, client, qr, "-after-reference")["status"] == "not-documented"
