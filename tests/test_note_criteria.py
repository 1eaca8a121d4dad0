"""What notes say, in the criteria, as far as the pack allows (pack.json `noteEvidence`, docs/note-text.md).

The fixture patients `notes-pt` and `notes-vaping` are `meets-all` with one thing moved into a note
(scripts/fixtures/make_note_patients.py). Their expected statuses follow the policy and the pack's
allowance: a note of PT attendance does not close "not documented" under any shipped profile (its
held-out precision is below 0.98), and a note of current nicotine use newer than the coded status makes
nicotine not met.
"""

import base64
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import patient_bundle, request_fixture
from support.hooks import call, result, statuses
from test_fixture_patients import EXPECTATIONS

REPO = Path(__file__).resolve().parent.parent

# meets-all's statuses (fhir_fixtures/patients/README.md): every criterion met from coded data.
MEETS_ALL = EXPECTATIONS["lumbar-fusion"]["patients"]["meets-all"]["statuses"]


def only_card(body):
    assert len(body["cards"]) == 1
    return body["cards"][0]


def on_server(name, fhir_server, prefetch=True):
    """The fixture request aimed at the real FHIR server the tests start, with the patient loaded."""
    fhir_server.load_bundle(patient_bundle(name))
    req = request_fixture(name, prefetch=prefetch)
    req["fhirServer"] = fhir_server.base_url
    return req


def with_note_text(req, doc_id, text, date=None):
    """The request with the note's text given inline (base64 data) instead of by URL."""
    req = copy.deepcopy(req)
    for entry in req["prefetch"]["documentReferences"]["entry"]:
        doc = entry["resource"]
        if doc["id"] == doc_id:
            doc["content"] = [
                {"attachment": {"contentType": "text/plain", "data": base64.b64encode(text.encode()).decode()}}
            ]
            if date:
                doc["date"] = date
    return req


# ------------------------------------------------------------------ PT only in a note


def test_pt_written_only_in_a_note_leaves_conservative_care_not_documented_under_the_default_profile(client):
    card = only_card(call(client, request_fixture("notes-pt")))
    assert statuses(card) == {**MEETS_ALL, "conservative-care": "not-documented"}
    assert card["indicator"] == "warning"


def test_the_conservative_care_reason_points_at_the_pt_note_and_says_why_it_does_not_count(client):
    r = result(only_card(call(client, request_fixture("notes-pt"))), "conservative-care")
    assert "2026-07-06" in r["reason"] and "11 of 12" in r["reason"]
    assert "do not count" in r["reason"]
    assert "DocumentReference/notept-pt-summary" in r["evidence"]


@pytest.mark.fhir_server
def test_the_pt_note_read_from_the_fhir_server_without_prefetch_gives_the_same_result(client, fhir_server):
    card = only_card(call(client, on_server("notes-pt", fhir_server, prefetch=False)))
    assert statuses(card) == {**MEETS_ALL, "conservative-care": "not-documented"}
    assert "11 of 12" in result(card, "conservative-care")["reason"]


def test_a_profile_that_lets_a_pt_note_count_meets_conservative_care_from_it(app, client):
    pack = app.extensions["cds_hooks"].get("lumbar-fusion").pack
    saved = copy.deepcopy(pack.note_evidence)
    pack.note_evidence = [
        {**rule, "use": "may-meet"} if rule["fact"] == "pt-attendance" else rule for rule in pack.note_evidence
    ]
    try:
        r = result(only_card(call(client, request_fixture("notes-pt"))), "conservative-care")
    finally:
        pack.note_evidence = saved
    assert r["status"] == "met"
    assert "note" in r["reason"] and "11" in r["reason"]
    assert "DocumentReference/notept-pt-summary" in r["evidence"]


