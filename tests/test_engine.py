"""The CQL engine bridge, end to end: Python pool -> Node worker -> cql-execution, on tests/cql/EngineProbe.cql.

The probe's ELM is committed (tests/cql/elm/); tests/test_elm_fresh.py fails when it is stale.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from cds_hooks.engine.bridge import CqlEngine, EngineError, find_node

REPO = Path(__file__).resolve().parents[1]
FHIRHELPERS_ELM = REPO / "cql" / "common" / "elm" / "FHIRHelpers.json"
PROBE_ELM = REPO / "tests" / "cql" / "elm" / "EngineProbe.json"

ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
UCUM = "http://unitsofmeasure.org"
FINDING = "http://fusion-cds.example.org/fhir/CodeSystem/spine-finding"
INTERSPACE = "http://fusion-cds.example.org/fhir/CodeSystem/spinal-interspace"
STENOSIS_VS = "http://fusion-cds.example.org/fhir/ValueSet/probe-lumbar-stenosis"
ORDER = "2024-06-01T10:00:00Z"


def load_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def stenosis_valueset(expanded: bool = False) -> dict:
    codes = ["M48.061", "M48.062"]
    vs = {"resourceType": "ValueSet", "url": STENOSIS_VS, "version": "1.0.0", "status": "active"}
    if expanded:
        vs["expansion"] = {"timestamp": "2024-01-01", "contains": [{"system": ICD10, "code": c} for c in codes]}
    else:
        vs["compose"] = {"include": [{"system": ICD10, "concept": [{"code": c} for c in codes]}]}
    return vs


def condition(cid: str, code: str, onset: str, status: str | None = "active") -> dict:
    res = {
        "resourceType": "Condition",
        "id": cid,
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": ICD10, "code": code}]},
        "onsetDateTime": onset,
    }
    if status:
        res["clinicalStatus"] = {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": status}]
        }
    return res


def translation(oid: str, level: str, value: float, unit: str, comparator: str | None = None) -> dict:
    qty = {"value": value, "unit": unit, "system": UCUM, "code": unit}
    if comparator:
        qty["comparator"] = comparator
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": FINDING, "code": "segmental-translation"}]},
        "bodySite": {"coding": [{"system": INTERSPACE, "code": level}]},
        "valueQuantity": qty,
    }


def physical_therapy(pid: str, start: str, end: str | None) -> dict:
    period = {"start": start, **({"end": end} if end else {})}
    return {
        "resourceType": "Procedure",
        "id": pid,
        "status": "completed",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "91251008"}]},
        "performedPeriod": period,
    }


def record(n_filler: int = 37) -> list[dict]:
    """About 50 resources: the interesting ones plus unrelated blood pressure readings."""
    resources = [
        {"resourceType": "Patient", "id": "p1", "birthDate": "1960-01-01", "gender": "female"},
        condition("c1", "M48.062", "2024-01-15"),
        condition("c2", "M48.061", "2020-01-15", status=None),
        condition("c3", "M54.5", "2024-01-15"),  # not in the value set
        condition("c4", "M48.061", "2024-02-15", status="resolved"),
        translation("o0", "L4-L5", 5.0, "mm"),
        translation("o1", "L5-S1", 3.0, "mm"),
        translation("o2", "L3-L4", 0.5, "cm"),
        physical_therapy("pt1", "2024-01-01", "2024-03-01"),
        physical_therapy("pt2", "2024-05-01", None),  # ongoing
    ]
    for i in range(n_filler):
        resources.append(
            {
                "resourceType": "Observation",
                "id": f"bp{i}",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "valueQuantity": {"value": 120 + i, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"},
            }
        )
    return resources


PARAMS = {"Order DateTime": ORDER, "Requested Levels": ["L4-L5", "L5-S1"]}


@pytest.fixture(scope="module")
def libraries() -> list[dict]:
    return [load_json(FHIRHELPERS_ELM), load_json(PROBE_ELM)]


@pytest.fixture(scope="module")
def probe(libraries):
    with CqlEngine(workers=2, timeout=20.0) as engine:
        engine.load(libraries, [stenosis_valueset()])
        engine.start()
        yield engine


def run(engine: CqlEngine, expressions=None, resources=None, parameters=None, **kw) -> dict:
    return engine.evaluate(
        "EngineProbe",
        "1.0.0",
        record() if resources is None else resources,
        "p1",
        PARAMS if parameters is None else parameters,
        expressions,
        **kw,
    )


def test_ping_and_stats(probe):
    assert probe.ping() is True
    stats = probe.stats()
    assert stats["rss"] > 0 and stats["libraries"] == 2 and stats["valuesets"] == 1


def test_retrieve_by_value_set(probe):
    out = run(probe, ["Stenosis Ids", "Has Stenosis", "Stenosis Conditions"])
    # c3 is outside the value set, c4 is resolved; Resource.id comes back as a plain string
    assert sorted(out["Stenosis Ids"]) == ["c1", "c2"]
    assert out["Has Stenosis"] is True
    assert {r["resourceType"] for r in out["Stenosis Conditions"]} == {"Condition"}
    assert {r["id"] for r in out["Stenosis Conditions"]} == {"c1", "c2"}


def test_code_declaration_comparison(probe):
    resources = record()
    resources[1]["code"]["coding"][0]["display"] = "a display that differs from the CQL code's"
    out = run(probe, ["Stenosis By Code", "Stenosis By Code Equality"], resources=resources)
    assert out == {"Stenosis By Code": ["c1"], "Stenosis By Code Equality": []}


def test_value_set_from_expansion(libraries):
    with CqlEngine(workers=1, timeout=20.0) as engine:
        engine.load(libraries, [stenosis_valueset(expanded=True)])
        assert sorted(run(engine, ["Stenosis Ids"])["Stenosis Ids"]) == ["c1", "c2"]


def test_missing_value_set_is_an_error(libraries):
    with CqlEngine(workers=1, timeout=20.0) as engine:
        engine.load(libraries, [])
        with pytest.raises(EngineError) as err:
            run(engine, ["Stenosis Ids"])
        assert err.value.kind == "evaluation" and STENOSIS_VS in str(err.value)


def test_datetime_and_integer_parameters(probe):
    out = run(probe, ["Order DateTime Echo", "Recent Stenosis Ids"])
    assert out["Order DateTime Echo"] == "2024-06-01T10:00:00+00:00"
    assert out["Recent Stenosis Ids"] == ["c1"]
    earlier = run(probe, ["Recent Stenosis Ids"], parameters={**PARAMS, "Order DateTime": "2021-01-01T00:00:00Z"})
    assert earlier["Recent Stenosis Ids"] == ["c2"]
    wide = run(probe, ["Recent Stenosis Ids"], parameters={**PARAMS, "Lookback Months": 60})
    assert sorted(wide["Recent Stenosis Ids"]) == ["c1", "c2"]


def test_list_of_string_parameter(probe):
    out = run(probe, ["Requested Levels Echo", "Requests L5-S1"])
    assert out == {"Requested Levels Echo": ["L4-L5", "L5-S1"], "Requests L5-S1": True}
    out = run(probe, ["Requests L5-S1"], parameters={**PARAMS, "Requested Levels": ["L3-L4"]})
    assert out["Requests L5-S1"] is False


def test_tuple_list_result(probe):
    rows = run(probe, ["Finding Summary"])["Finding Summary"]
    assert [r["id"] for r in rows] == ["o0", "o1", "o2"]
    by_id = {r["id"]: r for r in rows}
    assert by_id["o0"] == {
        "id": "o0",
        "level": "L4-L5",
        "translation": {"value": 5, "unit": "mm"},
        "significant": True,
        "requested": True,
    }
    assert by_id["o1"]["significant"] is False and by_id["o1"]["requested"] is True
    # 0.5 cm is 5 mm: compared across units
    assert by_id["o2"]["translation"] == {"value": 0.5, "unit": "cm"} and by_id["o2"]["significant"] is True


def test_quantity_comparison_with_units(probe):
    base = [r for r in record() if r.get("id") not in {"o0", "o1", "o2"}]

    def significant(*obs, params=PARAMS):
        return run(probe, ["Significant Translation"], resources=base + list(obs), parameters=params)[
            "Significant Translation"
        ]

    assert significant(translation("a", "L4-L5", 4.5, "mm")) is True
    assert significant(translation("a", "L4-L5", 4.0, "mm")) is False  # "> 4 'mm'" is strict
    assert significant(translation("a", "L4-L5", 0.45, "cm")) is True
    assert significant(translation("a", "L4-L5", 0.3, "cm")) is False
    # a comparator makes the value a bound: "< 9 mm" must not count as 9 mm
    assert significant(translation("a", "L4-L5", 9.0, "mm", comparator="<")) is False
    # Quantity parameter: the summary's threshold follows "Min Translation"
    rows = run(probe, ["Finding Summary"], parameters={**PARAMS, "Min Translation": {"value": 6, "unit": "mm"}})
    assert not any(r["significant"] for r in rows["Finding Summary"])


def test_periods_and_intervals(probe):
    out = run(probe, ["PT Ongoing At Order", "PT Days", "PT Ended Within 6 Months Before Order", "PT Periods"])
    assert out["PT Ongoing At Order"] is True  # pt2 has no end: ongoing
    assert out["PT Days"] == 60
    assert out["PT Ended Within 6 Months Before Order"] is True
    assert {"start": "2024-05-01"} in out["PT Periods"]  # FHIR elements come back as their JSON
    late = run(
        probe,
        ["PT Ended Within 6 Months Before Order"],
        parameters={**PARAMS, "Order DateTime": "2025-06-01T00:00:00Z"},
    )
    assert late["PT Ended Within 6 Months Before Order"] is False


def test_now_is_the_execution_datetime(probe):
    out = run(probe, ["Execution Now"], execution_datetime="2024-06-01T12:30:00Z")
    assert out["Execution Now"] == "2024-06-01T12:30:00+00:00"


def test_string_functions(probe):
    rows = run(probe, ["Level Strings"])["Level Strings"]
    assert rows == [
        {"raw": "L4-L5", "startsWithL": True, "matchesLevel": True, "normalised": "L4-L5"},
        {"raw": "L5/S1", "startsWithL": True, "matchesLevel": False, "normalised": "L5-S1"},
        {"raw": "L45", "startsWithL": True, "matchesLevel": False, "normalised": "L45"},
    ]


def test_matches_anchoring_quirk(probe):
    # documents cql-execution 3.3.2 behaviour; if an upgrade fixes it, update the rule-pack guidance
    out = run(probe, ["Matches Needs Grouping"])
    assert out["Matches Needs Grouping"] == {"ungrouped": True, "grouped": False}


def test_all_defines_by_default_and_patient_added(probe):
    out = run(
        probe, resources=[r for r in record() if r["resourceType"] != "Patient" and r["id"] != "o0"], parameters=PARAMS
    )
    assert out["Patient"] == {"resourceType": "Patient", "id": "p1"}
    assert out["Slow"] == 0  # every define, including the ones nobody asked for by name
    assert out["Significant Translation"] is True  # o2 = 0.5 cm


def test_bad_parameters_are_evaluation_errors(probe):
    cases = [
        ({**PARAMS, "Order DateTime": "not a date"}, "parameter"),
        ({**PARAMS, "Requested Levels": "L4-L5"}, "parameter"),
        ({**PARAMS, "Lookback Months": 1.5}, "parameter"),
        ({**PARAMS, "Min Translation": {"value": 4, "unit": "furlongs per fortnight"}}, "parameter"),
        ({**PARAMS, "No Such Parameter": 1}, "parameter"),
    ]
    for params, error_type in cases:
        with pytest.raises(EngineError) as err:
            run(probe, ["Has Stenosis"], parameters=params)
        assert err.value.kind == "evaluation" and err.value.error_type == error_type, params
    with pytest.raises(EngineError) as err:
        probe.evaluate("NoSuchLibrary", None, [], "p1", {})
    assert err.value.kind == "evaluation" and err.value.error_type == "not_loaded"
    with pytest.raises(EngineError) as err:
        run(probe, ["No Such Define"])
    assert err.value.kind == "evaluation"
    assert run(probe, ["Has Stenosis"])["Has Stenosis"] is True  # the worker is still fine


def test_timeout_kills_worker_and_pool_recovers(libraries):
    with CqlEngine(workers=1, timeout=20.0) as engine:
        engine.load(libraries, [stenosis_valueset()])
        engine.start()
        before = engine.worker_pids()
        t0 = time.monotonic()
        with pytest.raises(EngineError) as err:
            run(engine, ["Slow"], parameters={**PARAMS, "Slow Size": 1000}, timeout=0.3)
        assert err.value.kind == "timeout"
        assert time.monotonic() - t0 < 3
        assert run(engine, ["Has Stenosis"])["Has Stenosis"] is True
        after = engine.worker_pids()
        assert after and set(after).isdisjoint(before)


def test_crashed_worker_recovers(libraries):
    with CqlEngine(workers=1, timeout=20.0) as engine:
        engine.load(libraries, [stenosis_valueset()])
        engine.start()
        # dies while idle: replaced transparently on next use
        (pid,) = engine.worker_pids()
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        assert run(engine, ["Has Stenosis"])["Has Stenosis"] is True
        # dies mid-evaluation: that call fails as "crashed", the next one works
        (pid,) = engine.worker_pids()
        errors: list[EngineError] = []

        def slow():
            try:
                run(engine, ["Slow"], parameters={**PARAMS, "Slow Size": 1000})
            except EngineError as exc:
                errors.append(exc)

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.5)
        os.kill(pid, signal.SIGKILL)
        t.join(10)
        assert [e.kind for e in errors] == ["crashed"]
        assert run(engine, ["Has Stenosis"])["Has Stenosis"] is True


def test_concurrent_callers_get_their_own_results(probe):
    results: dict[int, list] = {}
    failures: list[BaseException] = []

    def caller(n: int):
        try:
            got = []
            for k in range(4):
                mm = float(n * 10 + k)  # distinct per call
                obs = translation(f"o-{n}-{k}", "L4-L5", mm, "mm")
                out = run(
                    probe,
                    ["Finding Summary", "Requested Levels Echo"],
                    resources=[{"resourceType": "Patient", "id": f"p{n}"}, obs],
                    parameters={**PARAMS, "Requested Levels": [f"T{n}", f"K{k}"]},
                )
                got.append(
                    (
                        out["Finding Summary"][0]["id"],
                        out["Finding Summary"][0]["translation"]["value"],
                        out["Requested Levels Echo"],
                    )
                )
            results[n] = got
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures, failures
    for n in range(8):
        assert results[n] == [(f"o-{n}-{k}", n * 10 + k, [f"T{n}", f"K{k}"]) for k in range(4)]


def test_a_configured_node_that_is_not_node_is_refused(tmp_path):
    with pytest.raises(EngineError) as err:
        find_node(str(tmp_path / "no-such-node"))
    assert err.value.kind == "unavailable" and "CDS_NODE_EXECUTABLE" in str(err.value)


def test_closed_engine_is_unavailable(libraries):
    engine = CqlEngine(workers=1)
    engine.load(libraries, [])
    engine.close()
    with pytest.raises(EngineError) as err:
        run(engine, ["Has Stenosis"])
    assert err.value.kind == "unavailable"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_gets_its_own_workers(libraries):
    # gunicorn --preload: the engine object crosses a fork; the child must not use the parent's pipes
    with CqlEngine(workers=1, timeout=20.0) as engine:
        engine.load(libraries, [stenosis_valueset()])
        engine.start()
        parent_pids = engine.worker_pids()
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            try:
                ok = run(engine, ["Has Stenosis"])["Has Stenosis"] is True
                fresh = set(engine.worker_pids()).isdisjoint(parent_pids)
                engine.close()
                os.write(write_end, b"ok" if ok and fresh else b"bad")
            finally:
                os._exit(0)
        os.close(write_end)
        deadline = time.monotonic() + 30
        while os.waitpid(child, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(child, signal.SIGKILL)
                os.waitpid(child, 0)
                pytest.fail("forked child hung")
            time.sleep(0.05)
        assert os.read(read_end, 10) == b"ok"
        os.close(read_end)
        assert engine.worker_pids() == parent_pids
        assert run(engine, ["Has Stenosis"])["Has Stenosis"] is True
