"""The report-text extractor, behaviour by behaviour (cds_hooks/spine/report_text.py, docs/report-text.md)."""

import base64
import json

from conftest import FIXTURES
from cds_hooks.spine.report_text import extract_report, extract_text


def findings(text, section="findings", content_type="text/plain"):
    return extract_report([("presentedForm[0]", text, content_type, section)])


def stenosis(found, level, compartment=None):
    return [
        f
        for f in found
        if f.kind == "stenosis" and f.level == level and (compartment is None or f.compartment == compartment)
    ]


def one(found, level, compartment):
    (f,) = stenosis(found, level, compartment)
    return f


def test_a_level_header_carries_over_to_the_following_lines():
    found = findings(
        "L4-L5: Disc bulge.\nMild narrowing of the left neural foramen.\nRight foramen patent.\n"
        "L5-S1: Moderate central canal stenosis."
    )
    assert {(f.side, f.grade) for f in stenosis(found, "L4-L5", "foramen")} == {("left", "mild"), ("right", "none")}
    assert one(found, "L5-S1", "central").grade == "moderate"


def test_a_blank_line_or_an_anatomy_subheader_ends_the_carried_level():
    found = findings("L4-L5: Moderate central canal stenosis.\nAlignment: Mild foraminal narrowing.")
    assert [f.level for f in found if f.compartment == "foramen"] == []


def test_a_level_list_gives_one_finding_per_level():
    found = findings("Moderate central canal stenosis at L3-4, L4-5 and L5-S1.")
    assert sorted(f.level for f in found) == ["L3-L4", "L4-L5", "L5-S1"]
    assert {f.grade for f in found} == {"moderate"}


def test_a_level_range_header_covers_every_interspace_in_it():
    found = findings("T12-L1 through L2-L3: No central canal stenosis.")
    assert sorted(f.level for f in found) == ["L1-L2", "L2-L3", "T12-L1"]


def test_grade_ranges_read_as_one_grade():
    found = findings("L4-L5: Mild to moderate central canal stenosis. Moderate-to-severe left foraminal narrowing.")
    assert one(found, "L4-L5", "central").grade == "mild-moderate"
    assert one(found, "L4-L5", "foramen").grade == "moderate-severe"


def test_a_negated_stenosis_is_grade_none_and_never_present():
    found = findings("L4-5: Disc bulge without significant spinal canal or foraminal stenosis.")
    assert {(f.compartment, f.grade, f.status) for f in found} == {
        ("central", "none", "negated"),
        ("foramen", "none", "negated"),
    }


def test_a_denied_high_grade_gives_no_grade_at_all():
    assert stenosis(findings("No severe stenosis at L4-L5."), "L4-L5") == []


def test_no_change_in_a_stenosis_is_not_a_negation():
    assert (
        one(findings("No interval change in the moderate central canal stenosis at L4-L5."), "L4-L5", "central").status
        == "present"
    )


def test_a_hedged_finding_is_uncertain():
    for text in (
        "Possible mild narrowing of the left lateral recess at L5-S1.",
        "Mild right foraminal stenosis at L5-S1 cannot be excluded.",
    ):
        (f,) = findings(text)
        assert f.status == "uncertain"


def test_a_prior_grade_is_historical_and_the_current_grade_present():
    found = findings("L4-L5: Central canal stenosis, previously severe, now moderate.")
    assert {(f.grade, f.status) for f in stenosis(found, "L4-L5", "central")} == {
        ("severe", "historical"),
        ("moderate", "present"),
    }


def test_the_impression_wins_and_keeps_the_overruled_sentence():
    found = findings(
        "FINDINGS:\nL4-L5: Moderate narrowing of the left neural foramen.\nIMPRESSION:\n"
        "Mild left neural foraminal narrowing at L4-L5."
    )
    (f,) = found
    assert (f.grade, f.section) == ("mild", "impression")
    (old,) = f.superseded
    assert old.grade == "moderate" and old.quote == "L4-L5: Moderate narrowing of the left neural foramen."


def test_abbreviations_nf_bnf_and_the_ls_junction():
    found = findings(
        "L4-5: Mild BNF narrowing. Severe left NF narrowing.\nAt the L/S junction, moderate central canal stenosis."
    )
    assert {(f.side, f.grade) for f in stenosis(found, "L4-L5", "foramen")} == {
        ("bilateral", "mild"),
        ("left", "severe"),
    }
    assert one(found, "L5-S1", "central").grade == "moderate"


def test_an_upper_case_report_reads_the_same():
    lower = findings("L4-5: moderate central canal stenosis and mild bilateral neural foraminal narrowing.")
    upper = findings("L4-5: MODERATE CENTRAL CANAL STENOSIS AND MILD BILATERAL NEURAL FORAMINAL NARROWING.")
    assert [(f.level, f.compartment, f.side, f.grade) for f in lower] == [
        (f.level, f.compartment, f.side, f.grade) for f in upper
    ]


def test_plain_text_offsets_slice_the_sentence_out_of_the_source():
    text = "FINDINGS:\nL5-S1: Severe left foraminal stenosis.\n"
    (f,) = findings(text)
    assert text[f.start : f.end] == "L5-S1: Severe left foraminal stenosis." == f.quote


