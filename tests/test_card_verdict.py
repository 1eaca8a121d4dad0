"""The card's verdict, indicator and summary from a case's results (CDS Hooks 2.0 "Card Attributes").

Built in process from criterion results, so each rule is seen on its own: the summary keeps its
verdict within 140 characters, only a pathway of a confirmed red flag (never an order's priority)
makes an unmet case `info`, an urgent case gets no delaying measures, an excluded indication says so
first, and a criterion whose source could not be read is never reported as missing.
"""

from cds_hooks.packs.loader import load_rule_packs
from cds_hooks.pipeline.cards import CardContext, build_card
from cds_hooks.pipeline.criteria import CriterionResult, PathwayResult
from cds_hooks.pipeline.orders import OrderDetector, group_cases
from cds_hooks.pipeline.profiles import ProfileChoice
from cds_hooks.spine.levels import Region
from conftest import REPO

PACK = load_rule_packs(REPO / "cql")["lumbar-fusion"]
CPT = "http://www.ama-assn.org/go/cpt"
VERDICT = "org.example.fusion-cds.verdict"
LEVEL_CRITERIA = ("imaging-severity", "instability")


def order(code, level, n=0, priority="routine", text=None):
    return {
        "resourceType": "ServiceRequest",
        "id": f"o{code}-{n}",
        "status": "draft",
        "intent": "order",
        "priority": priority,
        "requisition": {"system": "urn:test", "value": "R1"},
        "occurrenceDateTime": "2026-12-14",
        "code": {"coding": [{"system": CPT, "code": code}], "text": text or f"{code} at {level}"},
        "bodySite": [{"text": level}],
    }


def case_of(*orders):
    (case,) = group_cases(OrderDetector(PACK.orders, {}, PACK.procedure_name).detect(list(orders)))
    return case


def results_for(case, status="met", **overrides):
    """A result for every criterion (per level where level-specific); `overrides` by criterion id."""
    out = []
    for c in PACK.criteria:
        levels = case.levels if c["id"] in LEVEL_CRITERIA else [None]
        for level in levels:
            st = overrides.get(c["id"].replace("-", "_"), status)
            out.append(CriterionResult(c["id"], st, level, f"{c['id']} is {st}"))
    return out


def card_for(case, results, failed=None, pathway=None, profile="default"):
    ctx = CardContext(
        pack=PACK,
        case=case,
        choice=ProfileChoice(PACK.profile(profile), None, None, False),
        patient_id="p",
        user_id="Practitioner/s",
        resources={},
        failed_sources=sorted(failed or {}),
        policy_url=None,
        codes=PACK.codes,
        failed_reasons=dict(failed or {}),
        pathway=pathway,
    )
    return build_card(ctx, results)


THREE_LEVEL_360 = [
    order("22558", "L3-L4", 1),
    order("22585", "L4-L5", 2),
    order("22585", "L5-S1", 3),
    order("22633", "L3-L4", 4),
    order("22634", "L4-L5", 5),
    order("22634", "L5-S1", 6),
]


def test_a_long_multi_code_summary_shortens_codes_and_levels_first_and_keeps_the_verdict():
    case = case_of(*THREE_LEVEL_360)
    card = card_for(case, results_for(case, instability="not-met", imaging_severity="not-documented"))
    assert len(card["summary"]) < 140
    assert card["summary"].endswith("2 of 4 required criteria unmet — likely to fail review")
    assert card["summary"].startswith("L3-S1 ALIF + combined posterior fusion (22558+22585x2+22633+22634x2)")


def test_the_full_form_is_kept_when_it_fits():
    case = case_of(order("22630", "L4-L5"))
    card = card_for(case, results_for(case, conservative_care="not-met"))
    assert card["summary"] == "L4-L5 PLIF/TLIF (22630): 1 of 4 required criteria unmet — likely to fail review"


