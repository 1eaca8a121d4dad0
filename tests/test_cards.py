"""What the surgeon sees: the seed card's summary, the short detail (the pathway, then the gaps grouped by
how they close), the suggestions and links; every criterion stays in the card's extension."""

import copy
from datetime import date, timedelta

import pytest

from conftest import FIXTURES, load_json, request_fixture
from support.card_text import DATE, line_of, rendered_lines
from support.hooks import call, orders, resources, result


def corpus_request(name: str) -> dict:
    return load_json(FIXTURES / "corpus" / "lumbar-fusion" / "requests" / f"{name}.json")


def _planned_in_two_months(req: dict) -> dict:
    """The seed's order planned 60 days from today, so that recent visits fall before it whatever the day."""
    orders(req)[0]["occurrenceDateTime"] = (date.today() + timedelta(days=60)).isoformat()
    return req


def _add_pt_sessions(req: dict, days: list[date]) -> None:
    """Attended lumbar therapy sessions (copies of the seed's, without its "not tolerated" outcome)."""
    bundle = req["prefetch"]["procedures"]
    template = next(e["resource"] for e in bundle["entry"] if e["resource"]["id"] == "seed-pt-01")
    for i, day in enumerate(days):
        session = {k: v for k, v in copy.deepcopy(template).items() if k not in ("outcome", "note")}
        session.update(id=f"seed-pt-recent-{i}", performedDateTime=day.isoformat())
        bundle["entry"].append({"resource": session})


def _payer(req: dict, payer: str) -> None:
    for entry in req["prefetch"]["coverage"]["entry"]:
        for payor in entry["resource"]["payor"]:
            payor["identifier"]["value"] = payer


def seed_card(client):
    return call(client, request_fixture("seed"))["cards"][0]


def test_seed_summary_names_procedure_level_and_unmet_count(client):
    card = seed_card(client)
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("L5-S1 ALIF (22558)")
    assert "3 of 4 required criteria unmet" in card["summary"]
    assert len(card["summary"]) < 140


def test_seed_detail_fits_in_ten_rendered_lines(client):
    assert len(rendered_lines(seed_card(client)["detail"])) <= 10


def test_seed_detail_opens_with_the_pathway_the_record_supports(client):
    first = rendered_lines(seed_card(client)["detail"])[0]
    assert first.startswith("**Pathway:** Stenosis with instability or degenerative spondylolisthesis")


def test_seed_mild_stenosis_is_said_to_be_beyond_any_paperwork(client):
    line = line_of(seed_card(client)["detail"], "**No paperwork changes this:**")
    assert "Highest stenosis grade at L5-S1 is mild (needs moderate or worse)" in line
    assert "no document changes that" in line


def test_seed_physical_therapy_gap_gives_the_earliest_date_of_a_restart(client):
    # No episode under way (the last visit was in July): the clock restarts on the signing day, or on
    # the planned date if that came first, and runs the profile's MinPTWeeks.
    req = request_fixture("seed")
    planned = date.fromisoformat(orders(req)[0]["occurrenceDateTime"])
    start = min(date.today(), planned)
    line = line_of(call(client, req)["cards"][0]["detail"], "**Time:**")
    assert "6 sessions over 6 weeks restarted or continued from " + start.isoformat() in line
    assert f"complete on {start + timedelta(weeks=6)} at the earliest" in line


def test_the_physical_therapy_clock_of_an_episode_under_way_starts_at_its_first_visit(client):
    req = _planned_in_two_months(request_fixture("seed"))
    first = date.today() - timedelta(days=10)
    _add_pt_sessions(req, [first, date.today() - timedelta(days=3)])
    line = line_of(call(client, req)["cards"][0]["detail"], "**Time:**")
    assert f"from {first}: complete on {first + timedelta(weeks=6)} at the earliest" in line


def test_no_physical_therapy_date_when_the_weeks_are_done_but_sessions_are_missing(client):
    # Four visits over eight weeks: how soon the missing sessions can be attended is not in the record.
    req = _planned_in_two_months(request_fixture("seed"))
    _add_pt_sessions(req, [date.today() - timedelta(days=d) for d in (60, 40, 20, 3)])
    line = line_of(call(client, req)["cards"][0]["detail"], "**Time:**")
    assert not DATE.search(line)
    assert "6 PT sessions over 6 weeks in one episode are not documented" in line


def test_a_recent_quit_date_gives_the_date_the_patient_is_nicotine_free(client):
    req = corpus_request("c06-recent-quit-outranks-old-cotinine")  # strict profile: nicotine is required
    quit_date = next(
        date.fromisoformat(c["valueDateTime"][:10])
        for r in resources(req)
        if r["resourceType"] == "Observation"
        for c in r.get("component", [])
        if "valueDateTime" in c
    )
    line = line_of(call(client, req)["cards"][0]["detail"], "**Time:**")
    assert f"Quit {quit_date}: nicotine-free for 6 weeks on {quit_date + timedelta(weeks=6)}" in line


