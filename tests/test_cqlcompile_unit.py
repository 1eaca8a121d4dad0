"""The compiled CQL evaluator: load-time failures, runtime semantics that mirror cql-execution."""

import pytest

from cds_hooks.engine.compiled import CompiledLibrary, UnsupportedElm
from cds_hooks.engine.compiled import runtime as rt
from tests.support.cql_judge import load_pack_files, strict_equal


def _lib(statements, params=None):
    return {
        "library": {
            "identifier": {"id": "T", "version": "1"},
            "parameters": {"def": params or []},
            "statements": {"def": statements},
        }
    }


def test_unsupported_construct_fails_at_load_naming_it():
    elm = _lib([{"name": "X", "context": "Patient", "expression": {"type": "Collapse", "operand": [{"type": "Null"}]}}])
    with pytest.raises(UnsupportedElm, match=r"Collapse in T\.X"):
        CompiledLibrary.load(elm)


def test_pack_libraries_compile():
    elm, inc, vs = load_pack_files()
    lib = CompiledLibrary.load(elm, vs, inc)
    assert "Criteria" in lib.entry


def test_js_number_strings():
    assert [rt.js_num_str(x) for x in (4.0, 1e21, 1e-7, 0.000001, 0.1 + 0.2, -0.5)] == [
        "4",
        "1e+21",
        "1e-7",
        "0.000001",
        "0.30000000000000004",
        "-0.5",
    ]


def test_dates_precision_and_uncertainty():
    d = rt.duration_between(rt.CDate(2024, 1), rt.CDate(2024, 3, 1), "Day")
    assert rt.serialize(d) == {"low": 30, "high": 60}
    assert rt.truncated_divide(d, 7) is None  # the reference divides an object: NaN -> null
    assert rt.less(rt.CDate(2024, 1), rt.CDate(2024, 1, 15)) is None
    assert str(rt.CDate(2024, 3, 31).add(-1, "month")) == "2024-02-29"
    assert rt.fhir_date("2024-02-30") is None


def test_units_unknown_is_an_error_never_assumed():
    with pytest.raises(rt.UnitError):
        rt.Quantity(1, "furlong")
    assert rt.convert_unit(10, "mm", "cm") == 1.0
    assert rt.convert_unit(1, "mm", "deg") is None


def test_js_regex_semantics():
    assert rt.matches("xxL5-S1", "L4-L5|L5-S1") is True  # anchored without a group, as the reference
    assert rt.matches("xxL5-S1", "(L4-L5|L5-S1)") is False
    assert rt.matches("a\n", "a") is False  # JS $ is the very end
    assert rt.replace_matches("a \u2028 b", "\\s+", " ") == "a b"


def test_strict_equal():
    assert strict_equal({"a": [1, 2.0]}, {"a": [1.0, 2]})
    assert not strict_equal(True, 1)
