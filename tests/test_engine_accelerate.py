"""The service's engine gives the published engine's results, define by define, on every fixture.

The service runs cql-execution with exact shortcuts (cds_hooks/engine_js/accelerate.mjs) and gives it
only the resources the library's retrieves can use (cds_hooks/retrieves.py). The reference is
cql-execution as published (CDS_ENGINE_ACCELERATE=0) with the whole record. Every define of the
library, FHIR resources included, must come out the same.
"""
from __future__ import annotations

import pytest

from benchmarks.engine_ab import engine_calls
from cds_hooks.engine import CqlEngine
from cds_hooks.registry import engine_payload
from cds_hooks.retrieves import retrieve_filter

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
    expected = reference.evaluate(lib["id"], lib.get("version"), call["resources"], call["patient_id"],
                                  call["parameters"])
    kept = retrieve_filter(PACK.elm, PACK.valuesets).select(call["resources"])
    actual = service.evaluate(lib["id"], lib.get("version"), service.encode_resources(kept), call["patient_id"],
                              call["parameters"])
    assert actual == expected


def test_the_long_history_record_is_cut_to_what_the_retrieves_use():
    call = dict(CALLS)["long-history"]
    kept = retrieve_filter(PACK.elm, PACK.valuesets).select(call["resources"])
    assert len(call["resources"]) > 450
    assert len(kept) < len(call["resources"]) / 4