def test_nicotine_use_without_a_quit_date_gets_no_date(client):
    line = line_of(call(client, corpus_request("c06-vaping"))["cards"][0]["detail"], "**Time:**")
    assert not DATE.search(line)
    assert "no quit date" in line


def test_a_missing_smoking_status_is_a_gap_closed_by_documentation(client):
    req = request_fixture("seed")
    _payer(req, "STRICT-MA")  # the strict profile requires nicotine-free status
    detail = call(client, req)["cards"][0]["detail"]
    assert "Smoking status is not in the record: document never or former smoker" in line_of(detail, "**Document:**")
    assert len(rendered_lines(detail)) <= 10


def test_seed_instability_gap_names_the_films_and_their_one_click_order(client):
    card = seed_card(client)
    line = line_of(card["detail"], "**A test could change it:**")
    assert "Instability at L5-S1 is not documented: flexion-extension films could show it" in line
    assert any(s["label"] == "Order flexion-extension radiographs (L5-S1)" for s in card["suggestions"])


def test_advisory_and_informational_criteria_leave_the_card(client):
    detail = seed_card(client)["detail"]
    for word in ("gabapentin", "facet", "injection", "Red flag", "Nicotine", "smoking"):
        assert word.lower() not in detail.lower()


def test_gaps_come_grouped_in_the_order_the_pack_lists_their_kinds(client):
    leads = [line.split(":**")[0] for line in rendered_lines(seed_card(client)["detail"]) if ":**" in line]
    assert leads == ["**Pathway", "**No paperwork changes this", "**Time", "**A test could change it"]


def test_an_excluded_indication_is_said_first(client):
    first = rendered_lines(call(client, corpus_request("c01-ddd-only"))["cards"][0]["detail"])[0]
    assert first.startswith("**Disc degeneration without stenosis or instability: the policy excludes")


def test_a_criterion_that_could_not_be_checked_says_why_in_one_line(client):
    detail = call(client, corpus_request("c08-procedures-not-permitted"))["cards"][0]["detail"]
    line = line_of(detail, "**Could not be checked:**")
    assert line.startswith("**Could not be checked:** Physical therapy — Procedure could not be read")
    assert "Met" not in detail and "Time" not in detail


@pytest.mark.parametrize("name", ["seed", "meets-all", "no-imaging", "red-flag", "case-360"])
def test_every_fixture_card_fits_in_ten_rendered_lines(client, name):
    for card in call(client, request_fixture(name))["cards"]:
        assert len(rendered_lines(card["detail"])) <= 10, card["detail"]


def test_seed_card_suggests_films_and_pt_for_its_required_gaps_only(client):
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
    # The facet evaluation answers an advisory criterion: it cannot change the verdict, so it is not offered.
    assert card["extension"]["org.example.fusion-cds.verdict"]["suggestions"] == [
        "order-flexion-extension-radiographs",
        "refer-physical-therapy",
    ]
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


def test_an_urgent_order_gets_no_delaying_suggestion_or_date(client):
    req = request_fixture("seed")
    orders(req)[0]["priority"] = "urgent"
    card = call(client, req)["cards"][0]
    assert "suggestions" not in card
    assert card["extension"]["org.example.fusion-cds.verdict"]["suggestions"] == []
    lines = rendered_lines(card["detail"])
    assert "**Physical therapy:** Not met — no delaying measure is suggested for an urgent order." in lines
    assert "**Instability:** Not documented — no delaying measure is suggested for an urgent order." in lines
    assert "draft order" not in card["detail"] and "**Time:**" not in card["detail"]
    assert len(lines) <= 10


def test_an_urgent_red_flag_card_fits_in_ten_lines_without_suggestions(client):
    card = call(client, request_fixture("red-flag"))["cards"][0]
    lines = rendered_lines(card["detail"])
    assert lines[0].startswith("**Pathway:** Urgent") and len(lines) <= 10
    assert "suggestions" not in card


def test_the_360_case_is_one_card_with_the_gap_at_its_level(client):
    body = call(client, request_fixture("case-360"))
    (card,) = body["cards"]
    assert card["summary"].startswith("L4-L5, L5-S1 ")
    line = line_of(card["detail"], "**No paperwork changes this:**")
    assert "measured at L4-L5 is below the policy's thresholds" in line and "L5-S1" not in line
    assert result(card, "instability", "L4-L5")["status"] == "not-met"
    assert result(card, "instability", "L5-S1")["status"] == "met"


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


def test_a_co_surgeons_order_for_the_same_operation_gives_one_card(client):
    req = request_fixture("seed")
    co = dict(orders(req)[0], id="seed-order-co-surgeon", requester={"reference": "Practitioner/co-surgeon"})
    req["context"]["draftOrders"]["entry"].append({"resource": co})
    (card,) = call(client, req)["cards"]
    assert card["summary"].startswith("L5-S1 ALIF (22558): 3 of 4 required criteria unmet")
    assert "ServiceRequest/seed-order-co-surgeon" not in card["summary"]
