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
    c = {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
        "verificationStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]
        },
        "code": {"coding": [{"system": ICD, "code": code}], "text": code},
        "subject": {"reference": f"Patient/{patient}"},
        "recordedDate": recorded,
    }
    if level:
        c["bodySite"] = [{"coding": [{"system": INTERSPACE, "code": level}], "text": level}]
    if severity:
        c["severity"] = {"coding": [{"system": SNOMED, "code": severity}]}
    c.update(extra)
    return c


def observation(oid, code, system, value, level=None, date="2026-10-01", patient="seed-patient"):
    o = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": date,
    }
    o.update(value)
    if level:
        o["bodySite"] = {"coding": [{"system": INTERSPACE, "code": level}], "text": level}
    return o


def procedure(pid, code, date, patient="seed-patient", status="completed", **extra):
    p = {
        "resourceType": "Procedure",
        "id": pid,
        "status": status,
        "code": {"coding": [{"system": CPT, "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "performedDateTime": date,
    }
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
        find(req, "Condition", cid)["verificationStatus"] = {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "refuted"}]
        }
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


@pytest.mark.parametrize(
    "code, status",
    [
        ("255604002", "not-met"),  # mild
        ("371923003", "not-met"),  # mild to moderate
        ("6736007", "met"),  # moderate
        ("371924009", "met"),  # moderate to severe
        ("24484000", "met"),  # severe
    ],
)
def test_grades_count_from_moderate_up(client, code, status):
    r = result(card_of(client, plus(seed(), mri_grade("seed-x-grade", code))), "imaging-severity", "L5-S1")
    assert r["status"] == status


def mri_grade(oid, code, level="L5-S1", **extra):
    """A stenosis grade Observation tied to the seed's MRI (an imaging result)."""
    o = observation(
        oid,
        "spinal-stenosis-grade",
        FINDING,
        {"valueCodeableConcept": {"coding": [{"system": SNOMED, "code": code}]}},
        level,
        date="2026-09-02",
    )
    o["derivedFrom"] = [{"reference": "ImagingStudy/seed-mri-2026"}]
    o.update(extra)
    return o


def test_condition_severity_is_never_an_imaging_grade(client):
    req = seed()
    find(req, "Condition", "seed-stenosis-l5s1")["severity"]["coding"][0]["code"] = "24484000"  # severe
    r = result(card_of(client, with_resources(req, resources(req))), "imaging-severity", "L5-S1")
    assert r["status"] == "not-met" and "is not an imaging grade" in r["reason"]


def test_a_grade_not_tied_to_imaging_does_not_count(client):
    loose = mri_grade("seed-x-loose", "24484000")
    loose.pop("derivedFrom")
    r = result(card_of(client, plus(seed(), loose)), "imaging-severity", "L5-S1")
    assert r["status"] == "not-met" and "not tied to an imaging study" in r["reason"]


def test_a_coded_imaging_grade_outranks_the_report_text(client):
    r = result(card_of(client, plus(seed(), mri_grade("seed-x-grade", "6736007"))), "imaging-severity", "L5-S1")
    assert r["status"] == "met" and "report text reads mild" in r["reason"]


def test_a_grade_recorded_against_a_region_is_not_a_level(client):
    region = mri_grade("seed-x-region", "24484000")
    region["bodySite"] = {"text": "Lumbosacral spine"}
    r = result(card_of(client, plus(seed(), region)), "imaging-severity", "L5-S1")
    assert r["status"] == "not-met" and "names a region" in r["reason"]


def test_the_level_grade_is_the_maximum_over_compartments(client):
    central = mri_grade("seed-central-l5s1", "24484000")
    r = result(card_of(client, plus(seed(), central)), "imaging-severity", "L5-S1")
    assert r["status"] == "met" and "Observation/seed-central-l5s1" in r["evidence"]


def test_grade_recorded_as_free_text_level_counts_at_that_level(client):
    grade = mri_grade(
        "seed-x-text",
        "0",
        bodySite={"text": "L5/S1 neural foramina"},
        valueCodeableConcept={"text": "Moderate to severe"},
    )
    assert result(card_of(client, plus(seed(), grade)), "imaging-severity", "L5-S1")["status"] == "met"


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
    return [
        procedure(f"seed-x-pt-{i}", "97110", (first + timedelta(days=round(i * step))).isoformat(), bodySite=[LUMBAR])
        for i in range(n)
    ]


LUMBAR = {"coding": [{"system": SNOMED, "code": "122496007", "display": "Lumbar spine"}], "text": "Lumbar spine"}
KNEE = {"coding": [{"system": SNOMED, "code": "72696002", "display": "Knee"}], "text": "Right knee"}


def seed_without_pt():
    return without(seed(), "Procedure/seed-pt-01", "Procedure/seed-pt-eval")


def test_six_sessions_over_six_weeks_meet_conservative_care(client):
    r = result(card_of(client, plus(seed_without_pt(), *pt_course(6, 6))), "conservative-care")
    assert r["status"] == "met"


def test_five_sessions_do_not(client):
    r = result(card_of(client, plus(seed_without_pt(), *pt_course(5, 7))), "conservative-care")
    assert r["status"] == "not-met" and "Only 5 PT sessions" in r["reason"]


def test_six_sessions_over_five_weeks_do_not(client):
    assert (
        result(card_of(client, plus(seed_without_pt(), *pt_course(6, 5))), "conservative-care")["status"] == "not-met"
    )


def test_an_evaluation_starts_the_clock(client):
    items = pt_course(6, 5, start="2026-05-11") + [procedure("seed-x-eval", "97161", "2026-05-04", bodySite=[LUMBAR])]
    assert result(card_of(client, plus(seed_without_pt(), *items)), "conservative-care")["status"] == "met"


def test_sessions_on_the_same_day_count_once(client):
    items = pt_course(6, 6) + [procedure("seed-x-dup", "97140", "2026-05-04", bodySite=[LUMBAR])]
    items[1]["performedDateTime"] = "2026-05-04"
    assert result(card_of(client, plus(seed_without_pt(), *items)), "conservative-care")["status"] == "not-met"


def test_a_period_on_one_procedure_is_not_attendance(client):
    course = procedure("seed-x-course", "97110", None, bodySite=[LUMBAR])
    course.pop("performedDateTime")
    course["performedPeriod"] = {"start": "2026-03-02", "end": "2026-04-20"}
    assert result(card_of(client, plus(seed_without_pt(), course)), "conservative-care")["status"] == "not-met"


def test_therapy_for_another_body_part_never_counts(client):
    knee = [dict(p, bodySite=[KNEE]) for p in pt_course(10, 10)]
    r = result(card_of(client, plus(seed_without_pt(), *knee)), "conservative-care")
    assert r["status"] == "not-documented" and "not for the lumbar spine" in r["reason"]


def test_therapy_counts_for_the_spine_by_its_reason(client):
    course = pt_course(6, 6)
    for p in course:
        p.pop("bodySite")
        p["reasonReference"] = [{"reference": "Condition/seed-stenosis-l5s1"}]
    assert result(card_of(client, plus(seed_without_pt(), *course)), "conservative-care")["status"] == "met"


def test_sessions_of_separate_episodes_are_not_added(client):
    first = pt_course(3, 2, start="2026-02-02")
    second = [dict(p, id=p["id"] + "-b") for p in pt_course(3, 2, start="2026-08-03")]
    r = result(card_of(client, plus(seed_without_pt(), *first, *second)), "conservative-care")
    assert r["status"] == "not-met" and "separate episodes" in r["reason"]


def test_a_pt_discharge_visit_count_is_an_episode(client):
    count = observation(
        "seed-x-visits",
        "pt-visits-attended",
        FINDING,
        {"valueQuantity": {"value": 12, "unit": "visits", "code": "{visits}"}},
    )
    count.pop("effectiveDateTime")
    count["effectivePeriod"] = {"start": "2026-07-01", "end": "2026-09-15"}
    count["bodySite"] = LUMBAR
    r = result(card_of(client, plus(seed_without_pt(), count)), "conservative-care")
    assert r["status"] == "met" and "discharge summary" in r["reason"]


def test_chiropractic_is_shown_but_not_counted(client):
    chiro = [dict(p, code={"coding": [{"system": CPT, "code": "98940"}]}) for p in pt_course(8, 8)]
    r = result(card_of(client, plus(seed_without_pt(), *chiro)), "conservative-care")
    assert r["status"] == "not-documented" and "chiropractic" in r["reason"]


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


def test_an_unstable_lumbar_fracture_is_a_red_flag(client):
    fracture = condition("seed-x-fx", "S32.042A", recorded="2026-11-01")
    assert result(card_of(client, plus(seed(), fracture)), "red-flags")["status"] == "met"


def test_a_stable_fracture_is_not_a_red_flag(client):
    fracture = condition("seed-x-fx", "S32.041A", recorded="2026-11-01")
    assert result(card_of(client, plus(seed(), fracture)), "red-flags")["status"] == "not-documented"


@pytest.mark.parametrize("change", ["differential", "remote", "other-region"])
def test_a_red_flag_waives_only_when_confirmed_current_and_lumbar(client, change):
    flag = condition("seed-x-flag", "C79.51", "L4-L5", recorded="2026-11-01")
    if change == "differential":
        flag["verificationStatus"]["coding"][0]["code"] = "differential"
    elif change == "remote":
        flag["recordedDate"] = "2019-03-10"
    else:
        flag["bodySite"] = [{"coding": [{"system": SNOMED, "code": "71341001"}], "text": "Left femur"}]
    card = card_of(client, plus(seed(), flag))
    assert result(card, "red-flags")["status"] == "not-documented"
    assert result(card, "conservative-care")["status"] == "not-met"


def test_a_provisional_diagnosis_is_not_evidence(client):
    req = seed()
    for cid in ("seed-stenosis-l5s1", "seed-stenosis-l4l5"):
        find(req, "Condition", cid)["verificationStatus"]["coding"][0]["code"] = "provisional"
    r = result(card_of(client, with_resources(req, resources(req))), "indication")
    assert r["status"] == "not-met" and "only suspected" in r["reason"]


# ---------------------------------------------------------------- instability


def translation(oid, mm, level, date="2026-10-01"):
    return observation(
        oid,
        "segmental-translation",
        FINDING,
        {"valueQuantity": {"value": mm, "unit": "mm", "system": "http://unitsofmeasure.org", "code": "mm"}},
        level,
        date,
    )


@pytest.mark.parametrize("mm, status", [(3.9, "not-met"), (4.0, "met"), (4.5, "met")])
def test_translation_threshold_is_inclusive(client, mm, status):
    r = result(card_of(client, plus(seed(), translation("seed-x-tr", mm, "L5-S1"))), "instability", "L5-S1")
    assert r["status"] == status


def test_angulation_at_threshold_meets_instability(client):
    ang = observation(
        "seed-x-ang", "segmental-angulation", FINDING, {"valueQuantity": {"value": 10, "unit": "deg"}}, "L5-S1"
    )
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
    cobb["bodySite"] = LUMBAR
    assert result(card_of(client, plus(seed(), cobb)), "instability", "L5-S1")["status"] == "met"


def test_a_thoracic_cobb_angle_never_counts_at_a_lumbar_level(client):
    cobb = observation("seed-x-cobb", "285285000", SNOMED, {"valueQuantity": {"value": 42, "unit": "deg"}})
    cobb["bodySite"] = {"coding": [{"system": SNOMED, "code": "122495006"}], "text": "Thoracic spine"}
    r = result(card_of(client, plus(seed(), cobb)), "instability", "L5-S1")
    assert r["status"] == "not-documented" and "not a lumbar measurement" in r["reason"]


@pytest.mark.parametrize(
    "quantity, status",
    [
        ({"value": 0.5, "unit": "cm", "code": "cm"}, "met"),  # 5 mm
        ({"value": 8, "unit": "%", "code": "%"}, "not-documented"),  # not a length
        ({"value": 6}, "not-documented"),  # no unit
        ({"value": 48, "unit": "pixels"}, "not-documented"),  # not UCUM
    ],
)
def test_a_translation_is_read_with_its_unit(client, quantity, status):
    tr = observation("seed-x-tr", "segmental-translation", FINDING, {"valueQuantity": quantity}, "L5-S1")
    r = result(card_of(client, plus(seed(), tr)), "instability", "L5-S1")
    assert r["status"] == status
    if status != "met":
        assert "not counted" in r["reason"]


def slip(oid, mm, position=None, direction="anterolisthesis"):
    o = observation(
        oid, "spondylolisthesis", FINDING, {"valueQuantity": {"value": mm, "unit": "mm", "code": "mm"}}, "L5-S1"
    )
    o["component"] = [
        {
            "code": {"coding": [{"system": FINDING, "code": "slip-direction"}]},
            "valueCodeableConcept": {"coding": [{"system": FINDING, "code": direction}]},
        }
    ]
    if position:
        o["extension"] = [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/observation-bodyPosition",
                "valueCodeableConcept": {"text": position},
            }
        ]
    return o


