"""CompiledLibrary: load ELM once (translate + compile()), evaluate per patient record.

    lib = CompiledLibrary.load(elm_json, valuesets, includes=[fhirhelpers_elm])
    results = lib.evaluate(resources, {"ReferenceDate": "2024-05-01"}, patient_id="p1")

`resources` are plain FHIR JSON dicts (never copied or wrapped); `results` maps define name -> the value
serialised exactly as the reference engine's worker serialises it (engine_js/worker.mjs serialize()).
"""

from __future__ import annotations

import functools
import math
import re

from cds_hooks.engine.compiled import runtime as rt
from cds_hooks.engine.compiled.compiler import Compiler, UnsupportedElm, _spec, SYS

__all__ = ["CompiledLibrary", "UnsupportedElm", "ParameterError", "CqlError"]

CqlError = rt.CqlError


class ParameterError(ValueError):
    """A parameter value that does not fit its declared type (the worker's 'parameter' error)."""


# ------------------------------------------------------------------------------ helpers for generated code


def _g(o, k):
    if o is None:
        return None
    if type(o) is list:
        return None
    return o.get(k)


def _gp(o, k):
    """A FHIR primitive element: its JSON value, or ExtOnly when only `_k` (extensions) is there."""
    if o is None or type(o) is list:
        return None
    v = o.get(k)
    if v is None:
        e = o.get("_" + k)
        if e is not None:
            return rt.ExtOnly(e)
    return v


def _gpl(o, k):
    if o is None or type(o) is list:
        return None
    v = o.get(k)
    e = o.get("_" + k)
    if e is None:
        return v
    vs = list(v) if isinstance(v, list) else [v]
    es = list(e) if isinstance(e, list) else [e]
    while len(vs) < len(es):
        vs.append(None)
    return [
        x if x is not None else (rt.ExtOnly(y) if y is not None else None)
        for x, y in zip(vs, es + [None] * (len(vs) - len(es)))
    ]


def _pv(v):
    if v is None or type(v) is rt.ExtOnly:
        return None
    return v


def _prop_any(o, k):
    if o is None or type(o) is list:
        return None
    if isinstance(o, dict):
        return o.get(k)
    return getattr(o, k, None)


def _attr(o, k):
    if o is None:
        return None
    return getattr(o, k, None)


def _choice_first(o, keys):
    """The first choice element present (model-info order) and whether it is of the type asked for."""
    if o is None or type(o) is list:
        return None, False
    for key, ok in keys:
        v = o.get(key)
        if v is not None:
            return v, ok
        e = o.get("_" + key)
        if e is not None:
            return rt.ExtOnly(e), ok
    return None, False


def _choice_as(o, keys, prim):
    """`o.path as T` for a choice element: the first choice present decides."""
    v, ok = _choice_first(o, keys)
    return v if ok else None


def _choice_any(o, keys, prim):
    """The choice element present, whatever its type (the operand of a strict cast)."""
    return _choice_first(o, keys)[0]


def _strict_as(raw, cast, type_name):
    """`cast x as T` (strict As): null for null, the value when it is a T, an error otherwise."""
    if raw is None:
        return None
    if cast is None:
        raise CqlError(f"Cannot cast the value as {type_name}")
    return cast


def _message(source, condition, details):
    if _truthy(condition):
        details()
    return source


def _raise(message):
    raise CqlError(message)


def _in_vs_cc(cc, vs):
    """`FHIRHelpers.ToConcept(cc) in VS` straight over the codings."""
    if cc is None:
        return False
    coding = cc.get("coding") if type(cc) is dict else None
    if not coding:
        return False
    pairs = vs.pairs
    for c in coding:
        if type(c) is dict and (c.get("system"), c.get("code")) in pairs:
            return True
    return False


def _any_in_valueset(codes, vs):
    if codes is None:
        return False
    return any(rt.in_valueset(c, vs) for c in codes)


def _coalesce(*thunks):
    for t in thunks:
        v = t()
        if v is not None:
            return v
    return None


def _coalesce1(v):
    if type(v) is list:
        for x in v:
            if x is not None:
                return x
        return None
    return v


def _truthy(v):
    if v is None or v is False:
        return False
    if v is True:
        return True
    if type(v) in (int, float):
        return v != 0 and v == v
    if type(v) is str:
        return v != ""
    return True


def _eq_simple(a, b):
    if a is None or b is None:
        return None
    return a == b


