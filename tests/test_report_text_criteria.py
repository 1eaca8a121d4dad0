"""Findings read from report text, through the real CQL engine: what they change and what they do not.

Coded data wins at a level; the report text decides where nothing is coded; the card quotes the sentence.
"""

import base64
import copy

import pytest

from conftest import request_fixture
from support.hooks import call, plus, result, resources, with_resources, without

from cds_hooks.web.app import create_app
from cds_hooks.config import Config
from cds_hooks.hooks.hook_request import parse_hook_request
from cds_hooks.web.extensions import registry_of

STENOSIS_CONDITIONS = ("Condition/seed-stenosis-l5s1", "Condition/seed-stenosis-l4l5")
INTERSPACE = "http://fusion-cds.example.org/fhir/CodeSystem/spinal-interspace"
L5S1_IMPRESSION = "Mild narrowing of both neural foramina at L5-S1."


def card_of(client, req):
    (card,) = call(client, req)["cards"]
    return card


def seed():
    return request_fixture("seed")


def seed_without_coded_stenosis():
    return without(seed(), *STENOSIS_CONDITIONS)


def with_report_text(req, conclusion, presented=None, status="final", report_id="seed-mri-2026-report"):
    """The seed request whose MRI report says `conclusion` (and `presented` as its presentedForm)."""
    items = copy.deepcopy(resources(req))
    report = next(r for r in items if r["resourceType"] == "DiagnosticReport" and r["id"] == report_id)
    if conclusion is None:
        report.pop("conclusion", None)
    else:
        report["conclusion"] = conclusion
    report["status"] = status
    if presented is None:
        report.pop("presentedForm", None)
    else:
        report["presentedForm"] = [{"contentType": "text/plain", "data": base64.b64encode(presented.encode()).decode()}]
    return with_resources(req, items)


def derived_refs(r):
    return [ref for ref in r["evidence"] if ref.startswith("Observation/derived-")]


def test_seed_verdict_stands_without_its_coded_stenosis_conditions(client):
    """Verdict: warning card; imaging-severity at L5-S1 not-met for the same reason, now from the report text.

    Removing the Conditions also removes the only stenosis diagnosis codes, so `indication` changes
    (to not-met: only supporting diagnoses); every other required criterion keeps its status.
    """
    coded = card_of(client, seed())
    text = card_of(client, seed_without_coded_stenosis())
    assert text["indicator"] == coded["indicator"] == "warning"
    before, after = result(coded, "imaging-severity", "L5-S1"), result(text, "imaging-severity", "L5-S1")
    assert after["status"] == before["status"] == "not-met"
    # Condition.severity is never an imaging grade: both verdicts come from the report text.
    assert after["reason"] == "Highest stenosis grade at L5-S1 is mild (needs moderate or worse)"
    assert before["reason"].startswith(after["reason"] + "; not counted: problem-list severity")
    assert derived_refs(after) and derived_refs(before)
    for criterion, level in (("conservative-care", None), ("instability", "L5-S1")):
        assert result(text, criterion, level)["status"] == result(coded, criterion, level)["status"]
    assert result(text, "indication")["status"] == "not-met"


def case_view_evidence(app, req, criterion: str) -> str:
    """The evidence lines the case view shows for a criterion (the evaluation's case record)."""
    evaluator = registry_of(app).get("lumbar-fusion")
    (case,) = evaluator.evaluate(parse_hook_request(req, evaluator.pack.hook)).cases
    return "\n".join(e["text"] for c in case.record["criteria"] if c["id"] == criterion for e in c["evidence"])


def test_the_case_view_quotes_the_impression_sentence_as_evidence(app):
    evidence = case_view_evidence(app, seed_without_coded_stenosis(), "imaging-severity")
    assert f"— “{L5S1_IMPRESSION}”" in evidence
    assert (
        "Report text (impression, 2026-09-02): Spinal stenosis grade: mild, neural foramen, bilateral at L5-S1"
        in evidence
    )


def test_an_order_at_l4l5_reads_the_mild_left_foraminal_grade_from_text(client):
    req = seed_without_coded_stenosis()
    order = req["context"]["draftOrders"]["entry"][0]["resource"]
    order["bodySite"] = [{"coding": [{"system": INTERSPACE, "code": "L4-L5"}], "text": "L4-L5"}]
    r = result(card_of(client, req), "imaging-severity", "L4-L5")
    assert r["status"] == "not-met" and r["reason"].startswith("Highest stenosis grade at L4-L5 is mild")


def test_a_text_grade_decides_where_nothing_is_coded(client):
    req = with_report_text(seed_without_coded_stenosis(), "Moderate central canal stenosis at L5-S1.")
    r = result(card_of(client, req), "imaging-severity", "L5-S1")
    assert r["status"] == "met" and r["reason"] == "Stenosis at L5-S1 graded moderate"