def test_a_pt_note_for_another_body_region_counts_for_nothing_even_where_allowed(app, client):
    pack = app.extensions["cds_hooks"].get("lumbar-fusion").pack
    saved = copy.deepcopy(pack.note_evidence)
    pack.note_evidence = [
        {**rule, "use": "may-meet"} if rule["fact"] == "pt-attendance" else rule for rule in pack.note_evidence
    ]
    req = with_note_text(
        request_fixture("notes-pt"),
        "notept-pt-summary",
        "PHYSICAL THERAPY DISCHARGE SUMMARY\nDiagnosis: right knee osteoarthritis\n"
        "Dates of service: 05/04/2026 - 06/29/2026\nVisits attended: 11/12",
    )
    try:
        r = result(only_card(call(client, req)), "conservative-care")
    finally:
        pack.note_evidence = saved
    assert r["status"] == "not-documented"


# ------------------------------------------------------------------ nicotine only in a note


@pytest.mark.fhir_server
def test_a_daily_vaping_note_newer_than_the_coded_never_smoker_makes_nicotine_not_met(client, fhir_server):
    card = only_card(call(client, on_server("notes-vaping", fhir_server)))
    assert statuses(card) == {**MEETS_ALL, "nicotine": "not-met"}


@pytest.mark.fhir_server
def test_the_nicotine_reason_says_the_coded_status_and_the_note_disagree_with_both_dates_and_the_quote(
    client, fhir_server
):
    r = result(only_card(call(client, on_server("notes-vaping", fhir_server))), "nicotine")
    assert "2026-10-01" in r["reason"] and "2026-11-10" in r["reason"]
    assert "vapes daily" in r["reason"]
    assert "disagree" in r["reason"]
    assert {"Observation/notevape-smoking-2026-10", "DocumentReference/notevape-progress"} <= set(r["evidence"])


@pytest.mark.fhir_server
def test_the_vaping_note_fetched_without_prefetch_gives_the_same_nicotine_result(client, fhir_server):
    card = only_card(call(client, on_server("notes-vaping", fhir_server, prefetch=False)))
    assert result(card, "nicotine")["status"] == "not-met"


@pytest.mark.parametrize(
    "text",
    [
        "Social history: denies vaping or smokeless tobacco.",
        "Social history: she might try a vape at parties, she is not sure.",
        "Family history: her husband vapes daily.",
        "Plan: nicotine cessation counselling; vaping risks reviewed.",
    ],
)
def test_a_negated_hedged_family_or_counselling_mention_of_vaping_counts_for_nothing(client, text):
    req = with_note_text(request_fixture("notes-vaping"), "notevape-progress", text)
    r = result(only_card(call(client, req)), "nicotine")
    assert r["status"] == "met"


def test_a_vaping_note_older_than_the_coded_status_does_not_override_it_but_is_named(client):
    req = with_note_text(
        request_fixture("notes-vaping"),
        "notevape-progress",
        "Social history: she vapes daily.",
        date="2026-08-03T10:00:00Z",
    )
    r = result(only_card(call(client, req)), "nicotine")
    assert r["status"] == "met"
    assert "2026-08-03" in r["reason"] and "vapes daily" in r["reason"]


def test_a_newer_note_of_current_vaping_takes_away_the_nicotine_free_date_of_a_recent_quit(client):
    # Strict profile (nicotine required): coded former smoker who quit 2026-11-23, recorded 2026-12-07.
    # Alone that is a gap closed by time; a note of 2026-12-10 that she vapes daily means the quit date
    # no longer tells when she will be nicotine-free, so the card gives no date.
    req = json.loads(
        (REPO / "fhir_fixtures/corpus/lumbar-fusion/requests/c06-recent-quit-outranks-old-cotinine.json").read_text()
    )
    note = copy.deepcopy(request_fixture("notes-vaping")["prefetch"]["documentReferences"])
    doc = note["entry"][0]["resource"]
    doc["subject"] = {"reference": "Patient/" + req["context"]["patientId"]}
    req["prefetch"]["documentReferences"] = note
    before = only_card(call(client, req))
    assert "nicotine-free for 6 weeks on" in before["detail"]  # the note, by URL on no server, is not read

    req = with_note_text(req, doc["id"], "Social history: she vapes daily.", date="2026-12-10T09:00:00Z")
    card = only_card(call(client, req))
    r = result(card, "nicotine")
    assert r["status"] == "not-met" and "vapes daily" in r["reason"]
    assert "nicotine-free for 6 weeks on" not in card["detail"]


