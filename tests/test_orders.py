"""Fusion order detection and grouping into surgical cases (order-sign draftOrders)."""

from cds_hooks.pipeline.evaluation import spine_region
from cds_hooks.pipeline.orders import OrderDetector, group_cases, reference_date_of
from cds_hooks.packs.loader import load_rule_packs
from cds_hooks.spine.levels import Region
from conftest import REPO, load_json

PACK = load_rule_packs(REPO / "cql")["lumbar-fusion"]
CPT = "http://www.ama-assn.org/go/cpt"


def sr(code, system=CPT, level="L5-S1", **extra):
    r = {
        "resourceType": "ServiceRequest",
        "id": f"o{code}".replace(".", ""),
        "status": "draft",
        "intent": "order",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": "Patient/p"},
    }
    if level:
        r["bodySite"] = [{"text": level}]
    r.update(extra)
    return r


LUMBAR = spine_region(PACK)


def detect(*orders, local=None, region=LUMBAR):
    return OrderDetector(PACK.orders, local, PACK.procedure_name, region).detect(list(orders))


# A region of one interspace: L5-S1 is a level of another region for a pack that names it.
L4_L5_ONLY = Region("l4-l5-only", ("L4-L5",))
REQUISITION = {"system": "urn:example:requisition", "value": "R1"}


def test_every_primary_fusion_code_is_detected():
    for code in ("22558", "22586", "22612", "22630", "22633"):
        assert [o.code for o in detect(sr(code))] == [code]


def test_icd10pcs_fusion_prefixes_are_detected():
    found = detect(sr("0SG00AJ", system="http://www.cms.gov/Medicare/Coding/ICD10"))
    assert found and found[0].matched_by == "code-prefix"


def test_local_order_codes_map_to_pack_codes():
    order = sr("ORTHO-ALIF", system="urn:local:orders")
    assert detect(order) == []
    found = detect(order, local={"urn:local:orders|ORTHO-ALIF": "22558"})
    assert found[0].code == "22558" and found[0].matched_by == "local-code"


def test_display_text_is_the_last_resort():
    order = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "code": {"text": "L4-5 TLIF with instrumentation"},
        "bodySite": [{"text": "L4-5"}],
    }
    found = detect(order)
    assert found[0].matched_by == "text" and found[0].levels == ["L4-L5"]


def test_non_fusion_orders_and_medications_are_ignored():
    mri = sr("72148")
    med = {"resourceType": "MedicationRequest", "status": "draft", "intent": "order"}
    assert detect(mri, med) == []


def test_orders_sharing_a_requisition_form_one_case():
    req = {"system": "urn:test", "value": "R1"}
    cases = group_cases(detect(sr("22558", requisition=req), sr("22612", requisition=req)))
    assert len(cases) == 1 and cases[0].codes == ["22558", "22612"]


def test_orders_without_a_requisition_are_separate_cases():
    assert len(group_cases(detect(sr("22558"), sr("22612", level="L4-L5")))) == 2


def test_an_add_on_attaches_to_its_primary_and_adds_its_level():
    cases = group_cases(detect(sr("22612", level="L5-S1"), sr("22614", level="L4-L5")))
    assert len(cases) == 1
    assert cases[0].levels == ["L4-L5", "L5-S1"] and cases[0].codes == ["22612", "22614"]


def test_an_add_on_does_not_attach_to_a_different_family():
    cases = group_cases(detect(sr("22558"), sr("22614", level="L4-L5")))
    assert len(cases) == 2


def test_the_360_fixture_is_one_case_over_two_levels():
    orders = [e["resource"] for e in load_json(REPO / "fhir_fixtures/orders/case-360.json")["entry"]]
    cases = group_cases(detect(*orders))
    assert len(cases) == 1 and cases[0].levels == ["L4-L5", "L5-S1"]


def test_a_two_level_range_on_one_order_gives_two_levels():
    assert detect(sr("22558", level="L4-S1"))[0].levels == ["L4-L5", "L5-S1"]


def test_reference_date_prefers_occurrence_then_authored_on():
    order = sr("22558", occurrenceDateTime="2026-12-14T08:00:00-05:00", authoredOn="2026-11-20")
    assert reference_date_of(order) == "2026-12-14"
    assert reference_date_of({**order, "occurrenceDateTime": None}) == "2026-11-20"
    assert reference_date_of({"occurrencePeriod": {"start": "2027-01-02"}}) == "2027-01-02"


def test_urgent_and_stat_orders_are_marked_urgent():
    assert group_cases(detect(sr("22558", priority="stat")))[0].urgent
    assert not group_cases(detect(sr("22558", priority="routine")))[0].urgent


def test_cancelled_orders_are_not_being_signed():
    assert detect(sr("22558", status="revoked")) == []


SNOMED = "http://snomed.info/sct"