def test_flexion_and_extension_positions_give_a_translation(client):
    r = result(
        card_of(
            client, plus(seed(), slip("seed-x-ext", 3, "Lumbar extension"), slip("seed-x-flex", 9, "Lumbar flexion"))
        ),
        "instability",
        "L5-S1",
    )
    assert r["status"] == "met" and "translation 6" in r["reason"]


def test_a_small_retrolisthesis_is_not_instability(client):
    r = result(
        card_of(client, plus(seed(), slip("seed-x-retro", 3, direction="retrolisthesis"))), "instability", "L5-S1"
    )
    assert r["status"] == "not-met"


def test_sagittal_vertical_axis_below_threshold_does_not(client):
    sva = observation("seed-x-sva", "sagittal-vertical-axis", FINDING, {"valueQuantity": {"value": 4.9, "unit": "cm"}})
    assert result(card_of(client, plus(seed(), sva)), "instability", "L5-S1")["status"] == "not-documented"


def test_films_without_measurements_at_the_level_are_not_documented(client):
    films = {
        "resourceType": "ImagingStudy",
        "id": "seed-x-fe",
        "status": "available",
        "subject": {"reference": "Patient/seed-patient"},
        "started": "2026-10-01T10:00:00Z",
        "procedureCode": [{"coding": [{"system": CPT, "code": "72114"}]}],
    }
    r = result(card_of(client, plus(seed(), films)), "instability", "L5-S1")
    assert r["status"] == "not-documented" and r["evidence"] == ["ImagingStudy/seed-x-fe"]