def unreachable(req, payer=None):
    """The request with its fhirServer where nothing answers: the note's attachment by URL cannot be fetched."""
    req = copy.deepcopy(req)
    req["fhirServer"] = "http://127.0.0.1:9/fhir"
    if payer:
        req["prefetch"]["coverage"]["entry"][0]["resource"]["payor"][0]["identifier"]["value"] = payer
    return req


def test_a_note_attachment_that_cannot_be_fetched_is_named_on_the_card(client):
    card = only_card(call(client, unreachable(request_fixture("notes-vaping"))))
    assert (
        "**Could not be checked:** DocumentReference: 1 note attachment given by URL could not be fetched"
        in card["detail"]
    )


def test_an_unread_note_that_could_make_a_required_criterion_not_met_leaves_the_verdict_incomplete(client):
    # Strict profile: nicotine is required and a note may make it not met; the note was not read, so the
    # coded never-smoker status alone is no reason to say every required criterion is met.
    card = only_card(call(client, unreachable(request_fixture("notes-vaping"), payer="STRICT-MA")))
    assert card["indicator"] == "warning"
    assert "verdict incomplete" in card["summary"]
    assert card["extension"]["org.example.fusion-cds.verdict"]["verdict"] == "incomplete"


# ------------------------------------------------------------------ the fixtures themselves


def test_the_note_patients_are_what_make_note_patients_writes(tmp_path):
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "fixtures" / "make_note_patients.py"), str(tmp_path)],
        check=True,
        capture_output=True,
    )
    for name in ("notes-pt", "notes-vaping"):
        for folder in ("patients", "orders"):
            fresh = json.loads((tmp_path / folder / f"{name}.json").read_text(encoding="utf-8"))
            committed = json.loads((REPO / "fhir_fixtures" / folder / f"{name}.json").read_text(encoding="utf-8"))
            assert fresh == committed, f"regenerate: python3 scripts/fixtures/make_note_patients.py ({folder}/{name})"


# ------------------------------------------------------------------ both engines


def _engine_cases():
    """The engine calls of the note patients (notes read and derived as the service does), under every
    use a pack can give each note fact."""
    from cds_hooks.config import Config
    from cds_hooks.hooks.hook_request import parse_hook_request
    from cds_hooks.packs.loader import load_rule_packs
    from cds_hooks.pipeline.criteria import parameters_for
    from cds_hooks.pipeline.evaluation import Evaluator
    from cds_hooks.pipeline.orders import group_cases
    from cds_hooks.pipeline.patient_data import gather
    from cds_hooks.pipeline.profiles import select_profile
    from cds_hooks.spine.derived_findings import derive as derive_findings
    from cds_hooks.spine.note_findings import derive as derive_notes, readable_notes
    from tests.support.cql_judge import Case

    config = Config.development()
    pack = load_rule_packs(config.cql_root)["lumbar-fusion"]
    evaluator = Evaluator(pack, engine=None, config=config)
    vaping = request_fixture("notes-vaping")
    requests = [
        ("notes-pt", request_fixture("notes-pt")),
        ("vapes-daily", with_note_text(vaping, "notevape-progress", "Social history: she vapes daily.")),
        ("vapes-older", with_note_text(vaping, "notevape-progress", "She vapes daily.", date="2026-08-03T10:00:00Z")),
        ("vape-denied", with_note_text(vaping, "notevape-progress", "Denies vaping. Her husband vapes.")),
    ]
    cases = []
    for name, body in requests:
        hook_request = parse_hook_request(body, pack.hook)
        case = group_cases(evaluator.detector.detect(hook_request.draft_orders))[0]
        data = gather(hook_request, pack.prefetch, evaluator.fetch_settings)
        data.add_derived(derive_findings(data.resources))
        data.add_derived(derive_notes(data.resources, {}, case.reference_date))
        assert readable_notes(data.resources, case.reference_date)
        profile = select_profile(pack, data.of_type("Coverage"), case, config.payer_profiles).profile
        params = parameters_for(case, profile, data, pack)
        for pt in ("off", "shown", "may-meet"):
            for nicotine in ("off", "shown", "against-met"):
                cases.append(
                    Case(
                        f"{name}+{pt}+{nicotine}",
                        data.resources,
                        {**params, "NotePTAttendanceUse": pt, "NoteNicotineUse": nicotine},
                        data.patient_id,
                    )
                )
    return cases