def _as_system(v, name):
    if v is None:
        return None
    t = type(v)
    ok = {
        "String": t is str,
        "Boolean": t is bool,
        "Integer": t is int or (t is float and v.is_integer()),
        "Decimal": t in (int, float),
        "Date": t is rt.CDate,
        "DateTime": t is rt.CDateTime,
        "Quantity": t is rt.Quantity,
        "Code": t is rt.Code,
        "Concept": t is rt.Concept,
        "Any": True,
    }.get(name)
    if ok is None:
        raise CqlError(f"As System.{name} is not supported")
    return v if ok else None


def _is_system(v, name):
    return v is not None and _as_system(v, name) is not None


def _negate(v):
    if v is None:
        return None
    if type(v) is rt.Quantity:
        return rt.Quantity(-v.value, v.unit)
    return -v


def _distinct_or_null(v):
    return None if v is None else rt.distinct(v)


def _js_lt(a, b):
    """JavaScript `a < b` for sort keys (objects compare by their toString())."""
    if rt.is_num(a) and rt.is_num(b):
        return a < b
    if type(a) is str and type(b) is str:
        return a < b
    if isinstance(a, (rt.CDate, rt.CDateTime)) and isinstance(b, (rt.CDate, rt.CDateTime)):
        return str(a) < str(b)
    if a is None or b is None:
        return _js_number(a) < _js_number(b)  # null is 0, anything else its Number() (NaN is never less)
    if type(a) is bool or type(b) is bool:
        return float(a) < float(b) if rt.is_num(a) or rt.is_num(b) or (type(a) is bool and type(b) is bool) else False
    return rt.js_to_string(a) < rt.js_to_string(b)


def _js_number(v):
    """JavaScript Number(v) for the primitives a sort key can be (NaN for what is not a number)."""
    if v is None or v is False:
        return 0
    if v is True:
        return 1
    if rt.is_num(v):
        return v
    if type(v) is str:
        text = v.strip()
        if not text:
            return 0
        try:
            return float(text) if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text) else math.nan
        except ValueError:
            return math.nan
    return math.nan


def _sort_cmp(keys, a, b):
    for kind, path, direction in keys:
        lo = -1 if direction in ("asc", "ascending") else 1
        hi = -lo
        if kind == "dir":
            av, bv = a, b
            if _js_identical(av, bv):
                order = 0
            elif av is None:
                raise CqlError("Cannot read properties of null (reading 'isQuantity')")  # query.js ByDirection
            elif type(av) is rt.Quantity and type(bv) is rt.Quantity:
                order = lo if av.before(bv) else hi
            else:
                order = lo if _js_lt(av, bv) else hi
        else:
            av, bv = (path(a), path(b)) if kind == "expr" else (_prop_any(a, path), _prop_any(b, path))
            if _js_identical(av, bv) or (av is None and bv is None):
                order = 0
            elif av is None or bv is None:
                order = lo if av is None else hi
            elif type(av) is rt.Quantity and type(bv) is rt.Quantity:
                order = lo if av.before(bv) else hi
            else:
                order = lo if _js_lt(av, bv) else hi
        if order != 0:
            return order
    return 0


def _js_identical(a, b):
    """JavaScript ===: primitives by value, objects by identity (a CQL Date is always a fresh object)."""
    if type(a) in (str, int, float, bool) or a is None:
        return type(a) in (type(b),) and a == b if not (rt.is_num(a) and rt.is_num(b)) else a == b
    if isinstance(a, (rt.CDate, rt.CDateTime)):
        return False
    return a is b


def _merge_sort(arr, cmp):
    """util.asyncMergeSort, step for step (its comparator need not be consistent, so the algorithm matters)."""
    if len(arr) <= 1:
        return arr
    mid = len(arr) // 2
    left = _merge_sort(arr[:mid], cmp)
    right = _merge_sort(arr[mid:], cmp)
    out = []
    i = j = 0
    while i < len(left) and j < len(right):
        if cmp(left[i], right[j]) <= 0:
            out.append(left[i])
            i += 1
        else:
            out.append(right[j])
            j += 1
    out.extend(left[i:])
    out.extend(right[j:])
    return out


def _sort(values, keys):
    if type(values) is not list:
        return values
    return _merge_sort(values, functools.partial(_sort_cmp, keys))


