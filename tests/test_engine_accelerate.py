"""The service's engine gives the published engine's results, define by define, on every fixture.

The service runs cql-execution with exact shortcuts (cds_hooks/engine/js/accelerate.mjs) and gives it
only the resources the library's retrieves can use, without the elements no ELM path reads
(cds_hooks/engine/retrieves.py). The reference is cql-execution as published (CDS_ENGINE_ACCELERATE=0) with
the whole record, report-text findings included. Every define of the library must come out the same;
a FHIR resource a define returns is compared without the elements the service left out.
"""

from __future__ import annotations

import pytest

from benchmarks.engine_ab import engine_calls
from cds_hooks.engine.bridge import CqlEngine
from cds_hooks.pipeline.registry import engine_payload
from cds_hooks.engine.retrieves import retrieve_filter

PACK, CALLS = engine_calls()


@pytest.fixture(scope="module")
def engines():
    libraries, valuesets = engine_payload({PACK.service_id: PACK})
    reference = CqlEngine(workers=1, timeout=60.0, accelerate=False)
    service = CqlEngine(workers=1, timeout=60.0)
    for engine in (reference, service):
        engine.load(libraries, valuesets)
    yield reference, service
    reference.close()
    service.close()


def test_the_reference_runs_without_shortcuts_and_the_service_with_them(engines):
    reference, service = engines
    assert reference.stats()["accelerated"] is False
    assert service.stats()["accelerated"] is True


@pytest.mark.parametrize("name,call", CALLS, ids=[name for name, _ in CALLS])
def test_every_define_matches_the_published_engine(engines, name, call):
    reference, service = engines
    lib = PACK.library
    expected = reference.evaluate(
        lib["id"], lib.get("version"), call["resources"], call["patient_id"], call["parameters"]
    )
    selection = retrieve_filter(PACK.elm, PACK.valuesets)
    kept = selection.select(call["resources"])
    actual = service.evaluate(
        lib["id"], lib.get("version"), service.encode_resources(kept), call["patient_id"], call["parameters"]
    )
    assert actual == selection.prune_within(expected)


def test_the_calls_include_the_report_text_findings():
    call = dict(CALLS)["seed"]
    assert any(r["id"].startswith("derived-") for r in call["resources"])


def test_unread_elements_are_left_out_and_read_ones_kept():
    selection = retrieve_filter(PACK.elm, PACK.valuesets)
    derived = next(r for r in dict(CALLS)["seed"]["resources"] if r["id"].startswith("derived-"))
    cut = selection.prune(derived)
    assert "note" in derived and "extension" in derived
    # `extension` is read (the core observation-bodyPosition extension of a flexion or extension view).
    assert "note" not in cut and cut["extension"] == derived["extension"]
    for kept in (
        "resourceType",
        "id",
        "status",
        "code",
        "valueCodeableConcept",
        "bodySite",
        "method",
        "effectiveDateTime",
        "component",
    ):
        assert cut[kept] == derived[kept]


def test_the_long_history_record_is_cut_to_what_the_retrieves_use():
    call = dict(CALLS)["long-history"]
    kept = retrieve_filter(PACK.elm, PACK.valuesets).select(call["resources"])
    assert len(call["resources"]) > 450
    assert len(kept) < len(call["resources"]) / 4