def test_the_note_defines_agree_between_the_reference_engine_and_the_compiled_evaluator():
    from tests.support.cql_judge import Judge, load_pack_files

    elm, inc, vs = load_pack_files()
    judge = Judge(elm, inc, vs, workers=2)
    try:
        report = judge.compare(_engine_cases())
    finally:
        judge.close()
    assert report.cases == 36 and report.errors_both == 0, report.summary()
    assert not report.disagreements, report.summary() + "\n" + str(report.disagreements[:3])[:2000]


# ------------------------------------------------------------------ the pack's noteEvidence section


def _rule(doc, fact):
    return next(r for r in doc["noteEvidence"] if r["fact"] == fact)


def test_no_shipped_profile_lets_a_note_of_pt_attendance_meet_a_criterion():
    from cds_hooks.packs.loader import load_rule_packs
    from cds_hooks.config import Config

    pack = load_rule_packs(Config.development().cql_root)["lumbar-fusion"]
    assert {pack.note_parameters(p)["NotePTAttendanceUse"] for p in pack.profiles.values()} == {"shown"}
    assert {pack.note_parameters(p)["NoteNicotineUse"] for p in pack.profiles.values()} == {"against-met"}


def test_a_profile_may_be_given_its_own_note_allowance(tmp_path):
    from cds_hooks.packs.loader import load_rule_packs
    from test_rule_pack import _pack_copy

    root = _pack_copy(tmp_path, lambda doc: _rule(doc, "pt-attendance").update(profiles={"strict": "off"}))
    pack = load_rule_packs(root)["lumbar-fusion"]
    assert pack.note_parameters(pack.profiles["strict"])["NotePTAttendanceUse"] == "off"
    assert pack.note_parameters(pack.profiles["default"])["NotePTAttendanceUse"] == "shown"


def test_a_use_a_note_fact_cannot_have_is_refused(tmp_path):
    from test_rule_pack import _refusal

    message = _refusal(tmp_path, lambda doc: _rule(doc, "nicotine-status").update(use="may-meet"))
    assert "$.noteEvidence[1].use: a nicotine-status fact cannot be used 'may-meet'" in message


def test_an_unknown_note_fact_is_refused(tmp_path):
    from test_rule_pack import _refusal

    message = _refusal(tmp_path, lambda doc: _rule(doc, "pt-attendance").update(fact="red-flag"))
    assert "$.noteEvidence[0].fact: 'red-flag' is no note fact" in message


def test_a_note_allowance_for_an_undeclared_profile_criterion_or_parameter_is_refused(tmp_path):
    from test_rule_pack import _refusal

    def change(doc):
        _rule(doc, "pt-attendance").update(profiles={"nosuch": "off"}, criterion="physio", parameter="NotePT")

    message = _refusal(tmp_path, change)
    assert "$.noteEvidence[0].profiles.nosuch: 'nosuch' is not a profile" in message
    assert "$.noteEvidence[0].criterion: 'physio' is not a declared criterion" in message
    assert "$.noteEvidence[0].parameter: the library LumbarFusionCriteria declares no parameter 'NotePT'" in message