def snomed_order(text, **extra):
    return {
        "resourceType": "ServiceRequest",
        "id": "sct",
        "status": "draft",
        "intent": "order",
        "code": {"coding": [{"system": SNOMED, "code": "55705006", "display": "Spinal fusion"}], "text": text},
        **extra,
    }


def test_a_snomed_spinal_fusion_order_whose_text_names_the_procedure_is_detected_at_its_text_level():
    (found,) = detect(snomed_order("Lumbar interbody fusion L4-L5 (TLIF)"))
    assert found.matched_by == "concept" and found.code == "55705006" and found.levels == ["L4-L5"]
    assert found.code_text == "SNOMED CT 55705006"


def test_a_snomed_spinal_fusion_order_of_another_region_is_not_this_procedure():
    assert detect(snomed_order("Spinal fusion C5-C6")) == []
    assert detect(snomed_order("Spinal fusion")) == []


def test_snomed_vertebrae_in_body_site_give_the_interspace():
    sites = [
        {"coding": [{"system": SNOMED, "code": "11994002", "display": "L4 vertebra"}]},
        {"coding": [{"system": SNOMED, "code": "49668003", "display": "L5 vertebra"}]},
    ]
    (found,) = detect(sr("22630", level=None, bodySite=sites))
    assert found.levels == ["L4-L5"]


def test_body_site_wins_over_the_order_text():
    order = sr("22630", level="L5-S1")
    order["code"]["text"] = "L4-L5 TLIF"
    assert detect(order)[0].levels == ["L5-S1"]


def test_a_co_surgeons_order_for_the_same_operation_joins_the_surgeons_case():
    surgeon = sr("22630", level="L4-L5", id="surgeon", occurrenceDateTime="2026-12-14")
    co_surgeon = sr(
        "22630",
        level="L4-L5",
        id="co-surgeon",
        occurrenceDateTime="2026-12-14",
        requester={"reference": "Practitioner/co"},
    )
    (case,) = group_cases(detect(surgeon, co_surgeon))
    assert case.references == ["ServiceRequest/surgeon", "ServiceRequest/co-surgeon"]


def test_the_same_code_at_another_level_or_date_is_another_operation():
    a = sr("22630", level="L4-L5", id="a", occurrenceDateTime="2026-12-14")
    b = sr("22630", level="L5-S1", id="b", occurrenceDateTime="2026-12-14")
    c = sr("22630", level="L4-L5", id="c", occurrenceDateTime="2027-02-01")
    assert len(group_cases(detect(a, b, c))) == 3


def test_a_level_of_another_region_is_kept_apart_from_the_order_levels():
    (order,) = detect(sr("22558", level="L4-S1"), region=L4_L5_ONLY)
    assert order.levels == ["L4-L5"] and order.other_levels == ["L5-S1"]


def test_a_primary_code_of_the_pack_at_another_region_level_is_still_its_order_without_a_level():
    (order,) = detect(sr("22558", level="L5-S1"), region=L4_L5_ONLY)
    assert order.levels == [] and order.other_levels == ["L5-S1"]
    (case,) = group_cases([order])
    assert case.levels == [] and case.other_levels == ["L5-S1"]


def test_an_order_matched_by_text_alone_at_another_region_level_is_another_service_order():
    text_order = sr("99999", system="urn:local", level="L5-S1")
    text_order["code"]["text"] = "interbody fusion"
    assert detect(text_order, region=L4_L5_ONLY) == []
    assert [o.matched_by for o in detect(text_order)] == ["text"]


def test_an_add_on_at_another_region_level_is_another_service_order():
    assert detect(sr("22585", level="L5-S1"), region=L4_L5_ONLY) == []


def test_an_add_on_sharing_a_requisition_with_an_order_the_pack_does_not_claim_is_left_to_that_order():
    foreign = sr("12345", system="urn:other-procedures", requisition=REQUISITION)
    add_on = sr("22585", requisition=REQUISITION)
    assert detect(foreign, add_on) == []


def test_an_add_on_sharing_a_requisition_with_a_primary_of_the_pack_stays():
    foreign = sr("12345", system="urn:other-procedures", requisition=REQUISITION)
    found = detect(foreign, sr("22558", requisition=REQUISITION), sr("22585", requisition=REQUISITION))
    assert [o.code for o in found] == ["22558", "22585"]


def cervical_order(code, level="C5-C6", **extra):
    return sr(code, level=level, **extra)


def test_the_lumbar_service_leaves_a_cervical_add_on_alone():
    assert detect(cervical_order("22551"), cervical_order("22585", level="C6-C7")) == []


def test_the_lumbar_service_does_not_claim_an_acdf_by_its_words():
    acdf = sr("99999", system="urn:local", level=None)
    acdf["code"]["text"] = "Anterior cervical discectomy and interbody fusion"
    assert detect(acdf) == []


def test_a_lumbar_code_ordered_at_a_cervical_level_keeps_that_level_apart():
    (order,) = detect(cervical_order("22558"))
    assert order.levels == [] and order.other_levels == ["C5-C6"]