def test_the_verdict_survives_even_when_nothing_else_fits():
    orders = [order("22612", "L1-L2", 0, priority="stat")] + [
        order("22614", lvl, i) for i, lvl in enumerate(["L2-L3", "L3-L4", "L4-L5", "L5-S1"], 1)
    ]
    orders += [dict(order("22633", "L2-L3", 9), id=f"x{i}") for i in range(8)]
    case = case_of(*orders)
    card = card_for(case, results_for(case, "not-documented"), failed={"Procedure": "x" * 80})
    assert len(card["summary"]) < 140 and card["summary"].endswith("incomplete")


def test_an_order_priority_alone_never_makes_an_unmet_case_info():
    case = case_of(order("22630", "L4-L5", priority="stat"))
    card = card_for(case, results_for(case, conservative_care="not-documented"))
    assert card["indicator"] == "warning" and card["extension"][VERDICT]["verdict"] == "likely-to-fail"


def test_the_urgent_pathway_is_info_and_offers_no_delaying_measure():
    case = case_of(order("22630", "L4-L5"))
    urgent = PathwayResult(
        id="urgent",
        label="Urgent: confirmed red flag",
        required=["indication", "red-flags"],
        reason="Confirmed cauda equina syndrome, 2026-12-09",
        evidence=[],
        excluded=False,
    )
    results = results_for(
        case,
        conservative_care="waived",
        facet_evaluation="not-documented",
        neuropathic_medication="not-documented",
        injection_trial="not-documented",
    )
    card = card_for(case, results, pathway=urgent)
    assert card["indicator"] == "info"
    assert card["extension"][VERDICT]["verdict"] == "urgent" and card["extension"][VERDICT]["pathway"] == "urgent"
    assert card["extension"][VERDICT]["suggestions"] == []
    for delaying in (
        "Consider lumbar facet injections",
        "Consider an epidural steroid injection",
        "Consider a trial of a neuropathic agent",
        "Refer to physical therapy",
    ):
        assert delaying not in card["detail"]
    assert "urgent review pathway applies" in card["detail"]


def test_the_pathway_names_the_required_criteria():
    case = case_of(order("22630", "L4-L5"))
    pseudarthrosis = PathwayResult(
        id="pseudarthrosis",
        label="Pseudarthrosis",
        required=["indication"],
        reason="Nonunion confirmed on CT",
        evidence=[],
        excluded=False,
    )
    card = card_for(case, results_for(case, instability="not-met"), pathway=pseudarthrosis)
    assert card["indicator"] == "info" and card["summary"].endswith("all 1 required criteria met")
    assert "**Pathway:** Pseudarthrosis — Nonunion confirmed on CT." in card["detail"]


def test_an_excluded_indication_is_a_warning_that_says_so_first():
    case = case_of(order("22630", "L4-L5"))
    ddd = PathwayResult(
        id="disc-degeneration-only",
        label="Disc degeneration alone",
        required=["indication"],
        reason="Only disc degeneration is recorded",
        evidence=[],
        excluded=True,
    )
    card = card_for(case, results_for(case), pathway=ddd)
    assert card["indicator"] == "warning"
    assert card["summary"].endswith("indication excluded by the policy — likely to fail review")
    assert card["detail"].startswith("**Disc degeneration alone: the policy excludes or restricts fusion")


def test_a_not_documented_criterion_whose_source_failed_is_not_reported_as_missing():
    case = case_of(order("22630", "L4-L5"))
    card = card_for(
        case,
        results_for(case, conservative_care="not-documented"),
        failed={"Encounter": "the FHIR server did not answer before the deadline"},
    )
    (pt,) = [r for r in card["extension"]["org.example.fusion-cds.criteria"] if r["id"] == "conservative-care"]
    assert pt["reason"].startswith("Not found in the records that could be read; Encounter could not be read")
    assert card["extension"][VERDICT]["verdict"] == "incomplete"


def test_a_level_of_another_spinal_region_on_the_order_is_said_and_never_checked():
    region = Region("l4-l5-only", ("L4-L5",))  # L5-S1 lies in another region for this pack
    (case,) = group_cases(OrderDetector(PACK.orders, {}, PACK.procedure_name, region).detect([order("22558", "L5-S1")]))
    card = card_for(case, results_for(case))
    assert case.levels == []
    assert "**Level of another spinal region on the order:** L5-S1 is not a lumbar level" in card["detail"]
