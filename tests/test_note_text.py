"""The clinical-note reader, behaviour by behaviour (cds_hooks/spine/note_text.py, docs/note-text.md)."""

from cds_hooks.spine.note_text import extract_note, note_plain_text

NOTE_DATE = "2026-06-15"


def facts(text, type_=None, content_type="text/plain"):
    return [f for f in extract_note(text, NOTE_DATE, content_type) if type_ is None or f.type == type_]


def only(text, type_):
    (f,) = facts(text, type_)
    return f


def test_pt_attendance_keeps_count_dates_region_and_status():
    f = only(
        "Attended 16 visits from 11/3/25-2/20/26 for lumbar spinal stenosis. D/C to independent HEP.", "pt-attendance"
    )
    assert (
        f.assertion,
        f.get("sessions_attended"),
        f.get("start"),
        f.get("end"),
        f.get("region"),
        f.get("status"),
    ) == ("present", 16, "2025-11-03", "2026-02-20", "lumbar", "discharged")


def test_a_fact_keeps_its_words_and_sentence_with_offsets():
    text = "Prior history reviewed. Pt attended 6 visits over 6 weeks for LBP."
    f = only(text, "pt-attendance")
    assert text[f.start : f.end] == "6 visits"
    assert text[f.sentence_start : f.sentence_end] == "Pt attended 6 visits over 6 weeks for LBP."


def test_pt_for_another_body_region_is_not_lumbar():
    assert (
        only("Pt discharged from PT for L shoulder adhesive capsulitis after 16 visits.", "pt-attendance").get("region")
        == "shoulder"
    )


def test_a_blank_attendance_field_is_a_plan_not_attendance():
    assert only("Visits attended: ___ / 12\nDiagnosis: lumbar stenosis", "pt-attendance").assertion == "planned"


def test_zero_pt_visits_is_a_negated_fact():
    assert only("PT visits (last 12 mo): 0", "pt-attendance").assertion == "negated"


def test_a_relatives_pt_is_family():
    assert only("Her husband is starting PT for his knee next week.", "pt-attendance").assertion == "family"


def test_quitting_one_product_does_not_make_another_former():
    found = {
        (f.get("product"), f.get("status"), f.assertion)
        for f in facts("Quit smoking 10 years ago but vapes daily.", "nicotine")
    }
    assert found == {("cigarettes", "former", "present"), ("vaping", "current", "present")}


def test_a_quit_date_is_resolved_against_the_note_date():
    assert only("Pt denies any nicotine since March.", "nicotine").get("quit_date") == "2026-03"
    assert only("No cigarettes x 8 months.", "nicotine").get("quit_date") == "2025-10"


def test_a_restart_supersedes_the_former_status():
    found = {(f.get("status"), f.assertion) for f in facts("Former smoker, restarted in August.", "nicotine")}
    assert found == {("former", "historical"), ("current", "present")}


def test_denying_tobacco_is_negated_current_use_not_never():
    f = only("Denies tobacco.", "nicotine")
    assert (f.get("status"), f.assertion) == ("current", "negated")


def test_cannabis_vaping_is_not_nicotine():
    assert [(f.get("product"), f.assertion) for f in facts("Marijuana vape nightly for sleep.", "nicotine")] == []


def test_a_relatives_smoking_is_family():
    assert only("Father smoked 2ppd.", "nicotine").assertion == "family"


def test_a_medication_trial_keeps_drug_dose_dates_and_outcome():
    f = only("Tried duloxetine 30mg → 60mg Jan-Apr 2026, stopped d/t nausea, minimal help.", "medication-trial")
    assert (f.get("drug"), f.get("dose"), f.get("start"), f.get("stop"), f.get("outcome"), f.get("side_effect")) == (
        "duloxetine",
        "30mg → 60mg",
        "2026-01",
        "2026-04",
        "side-effects",
        "nausea",
    )


def test_brand_names_map_to_the_generic_drug():
    assert only("Failed trial of Lyrica (2025).", "medication-trial").get("drug") == "pregabalin"


def test_an_allergy_entry_is_no_trial():
    assert facts("ALLERGIES: Pregabalin (swelling), PCN (rash)", "medication-trial") == []


def test_a_discussed_drug_is_planned():
    assert only("gabapentin was discussed; pt prefers to avoid.", "medication-trial").assertion == "planned"


def test_a_prescribed_but_never_started_drug_is_negated():
    assert only("Gabapentin was prescribed but he never started it.", "medication-trial").assertion == "negated"


def test_rule_out_is_hedged_and_a_new_sign_in_the_same_sentence_is_present():
    found = {
        (f.get("kind"), f.assertion)
        for f in facts("r/o CES - stat MRI ordered given new urinary retention.", "red-flag")
    }
    assert found == {("cauda-equina", "hedged"), ("bowel-bladder-dysfunction", "present")}


def test_a_denial_covers_every_red_flag_in_its_list():
    found = facts(
        "No red flag symptoms: denies saddle anesthesia, bowel/bladder changes, fevers, or progressive weakness.",
        "red-flag",
    )
    assert {f.assertion for f in found} == {"negated"} and len(found) == 4


def test_a_treated_condition_is_historical():
    assert (
        only("Remote history of breast cancer treated in 2010 with no recurrence.", "red-flag").assertion
        == "historical"
    )


def test_return_precautions_give_no_red_flag():
    assert (
        facts("Return precautions: go to the ER for new bowel or bladder problems or leg weakness.", "red-flag") == []
    )