# ---------------------------------------------------------------- advisory criteria


def test_injection_outside_the_window_is_not_documented(client):
    req = seed()
    find(req, "Procedure", "seed-esi-l5s1")["performedDateTime"] = "2025-06-01"
    r = result(card_of(client, with_resources(req, resources(req))), "injection-trial")
    assert r["status"] == "not-documented" and r["outsideWindow"] == ["Procedure/seed-esi-l5s1"]


def test_pregabalin_named_only_in_text_counts(client):
    med = {
        "resourceType": "MedicationRequest",
        "id": "seed-x-lyrica",
        "status": "completed",
        "intent": "order",
        "medicationCodeableConcept": {"text": "Lyrica 75 mg capsule"},
        "subject": {"reference": "Patient/seed-patient"},
        "authoredOn": "2026-08-01",
    }
    assert result(card_of(client, plus(seed(), med)), "neuropathic-medication")["status"] == "met"


def test_facet_block_meets_facet_evaluation(client):
    r = result(card_of(client, plus(seed(), procedure("seed-x-mbb", "64493", "2026-06-01"))), "facet-evaluation")
    assert r["status"] == "met"


# ---------------------------------------------------------------- nicotine


def smoking(code, date="2026-10-01", quit=None):
    o = observation(
        "seed-x-smoke",
        "72166-2",
        "http://loinc.org",
        {"valueCodeableConcept": {"coding": [{"system": SNOMED, "code": code}]}},
        date=date,
    )
    if quit:
        o["component"] = [
            {"code": {"coding": [{"system": "http://loinc.org", "code": "74010-0"}]}, "valueDateTime": quit}
        ]
    return o


