"""Level normalisation: every way a record names a spinal interspace, and the regions they belong to."""

import pytest

from cds_hooks.spine.levels import (
    INTERSPACE_SYSTEM,
    SNOMED,
    explicit_interspaces_in,
    interspaces_in,
    interspaces_of_concept,
    interspaces_of_sites,
    levels_span,
    region,
    region_of_interspace,
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


@pytest.mark.parametrize("text", ["C5-6", "C5/C6", "C5-C6", "c5-c6", "C5 - C6", "C5C6"])
def test_spellings_of_a_cervical_interspace_normalise_as_lumbar_ones_do(text):
    assert interspaces_in(text) == ["C5-C6"]


def test_a_cervical_range_spans_every_interspace_in_it_down_to_the_cervicothoracic_one():
    assert interspaces_in("C5-C7") == ["C5-C6", "C6-C7"]
    assert interspaces_in("C6 to T1") == ["C6-C7", "C7-T1"]
    assert levels_span(["C5-C6", "C6-C7"]) == "C5-C7"


def test_c1_c2_has_no_disc_and_is_no_interspace():
    assert interspaces_in("C1-C2") == []
    assert interspaces_in("C1-C3") == ["C2-C3"]


def test_each_region_names_its_own_interspaces_and_no_level_lies_in_two():
    assert region("cervical").interspaces == ("C2-C3", "C3-C4", "C4-C5", "C5-C6", "C6-C7", "C7-T1")
    assert region("lumbar").interspaces == ("T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")
    assert region_of_interspace("C7-T1") == "cervical" and region_of_interspace("T12-L1") == "lumbar"
    assert region("cervical").split(["C5-C6", "L4-L5"]) == (["C5-C6"], ["L4-L5"])


def test_an_unknown_region_names_the_known_ones():
    with pytest.raises(ValueError, match="'sacral-tail'.*cervical, lumbar"):
        region("sacral-tail")


def test_snomed_cervical_disc_and_vertebra_codes_name_cervical_interspaces():
    assert interspaces_of_concept({"coding": [{"system": SNOMED, "code": "73959003"}]}) == ["C5-C6"]
    c5, c7 = ({"coding": [{"system": SNOMED, "code": code}]} for code in ("36978003", "87391001"))
    assert interspaces_of_sites([c5, c7]) == ["C5-C6", "C6-C7"]


def test_cervicothoracic_names_c7_t1_at_a_body_site_and_no_level_in_an_order_text():
    assert interspaces_in("cervicothoracic junction") == ["C7-T1"]
    assert explicit_interspaces_in("cervicothoracic fusion") == []
