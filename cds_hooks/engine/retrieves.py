"""What a rule pack's CQL can retrieve, read from its ELM, so the engine is given only that.

CQL reaches patient data only through retrieves (CQL 1.5, "Retrieve"; ELM `Retrieve` with
`dataType`, `codeProperty` and `codes`) and the context Patient. A resource of a type no retrieve
names can never be part of a result, nor can one whose code property holds none of the codes a
code-filtered retrieve asks for. Dropping those before the call changes no result (the engine still
filters by type and code itself; the order of what is left is kept) and saves the engine wrapping,
and both sides encoding and parsing, resources no expression will ever see: in a long primary-care
record, most Observations (vital signs, labs), lab reports and all the administrative resources.

The same holds one level down: the library reads a resource's elements only through ELM paths
(`Property.path`, sort columns, a retrieve's code and date properties, identifier references), so
the top-level elements no path names (narrative `note`s, `extension`s, identifiers, ...) are left out
of what the engine is sent. Report-text findings, which carry their sentence and offsets for the card,
lose most of their size this way.

The filter is conservative: a retrieve whose codes cannot be read statically (a parameter, an
expression, a value set without its codes, an unknown node) keeps every resource of its type, and a
resource passes a code filter when any `code` under its code property equals any code of the filter,
whatever the system (a superset of the engine's own match on code and system, which reads codes
from the same shapes: a code string, a Coding, a CodeableConcept, a list of them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALL = None  # a type retrieved without a usable code filter: every resource of it is kept


class _Unresolved(Exception):
    pass


@dataclass
class RetrieveFilter:
    """Per resource type: ALL, or the code properties and code values its retrieves filter on."""

    types: dict[str, dict[str, frozenset[str]] | None] = field(default_factory=dict)
    # Top-level element names some path of the library can read; None keeps every element.
    read: frozenset[str] | None = None

    def wants(self, resource: dict) -> bool:
        rtype = resource.get("resourceType")
        if rtype == "Patient":
            return True  # the context patient, whatever the ELM retrieves
        if rtype not in self.types:
            return False
        by_property = self.types[rtype]
        if by_property is ALL:
            return True
        for prop, codes in by_property.items():
            value = resource.get(prop)
            if value is not None:
                if _holds_code(value, codes):
                    return True
                continue
            for key, value in resource.items():  # a choice element spelled with its type (medicationCodeableConcept)
                if key.startswith(prop) and len(key) > len(prop) and key[len(prop)].isupper():
                    if _holds_code(value, codes):
                        return True
        return False

    def _readable(self, key: str) -> bool:
        if key in self.read:
            return True
        # A choice element is read by its base name: `effective` reads effectiveDateTime.
        cut = next((i for i, ch in enumerate(key) if ch.isupper()), 0)
        return cut > 0 and key[:cut] in self.read

    def prune(self, resource: dict) -> dict:
        """The resource without the top-level elements the library never reads (the Patient whole)."""
        if self.read is None or resource.get("resourceType") == "Patient":
            return resource
        return {k: v for k, v in resource.items() if self._readable(k)}

    def prune_within(self, value):
        """A result with every FHIR resource in it pruned: what an engine given `select`'s output
        returns where an engine given the whole record returns the whole resource (for comparisons)."""
        if isinstance(value, list):
            return [self.prune_within(v) for v in value]
        if isinstance(value, dict):
            if isinstance(value.get("resourceType"), str):
                value = self.prune(value)
            return {k: self.prune_within(v) for k, v in value.items()}
        return value

    def select(self, resources: list[dict]) -> list[dict]:
        """The resources some retrieve of the library can return, in their original order, each
        without the elements the library never reads."""
        return [self.prune(r) for r in resources if self.wants(r)]


def _holds_code(value, codes: frozenset[str]) -> bool:
    """Whether a code element holds one of `codes`: the shapes cql-exec-fhir reads codes from (a code
    string, a Coding, a CodeableConcept's codings, or a list of these), by code value alone."""
    if isinstance(value, str):
        return value in codes
    if isinstance(value, list):
        return any(_holds_code(v, codes) for v in value)
    if isinstance(value, dict):
        code = value.get("code")
        if isinstance(code, str) and code in codes:
            return True
        coding = value.get("coding")
        if isinstance(coding, list):
            return any(isinstance(c, dict) and isinstance(c.get("code"), str) and c["code"] in codes for c in coding)
    return False


def _type_name(data_type: str) -> str:
    return data_type.rsplit("}", 1)[-1].rsplit(".", 1)[-1]


def _valueset_codes(vs: dict) -> frozenset[str]:
    codes: set[str] = set()
    expansion = vs.get("expansion")
    if isinstance(expansion, dict) and isinstance(expansion.get("contains"), list):

        def contains(items):
            for c in items or []:
                if isinstance(c.get("code"), str):
                    codes.add(c["code"])
                contains(c.get("contains"))

        contains(expansion["contains"])
        return frozenset(codes)
    for inc in (vs.get("compose") or {}).get("include") or []:
        if inc.get("valueSet") or inc.get("filter") or not inc.get("concept"):
            raise _Unresolved(vs.get("url"))  # the engine cannot expand it either; stay conservative
        codes.update(c["code"] for c in inc["concept"] if isinstance(c.get("code"), str))
    return frozenset(codes)


class _Libraries:
    def __init__(self, libraries: list[dict], valuesets: list[dict]):
        self.by_id = {lib["library"]["identifier"]["id"]: lib["library"] for lib in libraries}
        self.valuesets: dict[str, list[dict]] = {}
        for vs in valuesets:
            self.valuesets.setdefault(vs.get("url"), []).append(vs)

    def _target(self, lib: dict, node: dict) -> dict:
        name = node.get("libraryName")
        if not name:
            return lib
        for inc in (lib.get("includes") or {}).get("def", []):
            if inc.get("localIdentifier") == name and inc.get("path") in self.by_id:
                return self.by_id[inc["path"]]
        raise _Unresolved(name)

    def _def(self, lib: dict, section: str, name: str) -> dict:
        for d in (lib.get(section) or {}).get("def", []):
            if d.get("name") == name:
                return d
        raise _Unresolved(name)

    def codes(self, lib: dict, node) -> frozenset[str]:
        """The code values a retrieve's `codes` expression stands for; _Unresolved when not static."""
        if not isinstance(node, dict):
            raise _Unresolved(node)
        kind = node.get("type")
        if kind == "ValueSetRef":
            target = self._target(lib, node)
            url = self._def(target, "valueSets", node["name"]).get("id")
            found = self.valuesets.get(url)
            if not found:
                raise _Unresolved(url)
            return frozenset().union(*(_valueset_codes(vs) for vs in found))
        if kind == "CodeRef":
            target = self._target(lib, node)
            code = self._def(target, "codes", node["name"]).get("id")
            if not isinstance(code, str):
                raise _Unresolved(node["name"])
            return frozenset({code})
        if kind == "ConceptRef":
            target = self._target(lib, node)
            concept = self._def(target, "concepts", node["name"])
            return frozenset().union(*(self.codes(target, {**c, "type": "CodeRef"}) for c in concept.get("code", [])))
        if kind == "Code":
            if isinstance(node.get("code"), str):
                return frozenset({node["code"]})
            raise _Unresolved(node)
        if kind in ("ToList", "ToConcept"):
            return self.codes(lib, node.get("operand"))
        if kind == "List":
            return frozenset().union(*(self.codes(lib, e) for e in node.get("element", [])))
        raise _Unresolved(kind)


def _retrieves(node):
    if isinstance(node, dict):
        if node.get("type") == "Retrieve":
            yield node
        for v in node.values():
            if isinstance(v, (dict, list)):
                yield from _retrieves(v)
    elif isinstance(node, list):
        for v in node:
            yield from _retrieves(v)


_PATH_KEYS = ("path", "codeProperty", "dateProperty", "dateLowProperty", "dateHighProperty")


def _paths(node, found: set[str]) -> None:
    """Every element name an ELM tree can read: path segments, and bare identifier references."""
    if isinstance(node, dict):
        for key in _PATH_KEYS:
            if isinstance(node.get(key), str):
                found.update(node[key].split("."))
        if node.get("type") == "IdentifierRef" and isinstance(node.get("name"), str):
            found.add(node["name"])
        for v in node.values():
            if isinstance(v, (dict, list)):
                _paths(v, found)
    elif isinstance(node, list):
        for v in node:
            _paths(v, found)


def retrieve_filter(libraries: list[dict], valuesets: list[dict]) -> RetrieveFilter:
    """The filter for ELM `libraries` (every retrieve of every library counts) and their value sets."""
    libs = _Libraries(libraries, valuesets)
    out = RetrieveFilter()
    for elm in libraries:
        lib = elm["library"]
        for retrieve in _retrieves(lib):
            rtype = _type_name(str(retrieve.get("dataType", "")))
            if out.types.get(rtype, {}) is ALL:
                continue
            prop = retrieve.get("codeProperty")
            codes_node = retrieve.get("codes")
            if codes_node is None or not prop or "." in prop:
                out.types[rtype] = ALL
                continue
            try:
                codes = libs.codes(lib, codes_node)
            except _Unresolved:
                out.types[rtype] = ALL
                continue
            by_property = out.types.setdefault(rtype, {})
            by_property[prop] = by_property.get(prop, frozenset()) | codes
    read: set[str] = {"resourceType", "id"}
    for elm in libraries:
        _paths(elm["library"], read)
    out.read = frozenset(read)
    return out
