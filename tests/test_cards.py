"""What the surgeon sees: the seed card's summary, checklist, evidence, suggestions and links."""

from conftest import request_fixture
from support.hooks import call, orders, result


def seed_card(client):
    return call(client, request_fixture("seed"))["cards"][0]


def test_seed_summary_names_procedure_level_and_unmet_count(client):
    card = seed_card(client)
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("L5-S1 ALIF (22558)")
    assert "3 of 4 required criteria unmet" in card["summary"]
    assert len(card["summary"]) < 140


def test_seed_detail_is_a_checklist_with_evidence_and_next_steps(client):
    detail = seed_card(client)["detail"]
    assert "### Required criteria" in detail and "### Advisory" in detail
    assert "Highest stenosis grade at L5-S1 is mild (needs moderate or worse)" in detail
    assert "MRI lumbar spine" in detail and "2026-09-02" in detail
    assert "Exception claimed — needs review" in detail
    assert "flexion-extension radiographs" in detail
    assert "gabapentin or pregabalin" in detail
    assert "version 2026.2" in detail
    assert detail.rstrip().endswith("Decision support, not a coverage determination.")


def test_seed_card_suggests_films_pt_and_facet_evaluation_but_no_medication_order(client):
    card = seed_card(client)
    assert card["selectionBehavior"] == "any"
    by_label = {s["label"]: s for s in card["suggestions"]}
    films = next(s for label, s in by_label.items() if label.startswith("Order flexion-extension radiographs"))
    resource = films["actions"][0]["resource"]
    assert resource["resourceType"] == "ServiceRequest" and resource["status"] == "draft"
    assert resource["code"]["coding"][0]["code"] == "72114"
    assert resource["bodySite"][0]["coding"][0]["code"] == "L5-S1"
    assert resource["subject"] == {"reference": "Patient/seed-patient"}
    assert resource["requester"] == {"reference": "Practitioner/surgeon-1"}
    assert any(label.startswith("Refer to physical therapy") for label in by_label)
    assert any(label.startswith("Refer for facet evaluation") for label in by_label)
    kinds = {a["resource"]["resourceType"] for s in card["suggestions"] for a in s["actions"]}
    assert kinds == {"ServiceRequest"}


def test_seed_card_carries_override_reasons_policy_link_and_source(client):
    card = seed_card(client)
    codes = {r["code"] for r in card["overrideReasons"]}
    assert codes == {"urgent-indication", "documented-elsewhere", "payer-approved", "disagree"}
    assert card["links"][0]["url"].endswith("/policies/lumbar-fusion/default")
    assert "2026.2" in card["links"][0]["label"]
    assert card["source"]["label"].startswith("Lumbar fusion medical necessity")
    assert card["source"]["topic"]["code"] == "lumbar-fusion-medical-necessity"


def test_the_policy_link_serves_the_profile(client):
    url = seed_card(client)["links"][0]["url"]
    page = client.get(url.split("localhost", 1)[1])
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "imaging-severity" in text and "2026.2" in text


def test_machine_readable_results_carry_every_criterion(client):
    card = seed_card(client)
    r = result(card, "imaging-severity", "L5-S1")
    assert {k: r[k] for k in ("id", "status", "required", "level")} == {
        "id": "imaging-severity",
        "status": "not-met",
        "required": True,
        "level": "L5-S1",
    }
    assert r["reason"].startswith("Highest stenosis grade at L5-S1 is mild (needs moderate or worse)")
    # The grade comes from the radiologist's report (derived Observations), never the problem list's severity.
    assert {"ImagingStudy/seed-mri-2026", "DiagnosticReport/seed-mri-2026-report"} <= set(r["evidence"])
    assert "Condition/seed-stenosis-l5s1" not in r["evidence"]


def test_response_names_the_profile_and_version(client):
    body = call(client, request_fixture("seed"))
    (profile,) = body["extension"]["org.example.fusion-cds.evaluation"]["profiles"]
    assert profile["name"] == "default" and profile["version"] == "2026.2"
    assert profile["card"] == body["cards"][0]["uuid"]


def test_all_required_met_is_info_without_suggestions_for_met_criteria(client):
    card = call(client, request_fixture("meets-all"))["cards"][0]
    assert card["indicator"] == "info"
    assert "all 4 required criteria met" in card["summary"]
    assert "suggestions" not in card


def test_an_order_marked_stat_without_a_red_flag_stays_a_warning(client):
    req = request_fixture("seed")
    orders(req)[0]["priority"] = "stat"
    card = call(client, req)["cards"][0]
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("Urgent ") and "likely to fail review" in card["summary"]
    assert "marked stat, but no confirmed, current red flag is documented" in card["detail"]


def test_an_urgent_order_gets_no_delaying_suggestion_or_next_step(client):
    req = request_fixture("seed")
    orders(req)[0]["priority"] = "urgent"
    card = call(client, req)["cards"][0]
    # The seed's card otherwise offers films, a PT referral and a facet evaluation (test above).
    assert "suggestions" not in card
    assert card["extension"]["org.example.fusion-cds.verdict"]["suggestions"] == []
    assert "Consider a trial of a neuropathic agent" not in card["detail"]
    assert "Consider lumbar facet injections" not in card["detail"]


def test_the_360_case_is_one_card_level_by_level(client):
    body = call(client, request_fixture("case-360"))
    (card,) = body["cards"]
    assert card["summary"].startswith("L4-L5, L5-S1 ")
    assert "L4-L5: Not met" in card["detail"] and "L5-S1: Met" in card["detail"]


def test_two_unrelated_fusion_orders_get_two_cards(client):
    req = request_fixture("seed")
    second = dict(orders(req)[0], id="seed-order-second", bodySite=[{"text": "L4-5"}])
    req["context"]["draftOrders"]["entry"].append({"resource": second})
    body = call(client, req)
    assert len(body["cards"]) == 2
    assert {c["summary"].split(" ")[0] for c in body["cards"]} == {"L5-S1", "L4-L5"}


def test_a_fusion_order_coded_only_in_snomed_ct_gets_a_card_at_the_level_its_text_names(client):
    req = request_fixture("seed")
    order = orders(req)[0]
    order.pop("bodySite")
    order["code"] = {
        "coding": [{"system": "http://snomed.info/sct", "code": "55705006", "display": "Spinal fusion"}],
        "text": "Anterior lumbar interbody fusion L5-S1",
    }
    (card,) = call(client, req)["cards"]
    assert card["summary"].startswith("L5-S1 spinal fusion (55705006): 3 of 4 required criteria unmet")
    assert "(SNOMED CT 55705006) at L5-S1" in card["detail"]


def test_a_co_surgeons_order_for_the_same_operation_gives_one_card(client):
    req = request_fixture("seed")
    co = dict(orders(req)[0], id="seed-order-co-surgeon", requester={"reference": "Practitioner/co-surgeon"})
    req["context"]["draftOrders"]["entry"].append({"resource": co})
    (card,) = call(client, req)["cards"]
    assert card["summary"].startswith("L5-S1 ALIF (22558): 3 of 4 required criteria unmet")
    assert (
        "ServiceRequest/seed-order-co-surgeon" not in card["summary"] and card["detail"].count("ALIF (CPT 22558)") == 2
    )