def test_html_offsets_point_into_the_html_source():
    html = "<p><b>IMPRESSION:</b></p><ol><li>Severe right L4-L5 foraminal stenosis &amp; moderate central canal stenosis.</li></ol>"
    found = findings(html, content_type="text/html")
    assert {(f.compartment, f.grade) for f in found} == {("foramen", "severe"), ("central", "moderate")}
    f = found[0]
    assert html[f.start : f.end] == "Severe right L4-L5 foraminal stenosis &amp; moderate central canal stenosis."
    assert f.quote == "Severe right L4-L5 foraminal stenosis & moderate central canal stenosis."


def test_a_spondylolisthesis_has_level_grade_direction_and_size():
    (f,) = findings("Alignment: Grade 1 anterolisthesis of L4 on L5, about 5 mm.")
    assert (f.kind, f.level, f.slip_grade, f.direction, f.mm) == ("listhesis", "L4-L5", 1, "antero", 5.0)


def test_translation_is_computed_from_the_flexion_and_extension_positions():
    found = findings(
        "FLEXION/EXTENSION VIEWS: At L4-L5, the anterolisthesis measures 2 mm in extension and 7 mm in flexion."
    )
    (t,) = [f for f in found if f.kind == "translation"]
    assert (t.level, t.mm) == ("L4-L5", 5.0)


def test_disc_space_narrowing_is_not_stenosis():
    assert stenosis(findings("Mild disc space narrowing at L5-S1."), "L5-S1") == []


def test_history_and_comparison_sections_are_not_read():
    assert findings("CLINICAL HISTORY: Severe stenosis at L4-L5 on an outside MRI.\n\nFINDINGS:\nL4-L5: Normal.") == []


def seed_report():
    bundle = json.loads((FIXTURES / "patients" / "seed.json").read_text())
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["id"] == "seed-mri-2026-report")


def test_the_seed_report_gives_mild_at_l5s1_and_mild_left_foraminal_at_l4l5():
    report = seed_report()
    text = base64.b64decode(report["presentedForm"][0]["data"]).decode()
    found = extract_report(
        [
            ("conclusion", report["conclusion"], "text/plain", "impression"),
            ("presentedForm[0]", text, "text/plain", "findings"),
        ]
    )
    present = {(f.level, f.compartment, f.side, f.grade) for f in found if f.status == "present"}
    assert present == {("L5-S1", "foramen", "bilateral", "mild"), ("L4-L5", "foramen", "left", "mild")}
    # Text alone, without the conclusion, says the same.
    alone = {(f.level, f.compartment, f.side, f.grade) for f in extract_text(text) if f.status == "present"}
    assert alone == present


def test_extraction_is_deterministic():
    report = seed_report()
    text = base64.b64decode(report["presentedForm"][0]["data"]).decode()
    assert extract_text(text) == extract_text(text)


def test_the_word_start_guard_of_the_token_pattern_changes_no_token_on_the_gold_set(monkeypatch):
    # Speed only: every token pattern already begins where no word character precedes it.
    import re

    from cds_hooks.spine import report_text
    from cds_hooks.spine.report_text_eval import load_gold

    unguarded = re.compile("|".join(f"(?P<{n}>{p})" for n, p in report_text._TOKEN_SPECS), re.I)
    texts = [p["text"] for p in load_gold()]
    sentences = [s.text for t in texts for s in report_text.sentences(t, 0, len(t))]
    assert len(sentences) > 200

    def tokens(pattern):
        monkeypatch.setattr(report_text, "_TOKEN_RE", pattern)
        return [[(t.kind, t.start, t.end, t.value) for t in report_text.tokenize(s)] for s in sentences]

    guarded = report_text._TOKEN_RE
    assert tokens(guarded) == tokens(unguarded)


def test_mri_sequence_names_are_not_the_t1_t2_interspace():
    found = findings("C5-6: Moderate canal stenosis. Cord signal is normal on T1/T2 weighted images.")
    assert {f.level for f in found} == {"C5-C6"}


def test_a_t1_t2_interspace_written_as_one_is_read():
    assert one(findings("T1-T2: Mild left foraminal stenosis."), "T1-T2", "foramen").grade == "mild"


def test_the_cervicothoracic_junction_header_names_c7_t1():
    assert (
        one(findings("Cervicothoracic junction: Severe right foraminal stenosis."), "C7-T1", "foramen").side == "right"
    )


def test_a_bare_number_after_c7_names_t1():
    assert one(findings("C7-1: Mild canal stenosis."), "C7-T1", "central").grade == "mild"


def test_a_cord_finding_denied_in_one_clause_and_affirmed_at_another_level_in_the_next_keeps_both():
    found = findings("At C3-C4 there is cord compression; at C5-C6 there is no cord compression.")
    assert {(f.level, f.status) for f in found if f.kind == "cord-compression"} == {
        ("C3-C4", "present"),
        ("C5-C6", "negated"),
    }


def test_a_resolved_cord_signal_change_is_a_prior_finding_and_a_denial_never_a_present_one():
    found = findings("Previously described cord edema at C4-C5 has resolved.")
    assert {f.status for f in found if f.kind == "cord-signal"} == {"historical", "negated"}