HELPERS = {
    "_g": _g,
    "_gp": _gp,
    "_gpl": _gpl,
    "_pv": _pv,
    "_prop_any": _prop_any,
    "_attr": _attr,
    "_choice_as": _choice_as,
    "_in_vs_cc": _in_vs_cc,
    "_any_in_valueset": _any_in_valueset,
    "_in_valueset": rt.in_valueset,
    "_coalesce": _coalesce,
    "_coalesce1": _coalesce1,
    "_truthy": _truthy,
    "_eq_simple": _eq_simple,
    "_as_system": _as_system,
    "_is_system": _is_system,
    "_negate": _negate,
    "_distinct_or_null": _distinct_or_null,
    "_sort": _sort,
    "_fhir_datetime": rt.fhir_datetime,
    "_fhir_date": rt.fhir_date,
    "_Tup": rt.Tup,
    "_Quantity": rt.Quantity,
    "_Code": rt.Code,
    "_Concept": rt.Concept,
    "_Interval": rt.Interval,
    "_to_concept": rt.to_concept,
    "_equivalent": rt.equivalent,
    "_equals": rt.equals,
    "_and3": rt.and3,
    "_or3": rt.or3,
    "_not3": rt.not3,
    "_less": rt.less,
    "_greater": rt.greater,
    "_less_or_equal": rt.less_or_equal,
    "_greater_or_equal": rt.greater_or_equal,
    "_add": rt.add,
    "_subtract": rt.subtract,
    "_multiply": rt.multiply,
    "_divide": rt.divide,
    "_truncated_divide": rt.truncated_divide,
    "_to_decimal": rt.to_decimal,
    "_to_string": rt.to_string,
    "_to_list": rt.to_list,
    "_concat": rt.concat,
    "_combine": rt.combine,
    "_lower": rt.js_lower,
    "_upper": rt.js_upper,
    "_matches": rt.matches,
    "_replace_matches": rt.replace_matches,
    "_starts_with": rt.starts_with,
    "_ends_with": rt.ends_with,
    "_exists": rt.exists,
    "_union": rt.union,
    "_flatten": rt.flatten,
    "_distinct": rt.distinct,
    "_in_op": rt.in_op,
    "_contains_op": rt.contains_op,
    "_first": rt.first,
    "_last": rt.last,
    "_singleton_from": rt.singleton_from,
    "_count": rt.count,
    "_agg_sum": rt.agg_sum,
    "_agg_max": rt.agg_max,
    "_agg_min": rt.agg_min,
    "_expand": rt.expand_intervals,
    "_interval_start": rt.interval_start,
    "_interval_end": rt.interval_end,
    "_date_from": rt.date_from,
    "_duration_between": rt.duration_between,
    "_choice_any": _choice_any,
    "_strict_as": _strict_as,
    "_message": _message,
    "_raise": _raise,
    "_convert_quantity": rt.convert_quantity,
    "_to_quantity": rt.to_quantity,
    "_to_integer": rt.to_integer,
    "_to_date": rt.to_date,
    "_to_datetime": rt.to_datetime,
    "_datetime_new": rt.datetime_new,
    "_date_new": rt.date_new,
    "_component_from": rt.component_from,
    "_same_as": rt.same_as,
    "_same_or_before": rt.same_or_before,
    "_same_or_after": rt.same_or_after,
    "_before": rt.before,
    "_after": rt.after,
    "_overlaps": rt.overlaps,
    "_overlaps_before": rt.overlaps_before,
    "_overlaps_after": rt.overlaps_after,
    "_meets": rt.meets,
    "_meets_before": rt.meets_before,
    "_meets_after": rt.meets_after,
    "_includes": rt.includes,
    "_proper_includes": rt.proper_includes,
    "_width": rt.width,
    "_except": rt.list_except,
    "_intersect": rt.list_intersect,
    "_index_of": rt.index_of,
    "_indexer": rt.indexer,
    "_js_length": rt.js_length,
    "_split": rt.split,
    "_substring": rt.substring,
    "_position_of": rt.position_of,
    "_truncate": rt.truncate,
    "_floor": rt.floor_,
    "_ceiling": rt.ceiling,
    "_abs": rt.abs_,
    "_round": rt.round_,
    "_modulo": rt.modulo,
    "_as_spec": rt.as_spec,
}


# ------------------------------------------------------------------------------ evaluation context


