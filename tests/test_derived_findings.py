"""Derived Observations from report text: their FHIR shape, ids and provenance (cds_hooks/spine/derived_findings.py)."""

import base64
import copy

from fhir.resources.R4B.observation import Observation

from conftest import patient_bundle
from cds_hooks.spine.derived_findings import METHOD_CODE, SOURCE_EXTENSION, SPINE_FINDING, derive, report_region
from cds_hooks.spine.levels import region


def seed_resources():
    return [e["resource"] for e in patient_bundle("seed")["entry"]]


def report_of(resources):
    return next(r for r in resources if r["resourceType"] == "DiagnosticReport")


def by_level(observations, level):
    return [o for o in observations if o["bodySite"]["coding"][0]["code"] == level]


def test_seed_report_gives_a_final_mild_bilateral_foraminal_grade_at_l5s1():
    obs = derive(seed_resources())
    (mild,) = [o for o in by_level(obs, "L5-S1") if o["valueCodeableConcept"]["coding"][0]["code"] == "255604002"]
    assert mild["status"] == "final"
    assert mild["code"]["coding"][0] == {
        "system": SPINE_FINDING,
        "code": "spinal-stenosis-grade",
        "display": "Spinal stenosis grade at one interspace",
    }
    assert mild["method"]["coding"][0]["code"] == METHOD_CODE
    assert mild["derivedFrom"] == [
        {"reference": "DiagnosticReport/seed-mri-2026-report"},
        {"reference": "ImagingStudy/seed-mri-2026"},
    ]
    assert mild["effectiveDateTime"] == "2026-09-02"
    assert mild["subject"] == {"reference": "Patient/seed-patient"}
    components = {
        c["code"]["coding"][0]["code"]: c["valueCodeableConcept"]["coding"][0]["code"] for c in mild["component"]
    }
    assert components == {"stenosis-compartment": "neural-foramen", "laterality": "bilateral"}
    Observation.model_validate(mild)


def test_the_sentence_and_its_offsets_are_kept_in_the_observation():
    resources = seed_resources()
    obs = derive(resources)
    (l4l5,) = [o for o in by_level(obs, "L4-L5") if o["valueCodeableConcept"]["coding"][0]["code"] == "255604002"]
    (ext,) = [e for e in l4l5["extension"] if e["url"] == SOURCE_EXTENSION]
    parts = {e["url"]: next(v for k, v in e.items() if k.startswith("value")) for e in ext["extension"]}
    conclusion = report_of(resources)["conclusion"]
    assert parts["source"] == "conclusion" and parts["section"] == "impression"
    assert (
        conclusion[parts["start"] : parts["end"]]
        == parts["quote"]
        == "Mild narrowing of the left neural foramen at L4-L5."
    )
    assert parts["quote"] in l4l5["note"][0]["text"]


def test_ids_are_deterministic_and_prefixed_so_they_cannot_be_taken_for_ehr_ids():
    first, second = derive(seed_resources()), derive(seed_resources())
    assert [o["id"] for o in first] == [o["id"] for o in second]
    assert all(o["id"].startswith("derived-") and len(o["id"]) <= 64 for o in first)
    assert len({o["id"] for o in first}) == len(first)


def test_a_preliminary_report_gives_preliminary_observations():
    resources = seed_resources()
    report_of(resources)["status"] = "preliminary"
    assert {o["status"] for o in derive(resources)} == {"preliminary"}


def test_an_entered_in_error_report_gives_nothing():
    resources = seed_resources()
    report_of(resources)["status"] = "entered-in-error"
    assert derive(resources) == []


def test_a_radiograph_report_gives_no_stenosis_grade():
    resources = seed_resources()
    report = report_of(resources)
    report["imagingStudy"] = []
    report["code"] = {
        "coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "72100"}],
        "text": "XR lumbar spine",
    }
    report["conclusion"] = "Moderate narrowing at L4-L5. 3 mm anterolisthesis of L4 on L5."
    report.pop("presentedForm")
    codes = [o["code"]["coding"][0]["code"] for o in derive(resources)]
    assert codes == ["spondylolisthesis"]