@pytest.mark.parametrize(
    "obs, status",
    [
        (smoking("266919005"), "met"),  # never
        (smoking("8517006", quit="2026-10-01"), "met"),  # quit 10 weeks before 2026-12-14
        (smoking("8517006", quit="2026-11-20"), "not-met"),  # quit 3 weeks before
        (smoking("8517006"), "not-documented"),  # former, no quit date
        (smoking("449868002"), "not-met"),  # smokes daily
    ],
    ids=["never", "quit-long-ago", "quit-recently", "former-no-date", "daily"],
)
def test_smoking_status_decides_nicotine(client, obs, status):
    assert result(card_of(client, plus(seed(), obs)), "nicotine")["status"] == status


@pytest.mark.parametrize("value, status", [(10, "met"), (10.5, "not-met")])
def test_cotinine_threshold_is_inclusive(client, value, status):
    cot = observation(
        "seed-x-cot",
        "10366-3",
        "http://loinc.org",
        {"valueQuantity": {"value": value, "unit": "ng/mL"}},
        date="2026-11-01",
    )
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
    assert r["status"] == "not-documented" and "grade 2" in r["reason"]
    grade = observation(
        "noimg-x-grade", "spondylolisthesis-grade", FINDING, {"valueInteger": 2}, "L4-L5", patient="noimg-patient"
    )
    assert result(card_of(client, plus(req, slip, grade)), "instability", "L4-L5")["status"] == "met"


