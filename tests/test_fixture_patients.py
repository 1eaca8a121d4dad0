"""Every fixture patient gives the statuses documented in fhir_fixtures/patients/README.md."""

import pytest

from conftest import request_fixture
from support.hooks import call, statuses

EXPECTED = {
    "seed": (
        "warning",
        {
            "indication": "met",
            "imaging-severity@L5-S1": "not-met",
            "conservative-care": "not-met",
            "instability@L5-S1": "not-documented",
            "injection-trial": "met",
            "neuropathic-medication": "not-documented",
            "facet-evaluation": "not-documented",
            "nicotine": "not-documented",
            "red-flags": "not-documented",
        },
    ),
    "meets-all": (
        "info",
        {
            "indication": "met",
            "imaging-severity@L4-L5": "met",
            "conservative-care": "met",
            "instability@L4-L5": "met",
            "injection-trial": "met",
            "neuropathic-medication": "met",
            "facet-evaluation": "met",
            "nicotine": "met",
            "red-flags": "not-documented",
        },
    ),
    "no-imaging": (
        "warning",
        {
            "indication": "met",
            "imaging-severity@L4-L5": "not-documented",
            "conservative-care": "met",
            "instability@L4-L5": "not-documented",
            "injection-trial": "not-documented",
            "neuropathic-medication": "not-documented",
            "facet-evaluation": "not-documented",
            "nicotine": "met",
            "red-flags": "not-documented",
        },
    ),
    "red-flag": (
        "info",
        {
            "indication": "met",
            "imaging-severity@L5-S1": "met",
            "conservative-care": "waived",
            "instability@L5-S1": "met",
            "injection-trial": "not-documented",
            "neuropathic-medication": "not-documented",
            "facet-evaluation": "not-documented",
            "nicotine": "not-documented",
            "red-flags": "met",
        },
    ),
    "case-360": (
        "warning",
        {
            "indication": "met",
            "imaging-severity@L4-L5": "met",
            "imaging-severity@L5-S1": "met",
            "conservative-care": "met",
            "instability@L4-L5": "not-met",
            "instability@L5-S1": "met",
            "injection-trial": "not-documented",
            "neuropathic-medication": "met",
            "facet-evaluation": "not-documented",
            "nicotine": "met",
            "red-flags": "not-documented",
        },
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_patient_gives_documented_statuses_with_prefetch(client, name):
    body = call(client, request_fixture(name))
    assert len(body["cards"]) == 1
    indicator, expected = EXPECTED[name]
    assert statuses(body["cards"][0]) == expected
    assert body["cards"][0]["indicator"] == indicator


def test_non_fusion_order_gets_no_cards(client):
    assert call(client, request_fixture("non-fusion")) == {"cards": []}