def test_an_html_presented_form_is_read():
    resources = seed_resources()
    report = report_of(resources)
    report.pop("conclusion")
    html = "<p>IMPRESSION:</p><p>Severe central canal stenosis at L4-L5.</p>"
    report["presentedForm"] = [
        {"contentType": "text/html; charset=utf-8", "data": base64.b64encode(html.encode()).decode()}
    ]
    (obs,) = derive(resources)
    assert obs["valueCodeableConcept"]["coding"][0]["code"] == "24484000"


def test_an_unreadable_presented_form_is_skipped_without_error():
    resources = seed_resources()
    report = report_of(resources)
    report.pop("conclusion")
    report["presentedForm"] = [
        {"contentType": "text/plain", "data": "%%% not base64 %%%"},
        {"contentType": "application/pdf", "data": "JVBERi0="},
    ]
    assert derive(resources) == []


def test_a_non_imaging_report_is_not_read():
    resources = seed_resources()
    report = report_of(resources)
    report.pop("imagingStudy")
    report["category"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}]
    report["code"] = {"text": "Basic metabolic panel"}
    assert derive(resources) == []


def test_the_record_itself_is_not_changed():
    resources = seed_resources()
    before = copy.deepcopy(resources)
    derive(resources)
    assert resources == before


# ------------------------------------------------------------------ memoised by the report's text


def test_the_same_report_text_is_read_once_and_gives_the_same_observations(monkeypatch):
    from cds_hooks.spine import derived_findings

    memo = derived_findings._FindingsMemo(8)
    reads = []
    real = derived_findings.extract_report
    monkeypatch.setattr(derived_findings, "_memo", memo)
    monkeypatch.setattr(
        derived_findings, "extract_report", lambda parts, dynamic: reads.append(1) or real(parts, dynamic)
    )
    first, second = derive(seed_resources()), derive(seed_resources())
    assert first == second and first
    assert len(reads) == 1 and len(memo) == 1


def test_a_changed_report_text_is_read_again(monkeypatch):
    from cds_hooks.spine import derived_findings

    monkeypatch.setattr(derived_findings, "_memo", derived_findings._FindingsMemo(8))
    resources = seed_resources()
    before = derive(resources)
    changed = copy.deepcopy(resources)
    report_of(changed)["conclusion"] = "Severe central canal stenosis at L3-L4."
    after = derive(changed)
    assert after != before and any(o["bodySite"]["coding"][0]["code"] == "L3-L4" for o in after)


def test_the_memo_keeps_only_the_most_recently_used_reports():
    from cds_hooks.spine.derived_findings import _FindingsMemo

    memo = _FindingsMemo(2)
    parts = [[("conclusion", f"Mild stenosis at L{n}-L{n + 1}.", "text/plain", "impression")] for n in (1, 2, 3)]
    memo.findings(parts[0], False)
    memo.findings(parts[1], False)
    memo.findings(parts[0], False)  # used again: the oldest is now parts[1]
    memo.findings(parts[2], False)
    assert len(memo) == 2
    assert memo.key(parts[0], False) in memo._entries and memo.key(parts[1], False) not in memo._entries


def test_the_memo_key_is_a_hash_and_tells_static_from_dynamic_reading():
    from cds_hooks.spine.derived_findings import _FindingsMemo

    parts = [("conclusion", "Grade 1 anterolisthesis of L4 on L5.", "text/plain", "impression")]
    key = _FindingsMemo.key(parts, False)
    assert len(key) == 32 and b"anterolisthesis" not in key
    assert key != _FindingsMemo.key(parts, True)


def test_the_seed_report_is_a_lumbar_study_and_gives_the_same_observations_to_a_lumbar_pack():
    resources = seed_resources()
    report = report_of(resources)
    studies = [r for r in resources if r["resourceType"] == "ImagingStudy"]
    assert report_region(report, studies) == "lumbar"
    assert derive(resources, region("lumbar")) == derive(resources)


