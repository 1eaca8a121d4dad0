"""Level normalisation: every way a record names a lumbar interspace."""

import pytest

from cds_hooks.spine.levels import (
    INTERSPACE_SYSTEM,
    SNOMED,
    explicit_interspaces_in,
    interspaces_in,
    interspaces_of_concept,
    interspaces_of_sites,
    levels_span,
)


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


def vertebra(code, display):
    return {"coding": [{"system": SNOMED, "code": code, "display": display}], "text": display}


def test_two_snomed_vertebrae_name_the_interspace_between_them():
    sites = [vertebra("11994002", "L4 vertebra"), vertebra("49668003", "L5 vertebra")]
    assert interspaces_of_sites(sites) == ["L4-L5"]


def test_snomed_vertebrae_span_every_interspace_from_the_highest_to_the_lowest():
    sites = [vertebra("36470004", "L3 vertebra"), vertebra("49668003", "L5 vertebra")]
    assert interspaces_of_sites(sites) == ["L3-L4", "L4-L5"]


def test_one_snomed_vertebra_alone_names_no_interspace():
    assert interspaces_of_sites([vertebra("11994002", "L4 vertebra")]) == []


def test_sites_that_name_interspaces_themselves_still_count():
    assert interspaces_of_sites([{"text": "L4-5"}, {"text": "L5-S1"}]) == ["L4-L5", "L5-S1"]


def test_order_text_names_levels_by_vertebrae_only_never_by_region():
    assert explicit_interspaces_in("Lumbar interbody fusion L4-L5 (TLIF)") == ["L4-L5"]
    assert explicit_interspaces_in("Lumbosacral fusion") == []
    assert explicit_interspaces_in(None) == []


def test_contiguous_levels_are_written_as_one_span():
    assert levels_span(["L3-L4", "L4-L5", "L5-S1"]) == "L3-S1"
    assert levels_span(["L4-L5"]) == "L4-L5"
    assert levels_span(["L2-L3", "L4-L5"]) == "L2-L3, L4-L5"
    assert levels_span([]) == ""
