"""Level normalisation: every way a record names a lumbar interspace."""
import pytest

from cds_hooks.spine.levels import INTERSPACE_SYSTEM, interspaces_in, interspaces_of_concept


@pytest.mark.parametrize("text", ["L5-S1", "L5/S1", "L5S1", "l5-s1", "L5 - S1", "lumbosacral", "Lumbosacral junction"])
def test_spellings_of_l5_s1_normalise_to_one_interspace(text):
    assert interspaces_in(text) == ["L5-S1"]


@pytest.mark.parametrize("text", ["L4-5", "L4/5", "L4–5", "L4-L5", "L4/L5", "L4 5"])
def test_spellings_of_l4_l5_normalise_to_one_interspace(text):
    assert interspaces_in(text) == ["L4-L5"]


def test_a_range_spans_every_interspace_in_it():
    assert interspaces_in("L4-S1") == ["L4-L5", "L5-S1"]
    assert interspaces_in("L3 to L5") == ["L3-L4", "L4-L5"]


def test_a_list_of_levels_names_each():
    assert interspaces_in("at L4-5 and L5-S1") == ["L4-L5", "L5-S1"]


def test_text_without_a_level_names_none():
    assert interspaces_in("T2 weighted images of the lumbar spine") == []
    assert interspaces_in(None) == []


def test_project_coding_wins_over_text():
    concept = {"coding": [{"system": INTERSPACE_SYSTEM, "code": "L4-L5"}], "text": "L5-S1"}
    assert interspaces_of_concept(concept) == ["L4-L5"]


def test_snomed_disc_structure_codes_name_their_interspace():
    assert interspaces_of_concept({"coding": [{"system": "http://snomed.info/sct", "code": "715056000"}]}) == ["L5-S1"]