class Context:
    __slots__ = ("cache", "params", "passed", "by_type", "now", "_codes")

    def __init__(self, by_type, params, now):
        self.cache = {}
        self.params = params
        self.passed = frozenset(params)  # the parameters given to this evaluation (before any default)
        self.by_type = by_type
        self.now = now
        self._codes = {}

    def of_type(self, rtype):
        return self.by_type.get(rtype, [])

    def retrieve_vs(self, rtype, prop, vs, key):
        hit = self._codes.get(key)
        if hit is None:
            pairs = vs.pairs
            hit = [r for r in self.by_type.get(rtype, ()) if _record_matches(r.get(prop), pairs)]
            self._codes[key] = hit
        return hit

    def retrieve_codes(self, rtype, prop, codes):
        if codes is None:
            return []
        pairs = frozenset((c.system, c.code) for c in codes)
        key = (rtype, prop, pairs)
        hit = self._codes.get(key)
        if hit is None:
            hit = self._codes[key] = [r for r in self.by_type.get(rtype, ()) if _record_matches(r.get(prop), pairs)]
        return hit


def _record_matches(value, pairs):
    for c in rt.fhir_code_of(value):
        if type(c) is rt.Code and (c.system, c.code) in pairs:
            return True
    return False


# ------------------------------------------------------------------------------ parameters

DATE_RE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


def _convert_param(value, spec, name):
    if value is None:
        return None

    def fail(what):
        raise ParameterError(f"parameter {name}: expected {what}, got {value!r}")

    kind = spec[0]
    if kind == "L":
        if not isinstance(value, list):
            fail("an array")
        return [_convert_param(v, spec[1], f"{name}[{i}]") for i, v in enumerate(value)]
    if kind == "I":
        if not isinstance(value, dict):
            fail("an interval")
        return rt.Interval(
            _convert_param(value.get("low"), spec[1], name),
            _convert_param(value.get("high"), spec[1], name),
            value.get("lowClosed", True),
            value.get("highClosed", True),
        )
    if kind == "T":
        if not isinstance(value, dict):
            fail("an object")
        return rt.Tup({el: _convert_param(value.get(el), t, f"{name}.{el}") for el, t in spec[1].items()})
    if kind != "N":
        raise ParameterError(f"parameter {name}: unsupported parameter type")
    t = spec[1]
    if t == SYS + "String":
        return value if isinstance(value, str) else fail("a string")
    if t == SYS + "Boolean":
        return value if isinstance(value, bool) else fail("a boolean")
    if t == SYS + "Integer":
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            fail("an integer")
        return int(value)
    if t == SYS + "Decimal":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail("a number")
        return value
    if t == SYS + "DateTime":
        d = rt.parse_datetime(value) if isinstance(value, str) else None
        return d if d is not None else fail("an ISO 8601 date-time string")
    if t == SYS + "Date":
        d = rt.parse_date(value) if isinstance(value, str) and DATE_RE.match(value) else None
        return d if d is not None else fail("an ISO 8601 date string (YYYY[-MM[-DD]])")
    if t == SYS + "Quantity":
        if not isinstance(value, dict) or not isinstance(value.get("value"), (int, float)):
            fail('{"value": number, "unit": string}')
        try:
            return rt.Quantity(value["value"], value.get("unit", "1"))
        except CqlError as exc:
            raise ParameterError(f"parameter {name}: {exc}") from None
    if t == SYS + "Code":
        if not isinstance(value, dict) or not isinstance(value.get("code"), str):
            fail('{"code", "system", ...}')
        return rt.Code(value["code"], value.get("system"), value.get("version"), value.get("display"))
    if t == SYS + "Concept":
        if not isinstance(value, dict) or not isinstance(value.get("codes"), list):
            fail('{"codes": [...], "display"}')
        return rt.Concept(
            [_convert_param(c, ("N", SYS + "Code"), f"{name}.codes[{i}]") for i, c in enumerate(value["codes"])],
            value.get("display"),
        )
    raise ParameterError(f"parameter {name}: unsupported parameter type {t}")


# ------------------------------------------------------------------------------ the library


