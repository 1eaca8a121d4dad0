"""Derived Observations from clinical notes: which notes are read, their FHIR shape and provenance
(cds_hooks/spine/note_findings.py, docs/note-text.md)."""

import base64
import datetime as dt

from cds_hooks.spine.note_findings import METHOD_CODE, NOTE_FINDING, SOURCE_EXTENSION, derive, readable_notes

TODAY = dt.date(2026, 6, 20)


def note(text, content_type="text/plain", id_="note-1", **extra):
    doc = {
        "resourceType": "DocumentReference",
        "id": id_,
        "status": "current",
        "date": "2026-06-15T10:00:00Z",
        "subject": {"reference": "Patient/p1"},
        "category": [
            {
                "coding": [
                    {
                        "system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
                        "code": "clinical-note",
                    }
                ]
            }
        ],
        "content": [
            {
                "attachment": {
                    "contentType": content_type,
                    "data": base64.b64encode(text.encode("utf-8")).decode("ascii"),
                }
            }
        ],
    }
    doc.update(extra)
    return doc


def component(obs, code):
    return next((c for c in obs["component"] if c["code"]["coding"][0]["code"] == code), None)


def test_each_fact_becomes_an_observation_derived_from_the_note_with_the_method_code():
    (obs,) = derive([note("Pt attended 12 PT visits for low back pain, 1/5/26-3/27/26.")], today=TODAY)
    assert obs["derivedFrom"] == [{"reference": "DocumentReference/note-1"}]
    assert obs["method"]["coding"][0] == {
        "system": NOTE_FINDING,
        "code": METHOD_CODE,
        "display": "Extracted from note text",
    }
    assert obs["code"]["coding"][0]["code"] == "pt-attendance" and obs["valueInteger"] == 12
    assert obs["effectivePeriod"] == {"start": "2026-01-05", "end": "2026-03-27"}
    assert component(obs, "span-weeks")["valueInteger"] == 11
    assert obs["bodySite"]["coding"][0]["code"] == "region-lumbar"
    assert obs["subject"] == {"reference": "Patient/p1"} and obs["id"].startswith("derived-note-")


def test_the_assertion_travels_with_every_derived_fact():
    found = derive([note("Denies tobacco. Never smoked cigarettes.")], today=TODAY)
    assert sorted(component(o, "assertion")["valueCodeableConcept"]["coding"][0]["code"] for o in found) == [
        "negated",
        "present",
    ]


def test_the_sentence_and_offsets_are_kept():
    text = "Social history reviewed. Quit smoking 3/2024."
    (obs,) = derive([note(text)], today=TODAY)
    parts = {e["url"]: list(e.values())[1] for e in obs["extension"][0]["extension"]}
    assert obs["extension"][0]["url"] == SOURCE_EXTENSION
    assert text[parts["start"] : parts["end"]] == "smoking" and parts["quote"] == "Quit smoking 3/2024."
    assert component(obs, "quit-date")["valueDateTime"] == "2024-03"


def test_the_same_note_always_gives_the_same_ids():
    assert [o["id"] for o in derive([note("Vapes daily.")], today=TODAY)] == [
        o["id"] for o in derive([note("Vapes daily.")], today=TODAY)
    ]


def test_an_html_note_is_read():
    (obs,) = derive([note("<p>Smoking status: <b>Never</b></p>", "text/html")], today=TODAY)
    assert obs["valueCodeableConcept"]["coding"][0]["code"] == "never"


def test_a_preliminary_note_gives_preliminary_observations():
    (obs,) = derive([note("Vapes daily.", docStatus="preliminary")], today=TODAY)
    assert obs["status"] == "preliminary"


def test_superseded_entered_in_error_undated_and_old_notes_are_not_read():
    docs = [
        note("Vapes daily.", id_="a", status="superseded"),
        note("Vapes daily.", id_="b", status="entered-in-error"),
        note("Vapes daily.", id_="c", date=None),
        note("Vapes daily.", id_="d", date="2020-01-01"),
    ]
    assert readable_notes(docs, TODAY) == [] and derive(docs, today=TODAY) == []


def test_a_document_that_is_not_a_clinical_note_is_not_read():
    consent = note(
        "Vapes daily.",
        category=[],
        type={"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Consent Document"}]},
    )
    assert derive([consent], today=TODAY) == []


def test_a_note_typed_as_a_progress_note_is_read_without_a_category():
    progress = note("Vapes daily.", category=[], type={"coding": [{"system": "http://loinc.org", "code": "11506-3"}]})
    assert len(derive([progress], today=TODAY)) == 1


def test_an_attachment_by_url_is_read_only_from_what_was_fetched():
    doc = note("", id_="n2")
    doc["content"] = [{"attachment": {"contentType": "text/plain", "url": "Binary/b1"}}]
    assert derive([doc], today=TODAY) == []
    (obs,) = derive([doc], {("n2", 0): ("Vapes daily.", "text/plain")}, today=TODAY)
    assert obs["derivedFrom"] == [{"reference": "DocumentReference/n2"}]


def test_reading_stops_at_the_character_budget_newest_note_first(monkeypatch):
    from cds_hooks.spine import note_findings

    monkeypatch.setattr(note_findings, "MAX_CHARS_PER_CALL", 20)
    old = note("Vapes daily.", id_="old", date="2026-01-01")
    new = note("Chews tobacco daily.", id_="new", date="2026-06-01")
    assert [o["derivedFrom"][0]["reference"] for o in derive([old, new], today=TODAY)] == ["DocumentReference/new"]


def test_the_look_back_reaches_back_from_the_given_date():
    doc = note("Vapes daily.", date="2023-01-10")
    assert readable_notes([doc], "2025-12-01") == [doc]
    assert readable_notes([doc], "2026-03-01") == []
    assert readable_notes([note("Vapes daily.", date="2026-06-15")], "2026-06-01") == []  # written after it