def test_the_most_recent_nicotine_evidence_wins(client):
    old_cotinine = observation(
        "seed-x-cot",
        "10365-5",
        "http://loinc.org",
        {"valueQuantity": {"value": 2, "unit": "ng/mL", "code": "ng/mL"}},
        date="2026-01-18",
    )
    quit_recently = smoking("8517006", date="2026-12-07", quit="2026-11-23")
    assert result(card_of(client, plus(seed(), old_cotinine, quit_recently)), "nicotine")["status"] == "not-met"


def test_a_qualitative_positive_cotinine_is_use(client):
    positive = observation(
        "seed-x-cot", "10366-3", "http://loinc.org", {"valueCodeableConcept": {"text": "POSITIVE"}}, date="2026-12-02"
    )
    assert (
        result(card_of(client, plus(seed(), smoking("266919005", date="2026-06-17"), positive)), "nicotine")["status"]
        == "not-met"
    )


def test_vaping_is_nicotine_use(client):
    vaping = observation("seed-x-vape", "722499006", SNOMED, {"valueString": "vapes daily"}, date="2026-10-01")
    assert result(card_of(client, plus(seed(), smoking("266919005"), vaping)), "nicotine")["status"] == "not-met"


def test_a_cotinine_in_micrograms_is_converted(client):
    cot = observation(
        "seed-x-cot",
        "10365-5",
        "http://loinc.org",
        {"valueQuantity": {"value": 0.5, "unit": "ug/mL", "code": "ug/mL"}},
        date="2026-11-01",
    )
    r = result(card_of(client, plus(seed(), cot)), "nicotine")
    assert r["status"] == "not-met" and "500" in r["reason"]