def test_coded_data_wins_and_the_card_shows_the_conflict(client):
    coded = {
        "resourceType": "Observation",
        "id": "seed-x-grade",
        "status": "final",
        "code": {
            "coding": [
                {
                    "system": "http://fusion-cds.example.org/fhir/CodeSystem/spine-finding",
                    "code": "spinal-stenosis-grade",
                }
            ]
        },
        "subject": {"reference": "Patient/seed-patient"},
        "effectiveDateTime": "2026-09-02",
        "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "255604002"}]},
        "bodySite": {
            "coding": [{"system": "http://fusion-cds.example.org/fhir/CodeSystem/spinal-interspace", "code": "L5-S1"}]
        },
        "derivedFrom": [{"reference": "ImagingStudy/seed-mri-2026"}],
    }
    req = with_report_text(seed_without_coded_stenosis(), "Severe central canal stenosis at L5-S1.")
    req = plus(req, coded)
    r = result(card_of(client, req), "imaging-severity", "L5-S1")
    assert r["status"] == "not-met"
    assert r["reason"] == (
        "Highest stenosis grade at L5-S1 is mild (needs moderate or worse); "
        "the report text reads severe (coded grade used)"
    )
    assert derived_refs(r)


def test_a_report_denying_stenosis_at_the_level_is_not_met_with_grade_none(client):
    req = with_report_text(seed_without_coded_stenosis(), "No central canal or foraminal stenosis at L5-S1.")
    r = result(card_of(client, req), "imaging-severity", "L5-S1")
    assert r["status"] == "not-met" and "is none" in r["reason"]


@pytest.mark.parametrize(
    "conclusion",
    [
        "Possible moderate central canal stenosis at L5-S1.",
        "Central canal stenosis at L5-S1, previously severe.",
        "No severe stenosis at L5-S1.",
    ],
)
def test_hedged_prior_or_denied_grades_never_count(client, conclusion):
    req = with_report_text(seed_without_coded_stenosis(), conclusion)
    assert result(card_of(client, req), "imaging-severity", "L5-S1")["status"] == "not-documented"


def test_a_preliminary_report_text_does_not_count(client):
    req = with_report_text(
        seed_without_coded_stenosis(), "Severe central canal stenosis at L5-S1.", status="preliminary"
    )
    assert result(card_of(client, req), "imaging-severity", "L5-S1")["status"] == "not-documented"


def test_the_case_view_says_when_the_impression_overrules_the_findings(app, client):
    report = (
        "FINDINGS:\nL5-S1: Moderate central canal stenosis.\n\nIMPRESSION:\nMild central canal stenosis at L5-S1.\n"
    )
    req = with_report_text(seed_without_coded_stenosis(), None, presented=report)
    r = result(card_of(client, req), "imaging-severity", "L5-S1")
    assert r["status"] == "not-met" and "is mild" in r["reason"]
    assert (
        "the impression wins over the findings section, which reads moderate central canal stenosis: "
        "“L5-S1: Moderate central canal stenosis.”" in case_view_evidence(app, req, "imaging-severity")
    )


def test_a_slip_found_only_in_text_meets_instability_under_the_default_profile(client):
    req = with_report_text(
        seed(), "1. Grade 1 anterolisthesis of L5 on S1. 2. Mild bilateral foraminal narrowing at L5-S1."
    )
    r = result(card_of(client, req), "instability", "L5-S1")
    assert r["status"] == "met" and r["reason"] == "Spondylolisthesis at L5-S1 (read from the imaging report text)"
    assert derived_refs(r)


def test_a_strict_profile_needs_a_text_slip_of_grade_two(app, client):
    pack = app.extensions["cds_hooks"].get("lumbar-fusion").pack
    profile = pack.profiles["default"]
    saved = profile.parameters["SpondylolisthesisInstability"]
    profile.parameters["SpondylolisthesisInstability"] = "grade2+"
    try:
        grade1 = result(
            card_of(client, with_report_text(seed(), "Grade 1 anterolisthesis of L5 on S1.")), "instability", "L5-S1"
        )
        grade2 = result(
            card_of(client, with_report_text(seed(), "Grade 2 anterolisthesis of L5 on S1.")), "instability", "L5-S1"
        )
    finally:
        profile.parameters["SpondylolisthesisInstability"] = saved
    assert grade1["status"] == "not-met" and grade2["status"] == "met"


def test_translation_read_from_flexion_extension_report_text_meets_instability(client):
    films = {
        "resourceType": "DiagnosticReport",
        "id": "seed-fe-xr-report",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD"}]}],
        "code": {
            "coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "72114"}],
            "text": "Lumbar spine radiographs with flexion and extension views",
        },
        "subject": {"reference": "Patient/seed-patient"},
        "effectiveDateTime": "2026-10-20",
        "conclusion": "5 mm of dynamic translation at L5-S1 between flexion and extension.",
    }
    r = result(card_of(client, plus(seed(), films)), "instability", "L5-S1")
    assert r["status"] == "met" and r["reason"] == "Flexion-extension films show translation 5 mm at L5-S1"
    assert "DiagnosticReport/seed-fe-xr-report" in r["evidence"] and derived_refs(r)


def test_reading_report_text_can_be_turned_off(engine):
    app = create_app(Config.development(report_text=False), engine=engine)
    r = result(card_of(app.test_client(), seed_without_coded_stenosis()), "imaging-severity", "L5-S1")
    assert r["status"] == "not-documented"