class CompiledLibrary:
    def __init__(self, name, version, source, entry, namespace, param_defs, param_defaults, retrieve_types):
        self.name = name
        self.version = version
        self.source = source
        self.entry = entry  # define name -> python function name
        self.param_defs = param_defs
        self.param_defaults = param_defaults
        self.retrieve_types = retrieve_types
        self._ns = namespace
        self._fns = {n: namespace[f] for n, f in entry.items()}

    @classmethod
    def load(
        cls,
        elm: dict,
        valuesets: list[dict] | None = None,
        includes: list[dict] | None = None,
        expressions: list[str] | None = None,
    ) -> "CompiledLibrary":
        """Translate and compile; raises UnsupportedElm naming the construct for anything not supported."""
        comp = Compiler(elm, includes or [], valuesets or [])
        lib = elm["library"]
        param_defs = {}
        default_fns = {}
        from cds_hooks.engine.compiled.compiler import Scope

        for p in (lib.get("parameters") or {}).get("def", []):
            spec = (
                _spec(p.get("parameterTypeSpecifier"))
                or _spec(p.get("resultTypeSpecifier"))
                or (("N", p["resultTypeName"]) if p.get("resultTypeName") else None)
            )
            if spec is None and p.get("default") is not None:
                spec = _spec((p["default"] or {}).get("resultTypeSpecifier")) or (
                    ("N", p["default"]["resultTypeName"]) if p["default"].get("resultTypeName") else None
                )
            param_defs[p["name"]] = spec
            if p.get("default") is not None:
                comp.where = f"{lib['identifier']['id']} parameter {p['name']}"
                body: list[str] = []
                e = comp.expr(p["default"], comp.main, Scope(), body, 1)
                fname = comp.tmp("pdefault")
                comp.lines.append(f"def {fname}(ctx):")
                comp.lines.extend("    " + line for line in body)
                comp.lines.append(f"    return {e}")
                comp.lines.append("")
                default_fns[p["name"]] = fname
        src, entry = comp.compile(expressions)
        ns = dict(HELPERS)
        ns.update(comp.consts)
        code = compile(src, f"<cql {lib['identifier']['id']}>", "exec")
        exec(code, ns)
        defaults = {n: ns[f] for n, f in default_fns.items()}
        return cls(
            lib["identifier"]["id"],
            lib["identifier"].get("version"),
            src,
            entry,
            ns,
            param_defs,
            defaults,
            frozenset(comp.retrieve_types),
        )

    # -- evaluation
    def convert_parameters(self, parameters: dict | None) -> dict:
        out = {}
        for name, value in (parameters or {}).items():
            if name not in self.param_defs:
                raise ParameterError(f"unknown parameter {name!r} for library {self.name}")
            spec = self.param_defs[name]
            if spec is None:
                raise ParameterError(f"parameter {name}: cannot tell its type from the ELM")
            out[name] = _convert_param(value, spec, name)
        return out

    def context(
        self,
        resources: list[dict],
        parameters: dict | None,
        patient_id: str | None = None,
        execution_datetime: str | None = None,
    ) -> Context:
        by_type: dict[str, list] = {}
        patient = None
        for r in resources:
            t = r.get("resourceType") if isinstance(r, dict) else None
            if not isinstance(t, str):
                raise CqlError("every resource needs a resourceType")
            if t == "Patient" and (patient is None or (r.get("id") == patient_id and patient.get("id") != patient_id)):
                if patient is not None:
                    by_type.setdefault("Patient", []).append(patient)
                patient = r
                continue
            lst = by_type.get(t)
            if lst is None:
                by_type[t] = [r]
            else:
                lst.append(r)
        # the context patient first, as cql-exec-fhir takes the bundle's first Patient
        by_type["Patient"] = [
            patient if patient is not None else {"resourceType": "Patient", "id": patient_id}
        ] + by_type.get("Patient", [])
        params = self.convert_parameters(parameters)
        rt.JSON_KEYS.clear()
        now = rt.parse_datetime(execution_datetime) if execution_datetime else _now()
        ctx = Context(by_type, params, now)
        for name, fn in self.param_defaults.items():
            if name not in params:
                params[name] = fn(ctx)
        for name in self.param_defs:
            params.setdefault(name, None)
        return ctx

    def evaluate(
        self,
        resources: list[dict],
        parameters: dict | None = None,
        patient_id: str | None = None,
        expressions: list[str] | None = None,
        execution_datetime: str | None = None,
        serialize: bool = True,
    ) -> dict:
        ctx = self.context(resources, parameters, patient_id, execution_datetime)
        names = expressions if expressions is not None else list(self._fns)
        out = {}
        for n in names:
            fn = self._fns.get(n)
            if fn is None:
                raise KeyError(f"library {self.name} has no define {n!r}")
            v = fn(ctx)
            out[n] = rt.serialize(v) if serialize else v
        return out


def _now():
    import time as _t

    t = _t.time()
    lt = _t.localtime(t)
    return rt.CDateTime(lt.tm_year, lt.tm_mon, lt.tm_mday, lt.tm_hour, lt.tm_min, lt.tm_sec, int((t % 1) * 1000))
