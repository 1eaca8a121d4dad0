"""ELM (JSON) -> Python source, compiled once per library with compile().

Each define becomes a function of the evaluation context that caches its value; each CQL function a Python
function; each query a nested function with one loop. Values are plain FHIR JSON plus the System types of
runtime.py. Everything the compiler does not know fails here, at load, with the node type and where it is
(UnsupportedElm), never at call time.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from cds_hooks.engine.compiled import runtime as rt

SYS = rt.SYSTEM
FHIR = rt.FHIR_NS
MODEL = json.loads((Path(__file__).with_name("fhir_r4_model.json")).read_text())
PRIMITIVES = set(MODEL["primitives"])


class UnsupportedElm(Exception):
    """An ELM construct the compiled evaluator does not support (raised at load time)."""


def _short(name: str | None) -> str | None:
    if name is None:
        return None
    return name.split("}", 1)[1] if name.startswith("{") else name


def fhir_subtypes(name: str) -> set[str]:
    """`name` and every FHIR type deriving from it (short names)."""
    out = {name}
    changed = True
    while changed:
        changed = False
        for t, b in MODEL["base"].items():
            if b in out and t not in out:
                out.add(t)
                changed = True
    return out


def type_spec(node: dict):
    """The static type of an ELM node from its result type annotations: ('N', qname) / ('L', t) /
    ('I', t) / ('T', {...}) / ('C', [t...]) / None."""
    if node is None:
        return None
    spec = node.get("resultTypeSpecifier")
    if spec is not None:
        return _spec(spec)
    name = node.get("resultTypeName")
    if name:
        return ("N", name)
    return None


def _spec(spec):
    if spec is None:
        return None
    if isinstance(spec, str):
        return ("N", spec)
    t = spec.get("type")
    if t == "NamedTypeSpecifier":
        return ("N", spec["name"])
    if t == "ListTypeSpecifier":
        return ("L", _spec(spec.get("elementType")))
    if t == "IntervalTypeSpecifier":
        return ("I", _spec(spec.get("pointType")))
    if t == "ChoiceTypeSpecifier":
        return ("C", [_spec(c) for c in spec.get("choice") or spec.get("type") or []])
    if t == "TupleTypeSpecifier":
        return ("T", {e["name"]: _spec(e.get("elementType") or e.get("type")) for e in spec.get("element", [])})
    return None


def _ident(prefix: str, name: str, n: int) -> str:
    base = re.sub(r"\W", "_", name)[:40]
    return f"{prefix}{n}_{base}"


class Scope:
    """Names visible to an expression: aliases, lets, operands (CQL name -> (python name, static type))."""

    def __init__(self, parent=None):
        self.parent = parent
        self.names: dict[str, tuple[str, object]] = {}

    def get(self, name):
        s = self
        while s is not None:
            if name in s.names:
                return s.names[name]
            s = s.parent
        return None


class LibraryUnit:
    def __init__(self, elm: dict, key: str):
        self.elm = elm
        self.lib = elm["library"]
        self.key = key
        self.name = self.lib["identifier"]["id"]
        self.defs = {
            d["name"]: d for d in (self.lib.get("statements") or {}).get("def", []) if d.get("type") != "FunctionDef"
        }
        self.funcs: dict[str, list[dict]] = {}
        for d in (self.lib.get("statements") or {}).get("def", []):
            if d.get("type") == "FunctionDef":
                self.funcs.setdefault(d["name"], []).append(d)
        self.params = {p["name"]: p for p in (self.lib.get("parameters") or {}).get("def", [])}
        self.codesystems = {c["name"]: c for c in (self.lib.get("codeSystems") or {}).get("def", [])}
        self.valuesets = {v["name"]: v for v in (self.lib.get("valueSets") or {}).get("def", [])}
        self.codes = {c["name"]: c for c in (self.lib.get("codes") or {}).get("def", [])}
        self.concepts = {c["name"]: c for c in (self.lib.get("concepts") or {}).get("def", [])}
        self.includes = {i["localIdentifier"]: i for i in (self.lib.get("includes") or {}).get("def", [])}


class Compiler:
    def __init__(self, main: dict, includes: list[dict], valuesets: list[dict]):
        self.units: dict[str, LibraryUnit] = {}
        self.main = self._unit(main)
        for inc in includes:
            self._unit(inc)
        self.valueset_json = valuesets
        self.lines: list[str] = []
        self.consts: dict[str, object] = {}
        self.n = 0
        self.def_names: dict[tuple, str] = {}
        self.func_names: dict[int, str] = {}
        self.pending: list[tuple] = []
        self.emitted: set = set()
        self.retrieve_types: set[str] = set()
        self.where = ""

    def _unit(self, elm):
        ident = elm["library"]["identifier"]
        key = f"{ident['id']}|{ident.get('version') or ''}"
        u = LibraryUnit(elm, key)
        self.units[key] = u
        self.units.setdefault(ident["id"], u)
        return u

    def include(self, unit: LibraryUnit, local: str) -> LibraryUnit:
        inc = unit.includes.get(local)
        if inc is None:
            raise UnsupportedElm(f"{unit.name}: unknown library {local!r}")
        u = self.units.get(f"{inc['path']}|{inc.get('version') or ''}") or self.units.get(inc["path"])
        if u is None:
            raise UnsupportedElm(f"{unit.name}: included library {inc['path']} {inc.get('version')} is not loaded")
        return u

    def fail(self, node, what=None):
        t = node.get("type") if isinstance(node, dict) else type(node).__name__
        loc = node.get("locator") or node.get("localId") if isinstance(node, dict) else None
        raise UnsupportedElm(f"unsupported ELM {what or t} in {self.where}" + (f" at {loc}" if loc else ""))

    def const(self, value, hint="k"):
        self.n += 1
        name = f"_{hint}{self.n}"
        self.consts[name] = value
        return name

    def tmp(self, hint="t"):
        self.n += 1
        return f"_{hint}{self.n}"

    # ------------------------------------------------------------------ top level

    def compile(self, names: list[str] | None = None):
        unit = self.main
        targets = names if names is not None else list(unit.defs)
        entry = {}
        for name in targets:
            entry[name] = self.def_ref(unit, name)
        while self.pending:
            kind, *args = self.pending.pop()
            if kind == "def":
                self.emit_def(*args)
            else:
                self.emit_func(*args)
        src = "\n".join(self.lines)
        return src, entry

    def def_ref(self, unit: LibraryUnit, name: str) -> str:
        key = (unit.key, name)
        if key not in self.def_names:
            if name not in unit.defs:
                raise UnsupportedElm(f"{unit.name}: no define {name!r}")
            self.n += 1
            self.def_names[key] = _ident("d", name, self.n)
            self.pending.append(("def", unit, name))
        return self.def_names[key]

    def emit_def(self, unit, name):
        d = unit.defs[name]
        fname = self.def_names[(unit.key, name)]
        self.where = f"{unit.name}.{name}"
        if d.get("context") not in (None, "Patient", "Unfiltered"):
            self.fail(d, f"context {d.get('context')}")
        body: list[str] = []
        expr = self.expr(d["expression"], unit, Scope(), body, 2)
        self.lines.append(f"def {fname}(ctx):")
        self.lines.append("    c = ctx.cache")
        self.lines.append(f"    v = c.get({fname!r}, c)")
        self.lines.append("    if v is not c:")
        self.lines.append("        return v")
        self.lines.extend("    " + line for line in body)
        self.lines.append(f"    v = c[{fname!r}] = {expr}")
        self.lines.append("    return v")
        self.lines.append("")

    def func_ref(self, unit: LibraryUnit, node: dict) -> tuple[str, dict, LibraryUnit]:
        target = self.include(unit, node["libraryName"]) if node.get("libraryName") else unit
        cands = target.funcs.get(node["name"], [])
        if not cands:
            self.fail(node, f"FunctionRef to unknown function {node['name']!r}")
        if len(cands) > 1:
            sig = node.get("signature")
            if not sig:
                self.fail(node, f"FunctionRef {node['name']!r} without signature among {len(cands)} overloads")
            want = [_spec(s) for s in sig]
            match = [
                c
                for c in cands
                if [_spec(o.get("operandTypeSpecifier") or o.get("operandType")) for o in c.get("operand", [])] == want
            ]
            if len(match) != 1:
                self.fail(node, f"FunctionRef {node['name']!r}: {len(match)} overloads match its signature")
            fd = match[0]
        else:
            fd = cands[0]
        if fd.get("external"):
            self.fail(node, f"external function {node['name']!r}")
        key = id(fd)
        if key not in self.func_names:
            self.n += 1
            self.func_names[key] = _ident("f", fd["name"], self.n)
            self.pending.append(("func", target, fd))
        return self.func_names[key], fd, target

    def emit_func(self, unit, fd):
        fname = self.func_names[id(fd)]
        self.where = f"{unit.name}.{fd['name']}()"
        scope = Scope()
        params = []
        for i, o in enumerate(fd.get("operand", [])):
            pn = f"p{i}_{re.sub(chr(92) + 'W', '_', o['name'])[:20]}"
            scope.names[o["name"]] = (pn, _spec(o.get("operandTypeSpecifier") or o.get("operandType")))
            params.append(pn)
        body: list[str] = []
        expr = self.expr(fd["expression"], unit, scope, body, 1)
        self.lines.append(f"def {fname}(ctx{''.join(', ' + p for p in params)}):")
        self.lines.extend("    " + line for line in body)
        self.lines.append(f"    return {expr}")
        self.lines.append("")

    # ------------------------------------------------------------------ types

    def static_type(self, node, unit, scope):
        t = type_spec(node)
        if t is not None:
            return t
        k = node.get("type")
        if k in ("AliasRef", "QueryLetRef", "OperandRef"):
            e = scope.get(node["name"])
            return e[1] if e else None
        if k == "ExpressionRef":
            u = self.include(unit, node["libraryName"]) if node.get("libraryName") else unit
            d = u.defs.get(node["name"])
            return self.static_type(d["expression"], u, Scope()) if d else None
        if k == "FunctionRef":
            try:
                _, fd, _ = self.func_ref(unit, node)
            except UnsupportedElm:
                return None
            return _spec(fd.get("resultTypeSpecifier")) or (
                ("N", fd["resultTypeName"]) if fd.get("resultTypeName") else None
            )
        if k == "As":
            return _spec(node.get("asTypeSpecifier")) or ("N", node["asType"])
        if k == "Retrieve":
            return ("L", ("N", node["dataType"]))
        if k == "Query" and len(node["source"]) == 1 and not node.get("return") and not node.get("aggregate"):
            return self.static_type(node["source"][0]["expression"], unit, scope)
        return None

    # ------------------------------------------------------------------ expressions

    def expr(self, node, unit, scope, pre, depth) -> str:
        if node is None:
            return "None"
        k = node.get("type")
        m = getattr(self, "x_" + str(k), None)
        if m is None:
            self.fail(node)
        return m(node, unit, scope, pre, depth)

    def args(self, node, unit, scope, pre, depth):
        ops = node.get("operand")
        if isinstance(ops, dict):
            ops = [ops]
        return [self.expr(o, unit, scope, pre, depth) for o in ops or []]

    def arg1(self, node, unit, scope, pre, depth):
        op = node.get("operand")
        if isinstance(op, list):
            op = op[0]
        return self.expr(op, unit, scope, pre, depth)

    # -- literals and references
    def x_Literal(self, node, *_):
        vt, v = node.get("valueType"), node.get("value")
        if vt == SYS + "Boolean":
            return "True" if v == "true" else "False"
        if vt == SYS + "Integer":
            return repr(int(v))
        if vt == SYS + "Decimal":
            return repr(float(v))
        if vt == SYS + "String":
            return repr(v)
        self.fail(node, f"Literal of type {vt}")

    def x_Null(self, node, *_):
        return "None"

    def x_ExpressionRef(self, node, unit, scope, pre, depth):
        u = self.include(unit, node["libraryName"]) if node.get("libraryName") else unit
        return f"{self.def_ref(u, node['name'])}(ctx)"

    def x_ParameterRef(self, node, unit, scope, pre, depth):
        u = self.include(unit, node["libraryName"]) if node.get("libraryName") else unit
        if node["name"] not in u.params:
            self.fail(node, f"ParameterRef to unknown parameter {node['name']!r}")
        if u is not self.main:
            return f"{self.included_param_ref(u, node['name'])}(ctx)"
        return f"ctx.params[{node['name']!r}]"

    def included_param_ref(self, unit: LibraryUnit, name: str) -> str:
        """A parameter of an included library: the value passed in under its name (the evaluation's
        parameters reach every library, runtime/context.js), else that library's own default."""
        key = (unit.key, "\0param", name)
        if key not in self.def_names:
            self.n += 1
            fname = self.def_names[key] = _ident("p", name, self.n)
            where, self.where = self.where, f"{unit.name} parameter {name}"
            default = unit.params[name].get("default")
            body: list[str] = []
            expr = self.expr(default, unit, Scope(), body, 2) if default is not None else "None"
            self.where = where
            self.lines.append(f"def {fname}(ctx):")
            self.lines.append(f"    if {name!r} in ctx.passed:")
            self.lines.append(f"        return ctx.params[{name!r}]")
            self.lines.append("    c = ctx.cache")
            self.lines.append(f"    v = c.get({fname!r}, c)")
            self.lines.append("    if v is not c:")
            self.lines.append("        return v")
            self.lines.extend("    " + line for line in body)
            self.lines.append(f"    v = c[{fname!r}] = {expr}")
            self.lines.append("    return v")
            self.lines.append("")
        return self.def_names[key]

    def x_OperandRef(self, node, unit, scope, pre, depth):
        e = scope.get(node["name"])
        if e is None:
            self.fail(node, f"OperandRef to unknown operand {node['name']!r}")
        return e[0]

    x_AliasRef = x_OperandRef
    x_QueryLetRef = x_OperandRef

    def x_IdentifierRef(self, node, unit, scope, pre, depth):
        e = scope.get(node["name"])
        if e is None:
            self.fail(node, f"IdentifierRef {node['name']!r}")
        return e[0]

    def x_FunctionRef(self, node, unit, scope, pre, depth):
        fname, fd, target = self.func_ref(unit, node)
        ops = node.get("operand") or []
        # Inline FHIRHelpers-style accessors: `define function F(x FHIR.prim): x.value`.
        body = fd["expression"]
        if (
            len(ops) == 1
            and body.get("type") == "Property"
            and body.get("path") == "value"
            and body.get("source", {}).get("type") == "OperandRef"
        ):
            ot = _spec(fd["operand"][0].get("operandTypeSpecifier") or fd["operand"][0].get("operandType"))
            if ot and ot[0] == "N" and _short(ot[1]) in PRIMITIVES:
                inner = self.expr(ops[0], unit, scope, pre, depth)
                return self.prim_value(_short(ot[1]), inner, node)
        args = [self.expr(o, unit, scope, pre, depth) for o in ops]
        return f"{fname}(ctx{''.join(', ' + a for a in args)})"

    def prim_value(self, prim: str, raw: str, node) -> str:
        vt = MODEL["primitiveValue"].get(prim)
        if vt == "System.DateTime":
            return f"_fhir_datetime({raw})"
        if vt == "System.Date":
            return f"_fhir_date({raw})"
        if vt in ("System.String", "System.Boolean", "System.Integer", "System.Decimal"):
            return f"_pv({raw})"
        self.fail(node, f"value of FHIR {prim} ({vt})")

    # -- terminology
    def x_ValueSetRef(self, node, unit, scope, pre, depth):
        u = self.include(unit, node["libraryName"]) if node.get("libraryName") else unit
        vd = u.valuesets.get(node["name"])
        if vd is None:
            self.fail(node, f"ValueSetRef to unknown value set {node['name']!r}")
        if vd.get("codeSystem"):
            self.fail(node, "value set declared with code systems")
        return self.const(self.valueset(vd["id"], vd.get("version")), "vs")

    def valueset(self, url, version):
        found = [v for v in self.valueset_json if v.get("url") == url]
        if version is not None:
            found = [v for v in found if v.get("version") == version] or [v for v in found if v.get("version") is None]
        elif len(found) > 1:
            found = sorted(found, key=lambda v: v.get("version") or "")[-1:]
        if not found:
            raise UnsupportedElm(f"{self.where}: value set {url} is not loaded")
        vs = found[0]
        codes = []

        def contains(items):
            for c in items or []:
                if c.get("code") is not None and not c.get("abstract"):
                    codes.append(rt.Code(c["code"], c.get("system"), c.get("version"), c.get("display")))
                contains(c.get("contains"))

        if isinstance((vs.get("expansion") or {}).get("contains"), list):
            contains(vs["expansion"]["contains"])
        else:
            for inc in (vs.get("compose") or {}).get("include", []):
                if inc.get("valueSet") or inc.get("filter"):
                    raise UnsupportedElm(f"ValueSet {url}: compose.include with valueSet/filter needs an expansion")
                for c in inc.get("concept", []):
                    codes.append(rt.Code(c["code"], inc.get("system"), inc.get("version"), c.get("display")))
        return rt.ValueSet(url, vs.get("version"), codes)

    def code_value(self, unit, name, node):
        cd = unit.codes.get(name)
        if cd is None:
            self.fail(node, f"CodeRef to unknown code {name!r}")
        cs = unit.codesystems.get(cd["codeSystem"]["name"])
        if cs is None:
            self.fail(node, f"code system {cd['codeSystem']['name']!r}")
        return rt.Code(cd["id"], cs["id"], cs.get("version"), cd.get("display"))

    def x_CodeRef(self, node, unit, scope, pre, depth):
        u = self.include(unit, node["libraryName"]) if node.get("libraryName") else unit
        return self.const(self.code_value(u, node["name"], node), "code")

    def x_Code(self, node, unit, scope, pre, depth):
        cs = unit.codesystems.get(node["system"]["name"]) if node.get("system") else None
        return self.const(
            rt.Code(node["code"], cs["id"] if cs else None, node.get("version"), node.get("display")), "code"
        )

    def x_ConceptRef(self, node, unit, scope, pre, depth):
        cd = unit.concepts.get(node["name"])
        if cd is None:
            self.fail(node)
        codes = [self.code_value(unit, c["name"], node) for c in cd.get("code", [])]
        return self.const(rt.Concept(codes, cd.get("display")), "concept")

    def x_InValueSet(self, node, unit, scope, pre, depth):
        if not node.get("valueset"):
            self.fail(node, "InValueSet with a valueset expression")
        vs = self.x_ValueSetRef(node["valueset"], unit, scope, pre, depth)
        code = node["code"]
        if (
            code.get("type") == "FunctionRef"
            and code.get("libraryName")
            and code["name"] == "ToConcept"
            and self._is_fhirhelpers_toconcept(unit, code)
        ):
            inner = self.expr(code["operand"][0], unit, scope, pre, depth)
            return f"_in_vs_cc({inner}, {vs})"
        return f"_in_valueset({self.expr(code, unit, scope, pre, depth)}, {vs})"

    def _is_fhirhelpers_toconcept(self, unit, code):
        _, fd, _ = self.func_ref(unit, code)
        # The FHIRHelpers shape: if concept is null then null else Concept { codes: coding C return ToCode(C), display: text.value }
        e = fd["expression"]
        return (
            e.get("type") == "If"
            and e["else"].get("type") == "Instance"
            and e["else"].get("classType") == SYS + "Concept"
        )

    def x_AnyInValueSet(self, node, unit, scope, pre, depth):
        if not node.get("valueset"):
            self.fail(node, "AnyInValueSet with a valueset expression")
        vs = self.x_ValueSetRef(node["valueset"], unit, scope, pre, depth)
        return f"_any_in_valueset({self.expr(node['codes'], unit, scope, pre, depth)}, {vs})"

    def x_ToConcept(self, node, unit, scope, pre, depth):
        return f"_to_concept({self.arg1(node, unit, scope, pre, depth)})"

    def x_Equivalent(self, node, unit, scope, pre, depth):
        a, b = self.args(node, unit, scope, pre, depth)
        return f"_equivalent({a}, {b})"

    # -- retrieve
    def x_Retrieve(self, node, unit, scope, pre, depth):
        dt = node["dataType"]
        if not dt.startswith(FHIR):
            self.fail(node, f"Retrieve of {dt}")
        rtype = _short(dt)
        for k in ("dateRange", "dateProperty", "context", "includedIn"):
            if node.get(k):
                self.fail(node, f"Retrieve with {k}")
        for k in ("codeFilter", "dateFilter", "otherFilter", "include"):
            if node.get(k):
                self.fail(node, f"Retrieve with {k}")
        if node.get("templateId") and node["templateId"] != f"http://hl7.org/fhir/StructureDefinition/{rtype}":
            self.fail(node, f"Retrieve of profile {node['templateId']}")
        self.retrieve_types.add(rtype)
        if not node.get("codes"):
            return f"ctx.of_type({rtype!r})"
        prop = node.get("codeProperty")
        if not prop or prop in MODEL["choices"].get(rtype, {}):
            self.fail(node, f"Retrieve code filter on {prop!r}")
        codes = node["codes"]
        if codes.get("type") == "ValueSetRef":
            vs = self.x_ValueSetRef(codes, unit, scope, pre, depth)
            key = self.const(None, "rk")
            return f"ctx.retrieve_vs({rtype!r}, {prop!r}, {vs}, {key!r})"
        cl = self.expr(codes, unit, scope, pre, depth)
        return f"ctx.retrieve_codes({rtype!r}, {prop!r}, {cl})"

    # -- structure
    def x_Property(self, node, unit, scope, pre, depth):
        path = node["path"]
        if "." in path:
            self.fail(node, f"Property with a dotted path {path!r}")
        if node.get("scope"):
            e = scope.get(node["scope"])
            if e is None:
                self.fail(node, f"Property scope {node['scope']!r}")
            src, stype = e
        else:
            src_node = node["source"]
            stype = self.static_type(src_node, unit, scope)
            # value of a FHIR primitive element: fuse with the element access
            if (
                path == "value"
                and stype
                and stype[0] == "N"
                and _short(stype[1]) in PRIMITIVES
                and stype[1].startswith(FHIR)
            ):
                if src_node.get("type") == "Property" and not self._is_choice(src_node, unit, scope):
                    inner = self._fhir_element_raw(src_node, unit, scope, pre, depth)
                    return self.prim_value(_short(stype[1]), inner, node)
                return self.prim_value(_short(stype[1]), self.expr(src_node, unit, scope, pre, depth), node)
            src = self.expr(src_node, unit, scope, pre, depth)
        return self._property_on(src, stype, path, node)

    def _is_choice(self, pnode, unit, scope):
        t = type_spec(pnode)
        return t is not None and t[0] == "C"

    def _fhir_element_raw(self, pnode, unit, scope, pre, depth):
        """A Property node over a FHIR object, as raw JSON (no ExtOnly): for `.value` right after it."""
        path = pnode["path"]
        if pnode.get("scope"):
            src, stype = scope.get(pnode["scope"])
        else:
            stype = self.static_type(pnode["source"], unit, scope)
            src = self.expr(pnode["source"], unit, scope, pre, depth)
        if not (stype and stype[0] == "N" and stype[1].startswith(FHIR)):
            self.fail(pnode, f"Property {path!r} on an object of unknown type")
        return f"_g({src}, {path!r})"

    def _property_on(self, src, stype, path, node):
        if stype is None:
            return f"_prop_any({src}, {path!r})"
        if stype[0] == "L":
            return "None"  # cql-execution: a property of a list is undefined
        if stype[0] == "T":
            return f"_g({src}, {path!r})"
        if stype[0] == "N":
            name = stype[1]
            if name.startswith(FHIR):
                cls = _short(name)
                if cls in PRIMITIVES:
                    self.fail(node, f"Property {path!r} of FHIR primitive {cls}")
                if path in self._choices_of(cls):
                    self.fail(node, f"choice-typed Property {cls}.{path} used other than through 'as'")
                rtype = type_spec(node)
                if rtype and rtype[0] == "N" and _short(rtype[1]) in PRIMITIVES:
                    return f"_gp({src}, {path!r})"
                if rtype and rtype[0] == "L" and rtype[1] and rtype[1][0] == "N" and _short(rtype[1][1]) in PRIMITIVES:
                    return f"_gpl({src}, {path!r})"
                return f"_g({src}, {path!r})"
            if name in (SYS + "Quantity", SYS + "Code", SYS + "Concept", SYS + "Interval") or name.startswith(SYS):
                attr = {"lowClosed": "low_closed", "highClosed": "high_closed"}.get(path, path)
                return f"_attr({src}, {attr!r})"
        if stype[0] == "I":
            attr = {"lowClosed": "low_closed", "highClosed": "high_closed"}.get(path, path)
            return f"_attr({src}, {attr!r})"
        return f"_prop_any({src}, {path!r})"

    def _choices_of(self, cls):
        out = {}
        c = cls
        while c:
            for k, v in MODEL["choices"].get(c, {}).items():
                out.setdefault(k, v)
            c = MODEL["base"].get(c)
        return out

    def x_As(self, node, unit, scope, pre, depth):
        target = _spec(node.get("asTypeSpecifier")) or ("N", node["asType"])
        op = node["operand"]
        strict = bool(node.get("strict"))
        # choice element cast: pick the element the reference engine picks (model-info order)
        if op.get("type") == "Property" and self._is_choice(op, unit, scope) and target[0] == "N":
            cast = self._choice_as(op, target[1], unit, scope, pre, depth)
            if not strict:
                return cast
            raw = cast.replace("_choice_as(", "_choice_any(", 1)
            return f"_strict_as({raw}, {cast}, {self._type_name(target)!r})"
        inner = self.expr(op, unit, scope, pre, depth)
        if strict:
            v = self.tmp("cast")
            pre.append(f"def {v}_f({v}):")
            pre.append(f"    return {self._as_nonstrict(node, target, op, v, unit, scope)}")
            return f"(lambda {v}: _strict_as({v}, {v}_f({v}), {self._type_name(target)!r}))({inner})"
        return self._as_nonstrict(node, target, op, inner, unit, scope)

    @staticmethod
    def _type_name(target):
        return _short(target[1]) if target[0] == "N" else str(target)

    def _as_nonstrict(self, node, target, op, inner, unit, scope):
        st = self.static_type(op, unit, scope)
        if st == target or op.get("type") == "Null":
            return inner
        if target[0] == "L" and op.get("type") in ("List", "Query"):
            return inner
        if target[0] == "N" and target[1].startswith(SYS):
            return f"_as_system({inner}, {_short(target[1])!r})"
        if target[0] == "N" and st and st[0] == "N" and st[1].startswith(FHIR) and target[1].startswith(FHIR):
            if _short(st[1]) in fhir_subtypes(_short(target[1])):
                return inner
        if target[0] in ("L", "T", "I", "C") and self._system_only(target):
            return f"_as_spec({inner}, {self.const(target, 'spec')})"
        self.fail(node, f"{'strict ' if node.get('strict') else ''}As {target} on {st}")

    def _system_only(self, spec) -> bool:
        """A type made of System types only (its runtime check mirrors the reference exactly)."""
        if spec is None:
            return False
        kind = spec[0]
        if kind == "N":
            return spec[1].startswith(SYS)
        if kind in ("L", "I"):
            return self._system_only(spec[1])
        if kind == "T":
            return all(self._system_only(t) for t in spec[1].values())
        if kind == "C":
            return all(self._system_only(t) for t in spec[1])
        return False

    def _choice_as(self, pnode, target, unit, scope, pre, depth):
        path = pnode["path"]
        if pnode.get("scope"):
            src, stype = scope.get(pnode["scope"])
        else:
            stype = self.static_type(pnode["source"], unit, scope)
            src = self.expr(pnode["source"], unit, scope, pre, depth)
        if not (stype and stype[0] == "N" and stype[1].startswith(FHIR)):
            self.fail(pnode, "choice Property on an object of unknown type")
        order = self._choices_of(_short(stype[1])).get(path)
        if not order:
            self.fail(pnode, f"choice {path!r} of {stype[1]} not in the model")
        if not target.startswith(FHIR):
            self.fail(pnode, f"As {target} of a FHIR choice")
        ok = fhir_subtypes(_short(target))
        keys = tuple((path + t[0].upper() + t[1:], t in ok) for t in order)
        prim = _short(target) in PRIMITIVES
        kc = self.const(keys, "ch")
        return f"_choice_as({src}, {kc}, {prim!r})"

    def x_Is(self, node, unit, scope, pre, depth):
        target = _spec(node.get("isTypeSpecifier")) or ("N", node["isType"])
        op = node["operand"]
        if op.get("type") == "Property" and self._is_choice(op, unit, scope) and target[0] == "N":
            return f"({self._choice_as(op, target[1], unit, scope, pre, depth)} is not None)"
        if target[0] == "N" and target[1].startswith(SYS):
            return f"_is_system({self.expr(op, unit, scope, pre, depth)}, {_short(target[1])!r})"
        self.fail(node, f"Is {target}")

    def x_Tuple(self, node, unit, scope, pre, depth):
        parts = [
            f"{e['name']!r}: {self.expr(e.get('value'), unit, scope, pre, depth)}" for e in node.get("element", [])
        ]
        return "_Tup({" + ", ".join(parts) + "})"

    def x_Instance(self, node, unit, scope, pre, depth):
        ct = node["classType"]
        els = {e["name"]: self.expr(e.get("value"), unit, scope, pre, depth) for e in node.get("element", [])}
        if ct == SYS + "Quantity":
            return f"_Quantity({els.get('value', 'None')}, {els.get('unit', 'None')})"
        if ct == SYS + "Code":
            return f"_Code({els.get('code', 'None')}, {els.get('system', 'None')}, {els.get('version', 'None')}, {els.get('display', 'None')})"
        if ct == SYS + "Concept":
            return f"_Concept({els.get('codes', 'None')}, {els.get('display', 'None')})"
        self.fail(node, f"Instance of {ct}")

    def x_Quantity(self, node, *_):
        return self.const(rt.Quantity(node["value"], node.get("unit")), "q")

    def x_List(self, node, unit, scope, pre, depth):
        return "[" + ", ".join(self.expr(e, unit, scope, pre, depth) for e in node.get("element", [])) + "]"

    def x_Interval(self, node, unit, scope, pre, depth):
        for k in ("lowClosedExpression", "highClosedExpression"):
            if node.get(k):
                self.fail(node, k)
        lo = self.expr(node.get("low"), unit, scope, pre, depth)
        hi = self.expr(node.get("high"), unit, scope, pre, depth)
        # The point type of an interval with two null bounds comes from a cast of either bound
        # (elm/interval.js Interval: defaultPointType), and decides its closed bounds.
        default = None
        for bound in (node.get("low"), node.get("high")):
            if isinstance(bound, dict) and bound.get("type") == "As":
                spec = bound.get("asTypeSpecifier") or {"type": "NamedTypeSpecifier", "name": bound.get("asType")}
                if spec.get("type") == "NamedTypeSpecifier":
                    default = _short(spec["name"]) if spec["name"].startswith(SYS) else spec["name"]
                    break
        extra = f", {default!r}" if default else ""
        return f"_Interval({lo}, {hi}, {node.get('lowClosed', True)!r}, {node.get('highClosed', True)!r}{extra})"

    # -- logic / nulls / conditionals
    def x_And(self, node, unit, scope, pre, depth):
        a, b = self.args(node, unit, scope, pre, depth)
        return f"_and3({a}, {b})"

    def x_Or(self, node, unit, scope, pre, depth):
        a, b = self.args(node, unit, scope, pre, depth)
        return f"_or3({a}, {b})"

    def x_Not(self, node, unit, scope, pre, depth):
        return f"_not3({self.arg1(node, unit, scope, pre, depth)})"

    def x_IsNull(self, node, unit, scope, pre, depth):
        op = node.get("operand")
        if isinstance(op, dict) and op.get("type") == "Literal":
            return "False"  # a literal is never null (and `5 is None` would be a SyntaxWarning)
        return f"({self.arg1(node, unit, scope, pre, depth)} is None)"

    def x_IsTrue(self, node, unit, scope, pre, depth):
        return f"({self.arg1(node, unit, scope, pre, depth)} is True)"

    def x_IsFalse(self, node, unit, scope, pre, depth):
        return f"({self.arg1(node, unit, scope, pre, depth)} is False)"

    def x_Coalesce(self, node, unit, scope, pre, depth):
        ops = node.get("operand") or []
        args = [self.expr(o, unit, scope, pre, depth) for o in ops]
        if len(args) == 1:
            return f"_coalesce1({args[0]})"
        lam = ", ".join(f"lambda: {a}" for a in args)
        return f"_coalesce({lam})"

    def x_If(self, node, unit, scope, pre, depth):
        c = self.expr(node["condition"], unit, scope, pre, depth)
        t = self.expr(node["then"], unit, scope, pre, depth)
        e = self.expr(node["else"], unit, scope, pre, depth)
        return f"(({t}) if _truthy({c}) else ({e}))"

    def x_Case(self, node, unit, scope, pre, depth):
        out = self.expr(node.get("else"), unit, scope, pre, depth)
        items = node.get("caseItem", [])
        if node.get("comparand"):
            cv = self.tmp("cmp")
            comp = self.expr(node["comparand"], unit, scope, pre, depth)
            for ci in reversed(items):
                w = self.expr(ci["when"], unit, scope, pre, depth)
                t = self.expr(ci["then"], unit, scope, pre, depth)
                out = f"(({t}) if _equals({w}, {cv}) else {out})"
            return f"(lambda {cv}: {out})({comp})"
        for ci in reversed(items):
            w = self.expr(ci["when"], unit, scope, pre, depth)
            t = self.expr(ci["then"], unit, scope, pre, depth)
            out = f"(({t}) if _truthy({w}) else {out})"
        return out

    # -- comparison
    def _bin(self, fn):
        def f(node, unit, scope, pre, depth):
            if node.get("precision"):
                a, b = self.args(node, unit, scope, pre, depth)
                return f"{fn}({a}, {b}, {node['precision'].lower()!r})"
            a, b = self.args(node, unit, scope, pre, depth)
            return f"{fn}({a}, {b})"

        return f

    def x_Equal(self, node, unit, scope, pre, depth):
        a, b = self.args(node, unit, scope, pre, depth)
        ta = self.static_type(node["operand"][0], unit, scope)
        tb = self.static_type(node["operand"][1], unit, scope)
        if ta == tb and ta in (("N", SYS + "String"), ("N", SYS + "Integer"), ("N", SYS + "Boolean")):
            return f"_eq_simple({a}, {b})"
        return f"_equals({a}, {b})"

    def x_NotEqual(self, node, unit, scope, pre, depth):
        a, b = self.args(node, unit, scope, pre, depth)
        return f"_not3(_equals({a}, {b}))"

    def x_Less(self, *a):
        return self._bin("_less")(*a)

    def x_Greater(self, *a):
        return self._bin("_greater")(*a)

    def x_LessOrEqual(self, *a):
        return self._bin("_less_or_equal")(*a)

    def x_GreaterOrEqual(self, *a):
        return self._bin("_greater_or_equal")(*a)

    # -- arithmetic
    def x_Add(self, *a):
        return self._bin("_add")(*a)

    def x_Subtract(self, *a):
        return self._bin("_subtract")(*a)

    def x_Multiply(self, *a):
        return self._bin("_multiply")(*a)

    def x_Divide(self, *a):
        return self._bin("_divide")(*a)

    def x_TruncatedDivide(self, *a):
        return self._bin("_truncated_divide")(*a)

    def x_Negate(self, node, unit, scope, pre, depth):
        return f"_negate({self.arg1(node, unit, scope, pre, depth)})"

    def x_Truncate(self, node, unit, scope, pre, depth):
        return f"_truncate({self.arg1(node, unit, scope, pre, depth)})"

    def x_Floor(self, node, unit, scope, pre, depth):
        return f"_floor({self.arg1(node, unit, scope, pre, depth)})"

    def x_Ceiling(self, node, unit, scope, pre, depth):
        return f"_ceiling({self.arg1(node, unit, scope, pre, depth)})"

    def x_Abs(self, node, unit, scope, pre, depth):
        return f"_abs({self.arg1(node, unit, scope, pre, depth)})"

    def x_Round(self, node, unit, scope, pre, depth):
        places = self.expr(node["precision"], unit, scope, pre, depth) if node.get("precision") else "None"
        return f"_round({self.arg1(node, unit, scope, pre, depth)}, {places})"

    def x_Modulo(self, *a):
        return self._bin("_modulo")(*a)

    def x_ToDecimal(self, node, unit, scope, pre, depth):
        return f"_to_decimal({self.arg1(node, unit, scope, pre, depth)})"

    def x_ToString(self, node, unit, scope, pre, depth):
        return f"_to_string({self.arg1(node, unit, scope, pre, depth)})"

    def x_ToList(self, node, unit, scope, pre, depth):
        return f"_to_list({self.arg1(node, unit, scope, pre, depth)})"

    # -- strings
    def x_Concatenate(self, node, unit, scope, pre, depth):
        return f"_concat({', '.join(self.args(node, unit, scope, pre, depth))})"

    def x_Combine(self, node, unit, scope, pre, depth):
        src = self.expr(node["source"], unit, scope, pre, depth)
        sep = self.expr(node.get("separator"), unit, scope, pre, depth)
        return f"_combine({src}, {sep})"

    def x_Lower(self, node, unit, scope, pre, depth):
        return f"_lower({self.arg1(node, unit, scope, pre, depth)})"

    def x_Upper(self, node, unit, scope, pre, depth):
        return f"_upper({self.arg1(node, unit, scope, pre, depth)})"

    def x_Matches(self, node, unit, scope, pre, depth):
        self._check_literal_regex(node["operand"][1], True)
        a, b = self.args(node, unit, scope, pre, depth)
        return f"_matches({a}, {b})"

    def x_ReplaceMatches(self, node, unit, scope, pre, depth):
        self._check_literal_regex(node["operand"][1], False)
        a, b, c = self.args(node, unit, scope, pre, depth)
        return f"_replace_matches({a}, {b}, {c})"

    def _check_literal_regex(self, pnode, anchored):
        if pnode.get("type") == "Literal":
            try:
                rt.js_regex(("^" + pnode["value"] + "$") if anchored else pnode["value"], False)
            except (rt.CqlError, re.error) as exc:
                raise UnsupportedElm(f"{self.where}: regular expression {pnode['value']!r}: {exc}") from None

    def x_StartsWith(self, node, unit, scope, pre, depth):
        a, b = self.args(node, unit, scope, pre, depth)
        return f"_starts_with({a}, {b})"

    def x_EndsWith(self, node, unit, scope, pre, depth):
        a, b = self.args(node, unit, scope, pre, depth)
        return f"_ends_with({a}, {b})"

    # -- lists
    def x_Exists(self, node, unit, scope, pre, depth):
        return f"_exists({self.arg1(node, unit, scope, pre, depth)})"

    def x_Union(self, node, unit, scope, pre, depth):
        ops = node["operand"]
        a, b = self.args(node, unit, scope, pre, depth)
        both_list = any(
            o.get("type") == "As" and (o.get("asTypeSpecifier") or {}).get("type") == "ListTypeSpecifier" for o in ops
        )
        return f"_union({a}, {b}, {both_list!r})"

    def x_Flatten(self, node, unit, scope, pre, depth):
        return f"_flatten({self.arg1(node, unit, scope, pre, depth)})"

    def x_Distinct(self, node, unit, scope, pre, depth):
        return f"_distinct_or_null({self.arg1(node, unit, scope, pre, depth)})"

    def x_In(self, node, unit, scope, pre, depth):
        a, b = self.args(node, unit, scope, pre, depth)
        p = node.get("precision")
        return f"_in_op({a}, {b}{', ' + repr(p.lower()) if p else ''})"

    def x_Contains(self, node, unit, scope, pre, depth):
        a, b = self.args(node, unit, scope, pre, depth)
        p = node.get("precision")
        return f"_contains_op({a}, {b}{', ' + repr(p.lower()) if p else ''})"

    def x_First(self, node, unit, scope, pre, depth):
        return f"_first({self.expr(node['source'], unit, scope, pre, depth)})"

    def x_Last(self, node, unit, scope, pre, depth):
        return f"_last({self.expr(node['source'], unit, scope, pre, depth)})"

    def x_SingletonFrom(self, node, unit, scope, pre, depth):
        return f"_singleton_from({self.arg1(node, unit, scope, pre, depth)})"

    def x_Count(self, node, unit, scope, pre, depth):
        return f"_count({self.expr(node['source'], unit, scope, pre, depth)})"

    def x_Sum(self, node, unit, scope, pre, depth):
        return f"_agg_sum({self.expr(node['source'], unit, scope, pre, depth)})"

    def x_Max(self, node, unit, scope, pre, depth):
        return f"_agg_max({self.expr(node['source'], unit, scope, pre, depth)})"

    def x_Min(self, node, unit, scope, pre, depth):
        return f"_agg_min({self.expr(node['source'], unit, scope, pre, depth)})"

    def x_Expand(self, node, unit, scope, pre, depth):
        a, b = self.args(node, unit, scope, pre, depth)
        return f"_expand({a}, {b})"

    # -- intervals and date/times
    def x_Start(self, node, unit, scope, pre, depth):
        return f"_interval_start({self.arg1(node, unit, scope, pre, depth)})"

    def x_End(self, node, unit, scope, pre, depth):
        return f"_interval_end({self.arg1(node, unit, scope, pre, depth)})"

    def x_DateFrom(self, node, unit, scope, pre, depth):
        return f"_date_from({self.arg1(node, unit, scope, pre, depth)})"

    def x_DurationBetween(self, node, unit, scope, pre, depth):
        a, b = self.args(node, unit, scope, pre, depth)
        return f"_duration_between({a}, {b}, {node['precision']!r})"

    def x_Now(self, node, unit, scope, pre, depth):
        return "ctx.now"

    def x_Today(self, node, unit, scope, pre, depth):
        return "ctx.now.get_date()"

    # -- conversions (cql-execution elm/type.js)
    def x_ConvertQuantity(self, node, unit, scope, pre, depth):
        target = node["operand"][1]
        if target.get("type") == "Literal" and rt._fix_unit(target.get("value")) not in rt._UNITS:
            self.fail(
                node, f"ConvertQuantity to unit {target.get('value')!r} (not in the compiled evaluator's UCUM table)"
            )
        a, b = self.args(node, unit, scope, pre, depth)
        return f"_convert_quantity({a}, {b})"

    def x_ToQuantity(self, node, unit, scope, pre, depth):
        return f"_to_quantity({self.arg1(node, unit, scope, pre, depth)})"

    def x_ToInteger(self, node, unit, scope, pre, depth):
        return f"_to_integer({self.arg1(node, unit, scope, pre, depth)})"

    def x_ToDate(self, node, unit, scope, pre, depth):
        return f"_to_date({self.arg1(node, unit, scope, pre, depth)})"

    def x_ToDateTime(self, node, unit, scope, pre, depth):
        return f"_to_datetime({self.arg1(node, unit, scope, pre, depth)}, ctx.now)"

    def x_DateTime(self, node, unit, scope, pre, depth):
        fields = ("year", "month", "day", "hour", "minute", "second", "millisecond", "timezoneOffset")
        args = [
            f"{'tz' if f == 'timezoneOffset' else f}={self.expr(node[f], unit, scope, pre, depth)}"
            for f in fields
            if node.get(f) is not None
        ]
        return f"_datetime_new(ctx.now{''.join(', ' + a for a in args)})"

    def x_Date(self, node, unit, scope, pre, depth):
        args = [
            f"{f}={self.expr(node[f], unit, scope, pre, depth)}"
            for f in ("year", "month", "day")
            if node.get(f) is not None
        ]
        return f"_date_new({', '.join(args)})"

    def x_DateTimeComponentFrom(self, node, unit, scope, pre, depth):
        return f"_component_from({self.arg1(node, unit, scope, pre, depth)}, {node['precision'].lower()!r})"

    # -- date/time and interval relations (elm/overloaded.js, datatypes/interval.js)
    def _relation(self, fn, node, unit, scope, pre, depth, swap=False, points_only=False):
        if points_only:
            for o in node["operand"]:
                t = self.static_type(o, unit, scope)
                if t is not None and t[0] in ("I", "L"):
                    self.fail(node, f"{node['type']} of intervals or lists")
        a, b = self.args(node, unit, scope, pre, depth)
        if swap:
            a, b = b, a
        p = node.get("precision")
        return f"{fn}({a}, {b}{', ' + repr(p.lower()) if p else ''})"

    def x_Width(self, node, unit, scope, pre, depth):
        return f"_width({self.arg1(node, unit, scope, pre, depth)})"

    # -- lists
    def _list_set_op(self, fn, node, unit, scope, pre, depth):
        t = self.static_type(node["operand"][0], unit, scope)
        if t is None or t[0] != "L":
            self.fail(node, f"{node['type']} of intervals")
        a, b = self.args(node, unit, scope, pre, depth)
        return f"{fn}({a}, {b})"

    def x_Except(self, node, *a):
        return self._list_set_op("_except", node, *a)

    def x_Intersect(self, node, *a):
        return self._list_set_op("_intersect", node, *a)

    def x_IndexOf(self, node, unit, scope, pre, depth):
        return (
            f"_index_of({self.expr(node['source'], unit, scope, pre, depth)}, "
            f"{self.expr(node['element'], unit, scope, pre, depth)})"
        )

    def x_Indexer(self, node, unit, scope, pre, depth):
        a, b = self.args(node, unit, scope, pre, depth)
        return f"_indexer({a}, {b})"

    def x_Length(self, node, unit, scope, pre, depth):
        op = node["operand"]
        v = self.expr(op, unit, scope, pre, depth)
        # A null operand: 0 when it is a cast to a list, null when a cast to anything else, and an error
        # otherwise (overloaded.js Length reads the operand's asTypeSpecifier).
        spec = op.get("asTypeSpecifier") if op.get("type") == "As" else None
        if spec is not None:
            null = "0" if spec.get("type") == "ListTypeSpecifier" else "None"
        else:
            null = "_raise('Length of null')"
        t = self.tmp("len")
        return f"(lambda {t}: _js_length({t}) if {t} is not None else {null})({v})"

    # -- strings
    def x_Split(self, node, unit, scope, pre, depth):
        return (
            f"_split({self.expr(node['stringToSplit'], unit, scope, pre, depth)}, "
            f"{self.expr(node.get('separator'), unit, scope, pre, depth)})"
        )

    def x_Substring(self, node, unit, scope, pre, depth):
        s = self.expr(node["stringToSub"], unit, scope, pre, depth)
        i = self.expr(node["startIndex"], unit, scope, pre, depth)
        n = self.expr(node["length"], unit, scope, pre, depth) if node.get("length") is not None else "None"
        return f"_substring({s}, {i}, {n})"

    def x_PositionOf(self, node, unit, scope, pre, depth):
        return (
            f"_position_of({self.expr(node['pattern'], unit, scope, pre, depth)}, "
            f"{self.expr(node['string'], unit, scope, pre, depth)})"
        )

    def x_Message(self, node, unit, scope, pre, depth):
        # The reference returns the source whatever the severity (no message listener is installed);
        # the code, severity and message are evaluated only when the condition holds.
        src = self.expr(node.get("source"), unit, scope, pre, depth)
        cond = self.expr(node.get("condition"), unit, scope, pre, depth)
        rest = ", ".join(self.expr(node.get(k), unit, scope, pre, depth) for k in ("code", "severity", "message"))
        return f"_message({src}, {cond}, lambda: ({rest},))"

    # -- queries
    def x_Query(self, node, unit, scope, pre, depth):
        fname = self.tmp("q")
        body: list[str] = []
        qscope = Scope(scope)
        sources = node["source"]
        src_vars = []
        for s in sources:
            sv = self.tmp("src")
            body.append(f"{sv} = {self.expr(s['expression'], unit, scope, body, depth)}")
            src_vars.append(sv)
        if len(src_vars) == 1:
            body.append(f"if {src_vars[0]} is None:")
            body.append("    return None")
            body.append(f"_is_list = type({src_vars[0]}) is list")
            body.append("if not _is_list:")
            body.append(f"    {src_vars[0]} = [{src_vars[0]}]")
        else:
            body.append(f"if {' and '.join(v + ' is None' for v in src_vars)}:")
            body.append("    return None")
            body.append(f"_is_list = {' or '.join('type(' + v + ') is list' for v in src_vars)}")
            for v in src_vars:
                body.append(f"{v} = [] if {v} is None else ({v} if type({v}) is list else [{v}])")
        alias_vars = []
        for s in sources:
            av = _ident("a", s["alias"], self._next())
            st = self.static_type(s["expression"], unit, scope)
            qscope.names[s["alias"]] = (av, st[1] if st and st[0] == "L" else st)
            alias_vars.append(av)
        body.append("_res = []")
        ind = ""
        for av, sv in zip(alias_vars, src_vars):
            body.append(f"{ind}for {av} in {sv}:")
            ind += "    "
        inner: list[str] = []
        for let in node.get("let") or []:
            lv = _ident("l", let["identifier"], self._next())
            lt = type_spec(let) or self.static_type(let["expression"], unit, qscope)
            val = self.expr(let["expression"], unit, qscope, inner, depth + 1)
            inner.append(f"{lv} = {val}")
            qscope.names[let["identifier"]] = (lv, lt)
        for rel in node.get("relationship") or []:
            rk = rel.get("type")
            if rk not in ("With", "Without"):
                self.fail(rel)
            rscope = Scope(qscope)
            rv = _ident("r", rel["alias"], self._next())
            rst = self.static_type(rel["expression"], unit, qscope)
            rscope.names[rel["alias"]] = (rv, rst[1] if rst and rst[0] == "L" else rst)
            rexpr = self.expr(rel["expression"], unit, qscope, inner, depth + 1)
            cond = self.expr(rel["suchThat"], unit, rscope, inner, depth + 1)
            rl = self.tmp("rel")
            inner.append(f"{rl} = {rexpr}")
            inner.append(f"if type({rl}) is not list:")
            inner.append(f"    {rl} = [{rl}]")
            inner.append("_hit = False")
            inner.append(f"for {rv} in {rl}:")
            inner.append(f"    if _truthy({cond}):")
            inner.append("        _hit = True")
            inner.append("        break")
            inner.append(f"if {'not ' if rk == 'With' else ''}_hit:")
            inner.append("    continue")
        if node.get("where"):
            w = self.expr(node["where"], unit, qscope, inner, depth + 1)
            inner.append(f"if not _truthy({w}):")
            inner.append("    continue")
        ret = node.get("return")
        agg = node.get("aggregate")
        if ret:
            inner.append(f"_res.append({self.expr(ret['expression'], unit, qscope, inner, depth + 1)})")
        elif len(alias_vars) == 1 and not agg:
            inner.append(f"_res.append({alias_vars[0]})")
        else:
            names = [s["alias"] for s in sources] + [l["identifier"] for l in node.get("let") or []]
            inner.append("_res.append(_Tup({" + ", ".join(f"{n!r}: {qscope.get(n)[0]}" for n in names) + "}))")
        body.extend(ind + line for line in inner)
        if agg is not None:
            is_distinct = bool(agg.get("distinct", False))
        elif ret is not None:
            is_distinct = ret.get("distinct", True) is not False
        else:
            is_distinct = True
        if is_distinct:
            body.append("_res = _distinct(_res)")
        if agg is not None:
            av = _ident("agg", agg["identifier"], self._next())
            start = self.expr(agg.get("starting"), unit, scope, body, depth)
            body.append(f"{av} = {start}")
            ascope = Scope(qscope)
            ascope.names[agg["identifier"]] = (av, type_spec(agg))
            # the aggregate expression sees the returned values' context (a single alias: the value)
            if len(alias_vars) != 1 or ret is not None:
                self.fail(node, "aggregate over a multi-source query or with a return clause")
            abody: list[str] = []
            aexpr = self.expr(agg["expression"], unit, ascope, abody, depth + 1)
            body.append(f"for {alias_vars[0]} in _res:")
            body.extend("    " + line for line in abody)
            body.append(f"    {av} = {aexpr}")
            body.append(f"_res = {av}")
        if node.get("sort"):
            keys = []
            for by in node["sort"].get("by", []):
                bt = by.get("type")
                direction = by.get("direction", "asc")
                if bt == "ByDirection":
                    keys.append(("dir", None, direction))
                elif bt == "ByColumn":
                    keys.append(("col", by["path"], direction))
                elif bt == "ByExpression":
                    keys.append(("expr", self._sort_key(by, node, unit, scope, body, depth), direction))
                else:
                    self.fail(by)
            if any(k[0] == "expr" for k in keys):
                kc = "(" + "".join(f"({k!r}, {p if k == 'expr' else repr(p)}, {d!r}), " for k, p, d in keys) + ")"
            else:
                kc = self.const(tuple(keys), "sort")
            body.append(f"_res = _sort(_res, {kc})")
        if agg is not None:
            body.append("return _res")
        else:
            body.append("return _res if _is_list else (_res[0] if _res else None)")
        pre.append(f"def {fname}():")
        pre.extend("    " + line for line in body)
        return f"{fname}()"

    def _sort_key(self, by, query, unit, scope, body, depth):
        """A ByExpression as a key function of one sorted value: its identifiers are that value's
        elements (query.js ByExpression runs the expression in a context made of the value)."""
        elem = type_spec(query)
        elem = elem[1] if elem and elem[0] == "L" else None
        fn = self.tmp("sortkey")
        el = self.tmp("el")
        kscope = Scope(scope)
        kscope.names["\0sort"] = (el, elem)
        expr = self._identifiers_as_properties(by["expression"])
        kbody: list[str] = []
        value = self.expr(expr, unit, kscope, kbody, depth + 1)
        body.append(f"def {fn}({el}):")
        body.extend("    " + line for line in kbody)
        body.append(f"    return {value}")
        return fn

    def _identifiers_as_properties(self, node):
        if isinstance(node, list):
            return [self._identifiers_as_properties(x) for x in node]
        if not isinstance(node, dict):
            return node
        if node.get("type") == "IdentifierRef":
            out = {"type": "Property", "path": node["name"], "scope": "\0sort"}
            for k in ("resultTypeName", "resultTypeSpecifier"):
                if k in node:
                    out[k] = node[k]
            return out
        return {k: self._identifiers_as_properties(v) for k, v in node.items()}

    def _next(self):
        self.n += 1
        return self.n


# Date/time and interval relations: ELM node -> (runtime function, operands swapped, points only).
_RELATIONS = {
    "SameAs": ("_same_as", False, True),
    "SameOrBefore": ("_same_or_before", False, True),
    "SameOrAfter": ("_same_or_after", False, True),
    "Before": ("_before", False, False),
    "After": ("_after", False, False),
    "Overlaps": ("_overlaps", False, False),
    "OverlapsBefore": ("_overlaps_before", False, False),
    "OverlapsAfter": ("_overlaps_after", False, False),
    "Meets": ("_meets", False, False),
    "MeetsBefore": ("_meets_before", False, False),
    "MeetsAfter": ("_meets_after", False, False),
    "Includes": ("_includes", False, False),
    "IncludedIn": ("_includes", True, False),
    "ProperIncludes": ("_proper_includes", False, False),
    "ProperIncludedIn": ("_proper_includes", True, False),
}


def _relation_method(fn, swap, points_only):
    def method(self, node, unit, scope, pre, depth):
        return self._relation(fn, node, unit, scope, pre, depth, swap=swap, points_only=points_only)

    return method


for _name, (_fn, _swap, _points) in _RELATIONS.items():
    setattr(Compiler, f"x_{_name}", _relation_method(_fn, _swap, _points))
