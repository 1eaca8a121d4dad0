"""The compiled evaluator on tests/cql/CompilerProbe.cql, the CQL constructs beyond the rule packs' present
use (unit conversion, conversions and constructors, date/time components and comparisons, interval
relations, list and string operators, sorting by expression, strict casts, Message): every define, under
the reference engine (cql-execution as published) and the compiled evaluator, on generated patients,
compared with zero tolerance. The "Error:" defines must fail in both engines, each on its own.
"""

import json
import os

import pytest

from cds_hooks.engine.compiled import CompiledLibrary, UnsupportedElm
from conftest import REPO
from tests.support.cql_judge import Case, Judge, load_pack_files
from tests.support.cql_patients import generate_cases

PROBE = json.loads((REPO / "tests" / "cql" / "elm" / "CompilerProbe.json").read_text(encoding="utf-8"))
DEFINES = [d["name"] for d in PROBE["library"]["statements"]["def"] if d.get("type") != "FunctionDef"]
ERRORS = [n for n in DEFINES if n.startswith("Error:")]
PATIENTS = int(os.environ.get("CQLCOMPARE_PROBE_PATIENTS", "400"))


def _includes():
    return load_pack_files()[1]


def _cases(count, seed):
    return [Case(c.name, c.resources, {}, c.patient_id) for c in generate_cases(count, seed)]


def _failures(report):
    return report.summary() + "".join(
        f"\n{c} {n}\n  reference: {json.dumps(a)[:400]}\n  compiled:  {json.dumps(b)[:400]}"
        for c, n, a, b in report.disagreements[:5]
    )


@pytest.fixture(scope="module")
def includes():
    return _includes()


def test_every_probe_define_agrees_with_the_reference_on_generated_patients(includes):
    judge = Judge(PROBE, includes, [], workers=2, expressions=[n for n in DEFINES if n not in ERRORS])
    try:
        report = judge.compare(_cases(PATIENTS, seed=3))
    finally:
        judge.close()
    assert report.defines > PATIENTS * 20 and report.errors_both < PATIENTS // 20, report.summary()
    assert not report.disagreements, _failures(report)


@pytest.mark.parametrize("define", ERRORS)
def test_an_operation_the_reference_refuses_fails_in_the_compiled_evaluator_too(includes, define):
    judge = Judge(PROBE, includes, [], workers=1, expressions=[define])
    try:
        report = judge.compare(_cases(40, seed=5))
    finally:
        judge.close()
    assert report.errors_both > 0 and not report.disagreements, _failures(report)


def test_a_conversion_to_a_unit_outside_the_table_fails_at_load_naming_it(includes):
    elm = json.loads(json.dumps(PROBE))
    convert = {
        "type": "ConvertQuantity",
        "operand": [
            {"type": "Quantity", "value": 5, "unit": "mm"},
            {"type": "Literal", "valueType": "{urn:hl7-org:elm-types:r1}String", "value": "[mi_i]"},
        ],
    }
    elm["library"]["statements"]["def"].append({"name": "Miles", "context": "Patient", "expression": convert})
    with pytest.raises(UnsupportedElm, match=r"ConvertQuantity to unit '\[mi_i\]'.*CompilerProbe\.Miles"):
        CompiledLibrary.load(elm, [], includes)


def test_interval_set_operations_fail_at_load_naming_them(includes):
    elm = json.loads(json.dumps(PROBE))
    ivl = {
        "type": "Interval",
        "low": {"type": "Literal", "valueType": "{urn:hl7-org:elm-types:r1}Integer", "value": "1"},
        "high": {"type": "Literal", "valueType": "{urn:hl7-org:elm-types:r1}Integer", "value": "5"},
        "resultTypeSpecifier": {
            "type": "IntervalTypeSpecifier",
            "pointType": {"type": "NamedTypeSpecifier", "name": "{urn:hl7-org:elm-types:r1}Integer"},
        },
    }
    elm["library"]["statements"]["def"].append(
        {"name": "Cut", "context": "Patient", "expression": {"type": "Except", "operand": [ivl, ivl]}}
    )
    with pytest.raises(UnsupportedElm, match=r"Except of intervals in CompilerProbe\.Cut"):
        CompiledLibrary.load(elm, [], includes)