def test_a_report_of_another_region_gives_a_pack_nothing():
    assert derive(seed_resources(), region("cervical")) == []


def test_a_report_whose_codes_and_words_name_no_region_is_read_for_any_pack_at_its_own_levels():
    resources = copy.deepcopy(seed_resources())
    report = report_of(resources)
    report["code"] = {"text": "MRI"}
    resources = [r for r in resources if r["resourceType"] != "ImagingStudy"]
    report.pop("imagingStudy", None)
    assert report_region(report, []) is None
    assert derive(resources, region("lumbar"))
    assert derive(resources, region("cervical")) == []  # its levels are lumbar ones


def test_a_report_naming_two_regions_in_its_words_has_no_region_of_its_own():
    report = {"resourceType": "DiagnosticReport", "code": {"text": "MRI cervical and lumbar spine"}}
    assert report_region(report, []) is None


def cervical_mri(conclusion, code="72141"):
    return {
        "resourceType": "DiagnosticReport",
        "id": "neck-mri",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD"}]}],
        "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": code}], "text": "MRI cervical spine"},
        "subject": {"reference": "Patient/p"},
        "effectiveDateTime": "2026-10-01",
        "conclusion": conclusion,
    }


def finding(observations, code, level):
    return [
        o
        for o in by_level(observations, level)
        if o["code"]["coding"][0]
        == {"system": SPINE_FINDING, "code": code, "display": o["code"]["coding"][0]["display"]}
    ]


def test_cord_compression_and_cord_signal_change_become_boolean_observations_at_their_level():
    obs = derive(
        [cervical_mri("Severe canal stenosis at C5-6 with cord compression and myelomalacia.")], region("cervical")
    )
    (compression,) = finding(obs, "spinal-cord-compression", "C5-C6")
    (signal,) = finding(obs, "spinal-cord-signal-change", "C5-C6")
    assert compression["valueBoolean"] is True and signal["valueBoolean"] is True
    assert compression["method"]["coding"][0]["code"] == METHOD_CODE
    assert compression["derivedFrom"] == [{"reference": "DiagnosticReport/neck-mri"}]
    assert "cord compression at C5-C6" in compression["note"][0]["text"]
    Observation.model_validate(compression)


def test_a_denied_cord_finding_is_false_and_a_hedged_one_gives_no_observation():
    obs = derive(
        [cervical_mri("C4-5: Mild canal stenosis without cord compression. Possible myelomalacia at C4-5.")],
        region("cervical"),
    )
    (compression,) = finding(obs, "spinal-cord-compression", "C4-C5")
    assert compression["valueBoolean"] is False
    assert finding(obs, "spinal-cord-signal-change", "C4-C5") == []


def test_effacement_of_the_csf_alone_is_not_cord_compression():
    obs = derive([cervical_mri("At C3-4 a disc osteophyte complex effaces the ventral CSF and abuts the cord.")])
    assert finding(obs, "spinal-cord-compression", "C3-C4") == []


def test_a_cervical_report_gives_the_lumbar_pack_nothing_and_a_lumbar_report_the_cervical_pack_nothing():
    neck = cervical_mri("Severe canal stenosis at C5-6. Incidental severe canal stenosis at L4-5 on the localizer.")
    assert report_region(neck, []) == "cervical"
    assert derive([neck], region("lumbar")) == []
    assert {o["bodySite"]["text"] for o in derive([neck], region("cervical"))} == {"C5-C6"}
    assert derive(seed_resources(), region("cervical")) == []


def test_cervical_ct_is_cross_sectional_and_its_stenosis_grades_count():
    obs = derive([cervical_mri("Severe right foraminal stenosis at C6-7.", code="72125")], region("cervical"))
    assert [o["valueCodeableConcept"]["coding"][0]["code"] for o in by_level(obs, "C6-C7")] == ["24484000"]
