"""Criterion by criterion, through the real CQL engine: thresholds, windows, levels, validity.

Each test starts from a fixture patient and changes one thing.
"""

import pytest

from conftest import request_fixture
from support.hooks import call, find, orders, plus, result, resources, with_resources, without

INTERSPACE = "http://fusion-cds.example.org/fhir/CodeSystem/spinal-interspace"
SNOMED = "http://snomed.info/sct"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
CPT = "http://www.ama-assn.org/go/cpt"
FINDING = "http://fusion-cds.example.org/fhir/CodeSystem/spine-finding"


def card_of(client, req):
    body = call(client, req)
    assert len(body["cards"]) == 1
    return body["cards"][0]


def seed():
    return request_fixture("seed")


def condition(cid, code, level=None, severity=None, recorded="2026-09-02", patient="seed-patient", **extra):
    c = {"resourceType": "Condition", "id": cid,
         "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
         "code": {"coding": [{"system": ICD, "code": code}], "text": code},
         "subject": {"reference": f"Patient/{patient}"}, "recordedDate": recorded}
    if level:
        c["bodySite"] = [{"coding": [{"system": INTERSPACE, "code": level}], "text": level}]
    if severity:
        c["severity"] = {"coding": [{"system": SNOMED, "code": severity}]}
    c.update(extra)
    return c


def observation(oid, code, system, value, level=None, date="2026-10-01", patient="seed-patient"):
    o = {"resourceType": "Observation", "id": oid, "status": "final",
         "code": {"coding": [{"system": system, "code": code}]},
         "subject": {"reference": f"Patient/{patient}"}, "effectiveDateTime": date}
    o.update(value)
    if level:
        o["bodySite"] = {"coding": [{"system": INTERSPACE, "code": level}], "text": level}
    return o


def procedure(pid, code, date, patient="seed-patient", status="completed", **extra):
    p = {"resourceType": "Procedure", "id": pid, "status": status,
         "code": {"coding": [{"system": CPT, "code": code}]},
         "subject": {"reference": f"Patient/{patient}"}, "performedDateTime": date}
    p.update(extra)
    return p


# ---------------------------------------------------------------- indication

def test_supporting_diagnoses_alone_do_not_meet_indication(client):
    req = without(seed(), "Condition/seed-stenosis-l5s1", "Condition/seed-stenosis-l4l5")
    r = result(card_of(client, req), "indication")
    assert r["status"] == "not-met" and "supporting" in r["reason"]


def test_a_profile_admitting_the_discogenic_pathway_meets_indication_with_ddd(app, client):
    req = without(seed(), "Condition/seed-stenosis-l5s1", "Condition/seed-stenosis-l4l5")
    pack = app.extensions["cds_hooks"].get("lumbar-fusion").pack
    pack.profiles["default"].parameters["AdmitDiscogenic"] = True
    try:
        r = result(card_of(client, req), "indication")
    finally:
        pack.profiles["default"].parameters["AdmitDiscogenic"] = False
    assert r["status"] == "met" and r["evidence"] == ["Condition/seed-ddd-lumbar"]