def test_a_symptom_duration_is_in_months():
    assert only("Neck pain x 2 yrs.", "symptom-duration").get("duration_months") == 24


def test_a_symptom_onset_is_a_date():
    assert only("Onset of R leg pain 3 weeks ago without injury.", "symptom-duration").get("onset") == "2026-05-25"


def test_html_is_read_as_text_without_its_markup_or_scripts():
    text = note_plain_text(
        "<html><body><p>Smoking status: <b>Never</b></p><script>x</script></body></html>", "text/html"
    )
    assert text.strip() == "Smoking status: Never"


def test_an_html_note_gives_the_same_facts_as_its_text():
    html_facts = facts(
        "<p>Smoking status: Never</p><p>Attended 12 PT visits for low back pain.</p>", content_type="text/html"
    )
    assert {(f.type, f.assertion) for f in html_facts} == {("nicotine", "present"), ("pt-attendance", "present")}


def test_wanting_or_being_told_to_quit_is_not_having_quit():
    assert only("Smokes 1 ppd, not ready to quit.", "nicotine").get("status") == "current"
    assert only("Advised to quit smoking.", "nicotine").get("status") == "current"


def test_smoke_free_since_a_date_is_former_with_that_quit_date():
    f = only("Patient has been smoke-free since 2022.", "nicotine")
    assert (f.get("status"), f.get("quit_date"), f.assertion) == ("former", "2022", "present")


def test_a_declined_drug_is_negated():
    assert only("Patient declined gabapentin.", "medication-trial").assertion == "negated"


def test_pt_not_yet_started_is_negated_and_pt_ordered_is_planned():
    assert only("Pt has not started PT yet.", "pt-attendance").assertion == "negated"
    assert only("PT was ordered but insurance denied it.", "pt-attendance").assertion == "planned"


def test_ruled_out_later_in_the_clause_negates_the_red_flag():
    assert only("Fracture of L1 ruled out on CT.", "red-flag").assertion == "negated"


def test_a_time_ago_is_an_onset_not_a_trial_length():
    f = only("Gabapentin 300 mg tid was started 2 months ago and is helping.", "medication-trial")
    assert (f.get("start"), f.get("weeks")) == ("2026-04", None)


def test_a_request_for_pt_visits_is_a_plan_whatever_number_it_carries():
    f = only("PT Auth Request: 8 visits requested for lumbago (M54.50)", "pt-attendance")
    assert (f.assertion, f.get("sessions_attended"), f.get("sessions_planned")) == ("planned", None, 8)


def test_an_authorization_in_brackets_is_the_plan_and_the_visits_been_to_are_the_count():
    (f,) = [
        f
        for f in facts("PT for lumbar HNP authorized 6/1 (12 visits); pt has been to 5 so far.", "pt-attendance")
        if f.assertion == "present"
    ]
    assert (f.get("sessions_attended"), f.get("sessions_planned")) == (5, 12)


def test_numbers_in_words_count_in_n_of_m():
    f = only("She attended eight of twelve prescribed visits for her lower back.", "pt-attendance")
    assert (f.get("sessions_attended"), f.get("sessions_planned"), f.get("region")) == (8, 12, "lumbar")


def test_remaining_visits_are_not_visits_attended():
    assert [f.get("sessions_attended") for f in facts("Visit #9\nDx: LBP\nRemaining visits: 3.", "pt-attendance")] == [
        9
    ]


def test_a_payers_requirement_of_pt_and_nicotine_abstinence_is_no_fact():
    assert facts("Insurance requires 6 weeks of PT and nicotine abstinence before lumbar fusion can be approved.") == []


def test_an_unticked_box_denies_the_care_it_names():
    (f,) = [f for f in facts("[x] NSAIDs  [ ] Epidural injection", "conservative-care") if f.get("modality") == "other"]
    assert f.assertion == "negated"


def test_a_tobacco_status_field_takes_its_product_and_quit_date_from_the_next_fields():
    f = only("Tobacco use: Former\nType: Cigarettes\nQuit date: 09/14/2025", "nicotine")
    assert (f.assertion, f.get("status"), f.get("product"), f.get("quit_date")) == (
        "present",
        "former",
        "cigarettes",
        "2025-09-14",
    )


def test_a_restart_in_the_next_sentence_makes_the_former_status_historical():
    found = facts("He used to smoke until 2019. He picked it back up in March.", "nicotine")
    assert sorted((f.get("status"), f.assertion) for f in found) == [("current", "present"), ("former", "historical")]


def test_a_quit_claim_doubted_in_the_same_sentence_is_hedged():
    f = only("She insists she quit cigarettes in May.", "nicotine")
    assert (f.get("status"), f.assertion) == ("former", "hedged")


def test_dependence_in_remission_is_former_not_current():
    f = only("PROBLEM LIST\n- Nicotine dependence, cigarettes, in remission", "nicotine")
    assert (f.get("status"), f.assertion) == ("former", "present")


def test_a_stop_date_is_not_the_start_of_a_trial():
    f = only("Gabapentin 300 mg | Discontinued 05/01/2026 - ineffective | 05/01/2026", "medication-trial")
    assert (f.get("start"), f.get("stop")) == (None, "2026-05-01")


def test_a_negative_workup_after_the_term_denies_the_red_flag():
    assert only("Metastatic workup negative.", "red-flag").assertion == "negated"