# ---------------------------------------------------------------- pathways


def test_disc_degeneration_alone_is_the_excluded_pathway(app, client):
    req = without(seed(), "Condition/seed-stenosis-l5s1", "Condition/seed-stenosis-l4l5")
    body = call(client, req)
    assert result(body["cards"][0], "indication")["status"] == "not-met"
    outcome = evaluate_pathway(app, req)
    assert outcome.id == "disc-degeneration-only" and outcome.excluded is True


def test_pseudarthrosis_with_a_confirmed_nonunion_is_its_own_pathway(app, client):
    req = plus(seed(), condition("seed-x-pseudo", "M96.0", "L5-S1"), condition("seed-x-z98", "Z98.1"))
    find(req, "DiagnosticReport", "seed-mri-2026-report")["conclusion"] = "Nonunion at L5-S1 after the prior fusion."
    req = with_resources(req, resources(req))
    assert evaluate_pathway(app, req).id == "pseudarthrosis"
    r = result(card_of(client, req), "indication")
    assert r["status"] == "met" and r["required"] is True
    assert result(card_of(client, req), "imaging-severity", "L5-S1")["required"] is False


def test_a_confirmed_current_red_flag_selects_the_urgent_pathway(app, client):
    req = plus(seed(), condition("seed-x-ces", "G83.4", recorded="2026-12-10"))
    assert evaluate_pathway(app, req).id == "urgent"
    card = card_of(client, req)
    assert card["indicator"] == "info" and result(card, "conservative-care")["status"] == "waived"


def test_an_urgent_case_is_never_offered_delaying_measures(client):
    card = card_of(client, plus(seed(), condition("seed-x-ces", "G83.4", recorded="2026-12-10")))
    assert result(card, "facet-evaluation")["status"] == "not-documented"
    labels = [s["label"] for s in card.get("suggestions", [])]
    assert not any("facet" in l.lower() or "physical therapy" in l.lower() or "flexion" in l.lower() for l in labels)
    assert "Consider lumbar facet injections" not in card["detail"]
    assert "Consider a trial of a neuropathic agent" not in card["detail"]


def evaluate_pathway(app, req):
    from cds_hooks.hooks.hook_request import parse_hook_request

    evaluator = app.extensions["cds_hooks"].get("lumbar-fusion")
    return evaluator.evaluate(parse_hook_request(req, "order-sign")).cases[0].pathway


def pt_visit(eid, day, service_type):
    return {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "serviceType": {"coding": [service_type]},
        "subject": {"reference": "Patient/seed-patient"},
        "period": {"start": f"{day}T09:00:00Z", "end": f"{day}T09:45:00Z"},
        "reasonReference": [{"reference": "Condition/seed-stenosis-l5s1"}],
    }


def test_a_site_local_pt_visit_type_counts_by_service_type(engine, tmp_path):
    from datetime import date, timedelta

    from cds_hooks.config import Config
    from cds_hooks.web.app import create_app

    local = {"system": "http://hospital.example.org/visit-types", "code": "PT-FU"}
    visits = [
        pt_visit(f"seed-x-visit-{i}", (date(2026, 5, 4) + timedelta(weeks=i)).isoformat(), local) for i in range(7)
    ]
    req = plus(seed_without_pt(), *visits)
    plain = create_app(Config.development(var_dir=tmp_path / "a"), engine=engine).test_client()
    assert result(card_of(plain, req), "conservative-care")["status"] == "not-documented"
    site = create_app(
        Config.development(
            var_dir=tmp_path / "b",
            local_valueset_codes={"pt-encounter-type": ["http://hospital.example.org/visit-types|PT-FU"]},
        ),
        engine=engine,
    ).test_client()
    r = result(card_of(site, req), "conservative-care")
    assert r["status"] == "met" and "Encounter/seed-x-visit-0" in r["evidence"]