def test_a_refuted_pathway_diagnosis_does_not_count(client):
    req = seed()
    for cid in ("seed-stenosis-l5s1", "seed-stenosis-l4l5"):
        find(req, "Condition", cid)["verificationStatus"] = {"coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "refuted"}]}
    req = with_resources(req, resources(req))
    assert result(card_of(client, req), "indication")["status"] == "not-met"


def test_a_resolved_pathway_diagnosis_does_not_count(client):
    req = seed()
    for cid in ("seed-stenosis-l5s1", "seed-stenosis-l4l5"):
        find(req, "Condition", cid)["clinicalStatus"]["coding"][0]["code"] = "resolved"
    assert result(card_of(client, with_resources(req, resources(req))), "indication")["status"] == "not-met"


# ---------------------------------------------------------------- imaging severity

def test_seed_l4_l5_finding_does_not_affect_the_l5_s1_order(client):
    req = seed()
    find(req, "Condition", "seed-stenosis-l4l5")["severity"]["coding"][0]["code"] = "24484000"  # severe
    r = result(card_of(client, with_resources(req, resources(req))), "imaging-severity", "L5-S1")
    assert r["status"] == "not-met"
    assert "Condition/seed-stenosis-l4l5" not in r["evidence"]


def test_an_entered_in_error_severe_grade_never_counts(client):
    r = result(card_of(client, seed()), "imaging-severity", "L5-S1")
    assert r["status"] == "not-met" and "Condition/seed-stenosis-l5s1-eie" not in r["evidence"]


@pytest.mark.parametrize("code, status", [
    ("255604002", "not-met"),   # mild
    ("371923003", "not-met"),   # mild to moderate
    ("6736007", "met"),         # moderate
    ("371924009", "met"),       # moderate to severe
    ("24484000", "met"),        # severe
])
def test_grades_count_from_moderate_up(client, code, status):
    req = seed()
    find(req, "Condition", "seed-stenosis-l5s1")["severity"]["coding"][0]["code"] = code
    assert result(card_of(client, with_resources(req, resources(req))), "imaging-severity", "L5-S1")["status"] == status


def test_the_level_grade_is_the_maximum_over_compartments(client):
    central = observation("seed-central-l5s1", "spinal-stenosis-grade", FINDING,
                          {"valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "24484000"}]}}, "L5-S1",
                          date="2026-09-02")
    r = result(card_of(client, plus(seed(), central)), "imaging-severity", "L5-S1")
    assert r["status"] == "met" and "Observation/seed-central-l5s1" in r["evidence"]


def test_grade_recorded_as_free_text_level_counts_at_that_level(client):
    req = seed()
    c = find(req, "Condition", "seed-stenosis-l5s1")
    c["bodySite"] = [{"text": "L5/S1 neural foramina"}]
    c["severity"] = {"text": "Moderate to severe"}
    assert result(card_of(client, with_resources(req, resources(req))), "imaging-severity", "L5-S1")["status"] == "met"


def test_imaging_older_than_the_window_is_listed_outside_it(client):
    req = seed()
    find(req, "ImagingStudy", "seed-mri-2026")["started"] = "2025-10-01T09:00:00Z"
    find(req, "DiagnosticReport", "seed-mri-2026-report")["effectiveDateTime"] = "2025-10-01"
    r = result(card_of(client, with_resources(req, resources(req))), "imaging-severity", "L5-S1")
    assert r["status"] == "not-documented"
    assert "ImagingStudy/seed-mri-2026" in r["outsideWindow"]


def test_an_order_without_a_level_makes_level_criteria_not_documented(client):
    req = seed()
    orders(req)[0].pop("bodySite")
    orders(req)[0]["code"]["text"] = "Anterior lumbar interbody fusion (ALIF)"
    card = card_of(client, req)
    for cid in ("imaging-severity", "instability"):
        r = result(card, cid)
        assert r["status"] == "not-documented" and r["reason"] == "Operative level missing on the order"
    assert "Operative level missing" in card["detail"]


# ---------------------------------------------------------------- conservative care

def pt_course(n, weeks, start="2026-05-04"):
    from datetime import date, timedelta

    first = date.fromisoformat(start)
    step = (weeks * 7) / max(n - 1, 1)
    return [procedure(f"seed-x-pt-{i}", "97110", (first + timedelta(days=round(i * step))).isoformat())
            for i in range(n)]


def seed_without_pt():
    return without(seed(), "Procedure/seed-pt-01", "Procedure/seed-pt-eval")


def test_six_sessions_over_six_weeks_meet_conservative_care(client):
    r = result(card_of(client, plus(seed_without_pt(), *pt_course(6, 6))), "conservative-care")
    assert r["status"] == "met"


def test_five_sessions_do_not(client):
    r = result(card_of(client, plus(seed_without_pt(), *pt_course(5, 7))), "conservative-care")
    assert r["status"] == "not-met" and "Only 5 PT sessions" in r["reason"]


def test_six_sessions_over_five_weeks_do_not(client):
    assert result(card_of(client, plus(seed_without_pt(), *pt_course(6, 5))), "conservative-care")["status"] == "not-met"


def test_an_evaluation_starts_the_clock(client):
    items = pt_course(6, 5, start="2026-05-11") + [procedure("seed-x-eval", "97161", "2026-05-04")]
    assert result(card_of(client, plus(seed_without_pt(), *items)), "conservative-care")["status"] == "met"


def test_sessions_on_the_same_day_count_once(client):
    items = pt_course(6, 6) + [procedure("seed-x-dup", "97140", "2026-05-04")]
    items[1]["performedDateTime"] = "2026-05-04"
    assert result(card_of(client, plus(seed_without_pt(), *items)), "conservative-care")["status"] == "not-met"


def test_a_course_recorded_as_one_period_meets_conservative_care(client):
    course = procedure("seed-x-course", "97110", None)
    course.pop("performedDateTime")
    course["performedPeriod"] = {"start": "2026-03-02", "end": "2026-04-20"}
    assert result(card_of(client, plus(seed_without_pt(), course)), "conservative-care")["status"] == "met"


def test_sessions_outside_the_window_do_not_count_and_are_listed(client):
    old = pt_course(8, 8, start="2025-03-01")
    r = result(card_of(client, plus(seed_without_pt(), *old)), "conservative-care")
    assert r["status"] == "not-documented" and len(r["outsideWindow"]) == 8


def test_documented_intolerance_is_an_exception_that_needs_review(client):
    r = result(card_of(client, seed()), "conservative-care")
    assert r["status"] == "not-met" and r["reason"].startswith("Exception claimed — needs review")


def test_a_red_flag_waives_conservative_care_only(client):
    cauda = condition("seed-x-ces", "G83.4", recorded="2026-11-01")
    card = card_of(client, plus(seed(), cauda))
    assert result(card, "conservative-care")["status"] == "waived"
    assert result(card, "red-flags")["status"] == "met"
    assert result(card, "imaging-severity", "L5-S1")["status"] == "not-met"


def test_a_lumbar_fracture_code_family_is_a_red_flag(client):
    fracture = condition("seed-x-fx", "S32.041A", recorded="2026-11-01")
    assert result(card_of(client, plus(seed(), fracture)), "red-flags")["status"] == "met"


# ---------------------------------------------------------------- instability

def translation(oid, mm, level, date="2026-10-01"):
    return observation(oid, "segmental-translation", FINDING,
                       {"valueQuantity": {"value": mm, "unit": "mm", "system": "http://unitsofmeasure.org", "code": "mm"}},
                       level, date)


@pytest.mark.parametrize("mm, status", [(3.9, "not-met"), (4.0, "met"), (4.5, "met")])
def test_translation_threshold_is_inclusive(client, mm, status):
    r = result(card_of(client, plus(seed(), translation("seed-x-tr", mm, "L5-S1"))), "instability", "L5-S1")
    assert r["status"] == status


def test_angulation_at_threshold_meets_instability(client):
    ang = observation("seed-x-ang", "segmental-angulation", FINDING,
                      {"valueQuantity": {"value": 10, "unit": "deg"}}, "L5-S1")
    assert result(card_of(client, plus(seed(), ang)), "instability", "L5-S1")["status"] == "met"


def test_motion_at_another_level_never_counts(client):
    r = result(card_of(client, plus(seed(), translation("seed-x-tr", 8, "L4-L5"))), "instability", "L5-S1")
    assert r["status"] == "not-documented"


def test_lumbosacral_spondylolisthesis_implies_l5_s1(client):
    r = result(card_of(client, plus(seed(), condition("seed-x-slip", "M43.17"))), "instability", "L5-S1")
    assert r["status"] == "met"


def test_lumbar_spondylolisthesis_needs_a_level(client):
    r = result(card_of(client, plus(seed(), condition("seed-x-slip", "M43.16"))), "instability", "L5-S1")
    assert r["status"] == "not-documented"


def test_a_cobb_angle_at_threshold_meets_instability(client):
    cobb = observation("seed-x-cobb", "285285000", SNOMED, {"valueQuantity": {"value": 30, "unit": "deg"}})
    assert result(card_of(client, plus(seed(), cobb)), "instability", "L5-S1")["status"] == "met"


def test_sagittal_vertical_axis_below_threshold_does_not(client):
    sva = observation("seed-x-sva", "sagittal-vertical-axis", FINDING, {"valueQuantity": {"value": 4.9, "unit": "cm"}})
    assert result(card_of(client, plus(seed(), sva)), "instability", "L5-S1")["status"] == "not-documented"


def test_films_without_measurements_at_the_level_are_not_documented(client):
    films = {"resourceType": "ImagingStudy", "id": "seed-x-fe", "status": "available",
             "subject": {"reference": "Patient/seed-patient"}, "started": "2026-10-01T10:00:00Z",
             "procedureCode": [{"coding": [{"system": CPT, "code": "72114"}]}]}
    r = result(card_of(client, plus(seed(), films)), "instability", "L5-S1")
    assert r["status"] == "not-documented" and r["evidence"] == ["ImagingStudy/seed-x-fe"]


# ---------------------------------------------------------------- advisory criteria

def test_injection_outside_the_window_is_not_documented(client):
    req = seed()
    find(req, "Procedure", "seed-esi-l5s1")["performedDateTime"] = "2025-06-01"
    r = result(card_of(client, with_resources(req, resources(req))), "injection-trial")
    assert r["status"] == "not-documented" and r["outsideWindow"] == ["Procedure/seed-esi-l5s1"]


def test_pregabalin_named_only_in_text_counts(client):
    med = {"resourceType": "MedicationRequest", "id": "seed-x-lyrica", "status": "completed", "intent": "order",
           "medicationCodeableConcept": {"text": "Lyrica 75 mg capsule"},
           "subject": {"reference": "Patient/seed-patient"}, "authoredOn": "2026-08-01"}
    assert result(card_of(client, plus(seed(), med)), "neuropathic-medication")["status"] == "met"


def test_facet_block_meets_facet_evaluation(client):
    r = result(card_of(client, plus(seed(), procedure("seed-x-mbb", "64493", "2026-06-01"))), "facet-evaluation")
    assert r["status"] == "met"


# ---------------------------------------------------------------- nicotine

def smoking(code, date="2026-10-01", quit=None):
    o = observation("seed-x-smoke", "72166-2", "http://loinc.org",
                    {"valueCodeableConcept": {"coding": [{"system": SNOMED, "code": code}]}}, date=date)
    if quit:
        o["component"] = [{"code": {"coding": [{"system": "http://loinc.org", "code": "74010-0"}]},
                           "valueDateTime": quit}]
    return o


@pytest.mark.parametrize("obs, status", [
    (smoking("266919005"), "met"),                          # never
    (smoking("8517006", quit="2026-10-01"), "met"),          # quit 10 weeks before 2026-12-14
    (smoking("8517006", quit="2026-11-20"), "not-met"),      # quit 3 weeks before
    (smoking("8517006"), "not-documented"),                 # former, no quit date
    (smoking("449868002"), "not-met"),                      # smokes daily
], ids=["never", "quit-long-ago", "quit-recently", "former-no-date", "daily"])
def test_smoking_status_decides_nicotine(client, obs, status):
    assert result(card_of(client, plus(seed(), obs)), "nicotine")["status"] == status


@pytest.mark.parametrize("value, status", [(10, "met"), (10.5, "not-met")])
def test_cotinine_threshold_is_inclusive(client, value, status):
    cot = observation("seed-x-cot", "10366-3", "http://loinc.org",
                      {"valueQuantity": {"value": value, "unit": "ng/mL"}}, date="2026-11-01")
    assert result(card_of(client, plus(seed(), cot)), "nicotine")["status"] == status


# ---------------------------------------------------------------- profiles

def test_the_strict_payer_requires_nicotine_and_a_six_month_imaging_window(client):
    req = request_fixture("no-imaging")
    card = card_of(client, req)
    assert result(card, "nicotine")["required"] is True
    assert "strict" in card["source"]["label"].lower()


def test_the_strict_profile_needs_a_grade_two_slip(client):
    req = request_fixture("no-imaging")
    slip = condition("noimg-x-slip", "M43.16", "L4-L5", patient="noimg-patient")
    r = result(card_of(client, plus(req, slip)), "instability", "L4-L5")
    assert r["status"] == "not-met" and "grade 2" in r["reason"]
    grade = observation("noimg-x-grade", "spondylolisthesis-grade", FINDING, {"valueInteger": 2}, "L4-L5",
                        patient="noimg-patient")
    assert result(card_of(client, plus(req, slip, grade)), "instability", "L4-L5")["status"] == "met"
