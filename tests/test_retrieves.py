"""Which resources the engine gets: those some retrieve of the library can return (ELM Retrieve)."""

from __future__ import annotations

import pytest

from cds_hooks.config import REPO_ROOT
from cds_hooks.engine.retrieves import ALL, retrieve_filter
from cds_hooks.packs.loader import load_rule_packs

LOINC = "http://loinc.org"


@pytest.fixture(scope="module")
def lumbar():
    pack = load_rule_packs(REPO_ROOT / "cql")["lumbar-fusion"]
    return retrieve_filter(pack.elm, pack.valuesets)


def observation(code: str, system: str = LOINC, rid: str = "o1") -> dict:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"coding": [{"system": system, "code": code}]},
    }


def elm(*retrieves: dict, codes=(), valuesets=()) -> dict:
    return {
        "library": {
            "identifier": {"id": "Probe"},
            "codes": {"def": [{"name": n, "id": c} for n, c in codes]},
            "valueSets": {"def": [{"name": n, "id": u} for n, u in valuesets]},
            "statements": {"def": [{"name": f"d{i}", "expression": r} for i, r in enumerate(retrieves)]},
        }
    }


def retrieve(data_type: str, codes: dict | None = None, prop: str = "code") -> dict:
    node = {"type": "Retrieve", "dataType": f"{{http://hl7.org/fhir}}{data_type}"}
    if codes is not None:
        node.update(codeProperty=prop, codes=codes)
    return node


def test_types_no_retrieve_names_are_dropped(lumbar):
    assert not lumbar.wants({"resourceType": "Coverage", "id": "c"})
    assert not lumbar.wants({"resourceType": "Practitioner", "id": "p"})


def test_the_patient_is_always_kept(lumbar):
    assert lumbar.wants({"resourceType": "Patient", "id": "p"})


def test_types_retrieved_without_codes_are_kept_whole(lumbar):
    assert lumbar.types["Condition"] is ALL
    assert lumbar.wants({"resourceType": "Condition", "id": "c", "code": {"text": "anything"}})


def test_code_filtered_types_keep_only_matching_codes(lumbar):
    assert lumbar.wants(observation("72166-2"))  # tobacco smoking status
    assert lumbar.wants(
        observation("spinal-stenosis-grade", "http://fusion-cds.example.org/fhir/CodeSystem/spine-finding")
    )
    assert not lumbar.wants(observation("8867-4"))  # heart rate


def test_encounters_are_kept_by_their_type(lumbar):
    pt = {
        "resourceType": "Encounter",
        "id": "e1",
        "type": [
            {"coding": [{"system": "http://snomed.info/sct", "code": "other"}]},
            {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "97110"}]},
        ],
    }
    office = {
        "resourceType": "Encounter",
        "id": "e2",
        "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "185349003"}]}],
    }
    codes = lumbar.types["Encounter"]["type"]
    pt["type"][1]["coding"][0]["code"] = sorted(codes)[0]
    assert lumbar.wants(pt)
    assert not lumbar.wants(office)


def test_a_code_matches_whatever_its_system():
    f = retrieve_filter(
        [
            elm(
                retrieve("Observation", {"type": "ToList", "operand": {"type": "CodeRef", "name": "X"}}),
                codes=[("X", "1234-5")],
            )
        ],
        [],
    )
    assert f.wants(observation("1234-5", system="urn:other"))


def test_a_choice_code_property_is_read_under_its_typed_name():
    f = retrieve_filter(
        [
            elm(
                retrieve("MedicationRequest", {"type": "ValueSetRef", "name": "Meds"}, prop="medication"),
                valuesets=[("Meds", "urn:vs")],
            )
        ],
        [
            {
                "resourceType": "ValueSet",
                "url": "urn:vs",
                "compose": {"include": [{"system": "urn:rx", "concept": [{"code": "42"}]}]},
            }
        ],
    )
    med = {
        "resourceType": "MedicationRequest",
        "id": "m",
        "medicationCodeableConcept": {"coding": [{"system": "urn:rx", "code": "42"}]},
    }
    assert f.wants(med)
    assert not f.wants({**med, "medicationCodeableConcept": {"coding": [{"code": "43"}]}})


def test_codes_that_cannot_be_read_statically_keep_the_whole_type():
    f = retrieve_filter([elm(retrieve("Observation", {"type": "ParameterRef", "name": "Codes"}))], [])
    assert f.types["Observation"] is ALL
    assert f.wants(observation("anything"))


def test_a_value_set_without_its_codes_keeps_the_whole_type():
    f = retrieve_filter(
        [elm(retrieve("Observation", {"type": "ValueSetRef", "name": "V"}), valuesets=[("V", "urn:vs")])],
        [
            {
                "resourceType": "ValueSet",
                "url": "urn:vs",
                "compose": {"include": [{"system": LOINC, "filter": [{"property": "x"}]}]},
            }
        ],
    )
    assert f.types["Observation"] is ALL


def test_one_unfiltered_retrieve_of_a_type_keeps_all_of_it():
    f = retrieve_filter(
        [
            elm(
                retrieve("Observation", {"type": "ToList", "operand": {"type": "CodeRef", "name": "X"}}),
                retrieve("Observation"),
                codes=[("X", "1")],
            )
        ],
        [],
    )
    assert f.wants(observation("2"))


def test_selection_keeps_the_original_order(lumbar):
    records = [
        observation("72166-2", rid="a"),
        observation("8867-4", rid="b"),
        {"resourceType": "Patient", "id": "p"},
        {"resourceType": "Condition", "id": "c"},
        observation("72166-2", rid="d"),
    ]
    assert [r["id"] for r in lumbar.select(records)] == ["a", "p", "c", "d"]


def test_malformed_code_elements_are_not_matches(lumbar):
    odd = {
        "resourceType": "Observation",
        "id": "x",
        "code": {"code": {"nested": "72166-2"}, "coding": [{"code": ["72166-2"]}, "72166-2"]},
    }
    assert not lumbar.wants(odd)
