"""The JSON types of the FHIR resources a call hands the CQL engine, checked before the engine reads them.

FHIR R4 "JSON Representation of Resources" (section 2.6.2): a primitive element is a JSON string,
except `boolean` (true/false), `integer`, `decimal`, `positiveInt` and `unsignedInt` (numbers);
complex elements are objects; an element that may repeat is an array; a choice element `value[x]`
is spelt with its type (`valueQuantity`). `date`, `dateTime` and `instant` follow the regular
expressions of FHIR R4 "Data Types" (section 2.24.0.1). The engine's FHIR data source
(cql-exec-fhir) reads resources by its model info, so the element types come from that same
file, `fhir-modelinfo-4.0.1.xml`: what is checked is exactly what the engine will read.

A wrongly typed element (a date sent as a number, a Coding's code as a number, a CodeableConcept
sent as a string) is refused: the call answers 400 naming the element's path, never a 5xx from the
engine. Elements the model does not know (extensions' siblings such as `_birthDate`, vendor
additions) and nulls are left alone, as is everything under a resource type the model does not know.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from cds_hooks.errors import InvalidRequest

EXTENSION = "cds_hooks.fhir_types"
MODEL_INFO = Path("cql-exec-fhir") / "lib" / "modelInfos" / "fhir-modelinfo-4.0.1.xml"
_XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
_NS = "{urn:hl7-org:elm-modelinfo:r1}"
_PREFETCH_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")

# FHIR R4 "Data Types" 2.24.0.1, the regular expressions of date and dateTime (instant is a dateTime
# with seconds and a zone, so this pattern accepts every valid one).
_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_DATE = re.compile(_YEAR + r"(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?")
_DATE_TIME = re.compile(
    _YEAR + r"(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T([01][0-9]|2[0-3]):[0-5][0-9]:"
    r"([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?"
)


@dataclass(frozen=True)
class _Element:
    type: str  # "FHIR.CodeableConcept", "System.String", ...
    many: bool


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# What each System type of a primitive's `value` is in JSON, and the words of the refusal.
_SYSTEM = {
    "System.Boolean": (lambda v: isinstance(v, bool), "true or false"),
    "System.Integer": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "System.Decimal": (_is_number, "a number"),
    "System.Date": (lambda v: isinstance(v, str) and _DATE.fullmatch(v) is not None, "a FHIR date string"),
    "System.DateTime": (lambda v: isinstance(v, str) and _DATE_TIME.fullmatch(v) is not None, "a FHIR dateTime string"),
}
_STRING = (lambda v: isinstance(v, str), "a string")


class FhirTypes:
    """Element types of every FHIR R4 class in the engine's model info."""

    def __init__(self, model_info: Path):
        root = ET.parse(model_info).getroot()
        self._base: dict[str, str] = {}
        own: dict[str, dict[str, _Element]] = {}
        for info in root.iter(f"{_NS}typeInfo"):
            name = f"{info.get('namespace')}.{info.get('name')}"
            self._base[name] = info.get("baseType") or ""
            own[name] = dict(self._elements(info))
        self._own = own
        self._keys: dict[str, dict[str, _Element]] = {}
        # A primitive is a class whose `value` is a System type (FHIR.code inherits it from FHIR.string).
        self._primitive = {name: self._value_type(name) for name in own if self._value_type(name)}

    @staticmethod
    def _elements(info):
        for element in info.findall(f"{_NS}element"):
            name = element.get("name")
            if element.get("elementType"):
                yield name, _Element(element.get("elementType"), False)
                continue
            spec = element.find(f"{_NS}elementTypeSpecifier")
            kind = spec.get(_XSI_TYPE) if spec is not None else None
            if kind == "ListTypeSpecifier":
                inner = spec.get("elementType")
                if inner is None:
                    named = spec.find(f"{_NS}elementTypeSpecifier")
                    inner = f"{named.get('namespace')}.{named.get('name')}" if named is not None else None
                if inner:
                    yield name, _Element(inner, True)
            elif kind == "ChoiceTypeSpecifier":
                for choice in spec.findall(f"{_NS}choice"):
                    type_name = choice.get("name")
                    # FHIR JSON spells a choice with its type's name, first letter upper case.
                    yield (
                        name + type_name[:1].upper() + type_name[1:],
                        _Element(f"{choice.get('namespace')}.{type_name}", False),
                    )
            elif kind == "NamedTypeSpecifier":
                yield name, _Element(f"{spec.get('namespace')}.{spec.get('name')}", False)

    def _value_type(self, name: str) -> str | None:
        while name in self._own:
            value = self._own[name].get("value")
            if value is not None:
                return value.type if value.type.startswith("System.") else None
            name = self._base.get(name, "")
        return None

    def keys_of(self, name: str) -> dict[str, _Element]:
        """Every JSON key of class `name`, its own and inherited."""
        found = self._keys.get(name)
        if found is None:
            chain, cursor = [], name
            while cursor in self._own:
                chain.append(cursor)
                cursor = self._base.get(cursor, "")
            found = {}
            for cls in reversed(chain):
                found.update(self._own[cls])
            self._keys[name] = found
        return found

    def resource_type(self, value) -> str | None:
        kind = value.get("resourceType") if isinstance(value, dict) else None
        return f"FHIR.{kind}" if isinstance(kind, str) and f"FHIR.{kind}" in self._own else None

    def check_resource(self, resource, where: str) -> None:
        """Raise InvalidRequest naming the first wrongly typed element of `resource` (a dict with a
        known resourceType; anything else is left to the stage that reads it)."""
        name = self.resource_type(resource)
        if name is not None:
            self._check(name, resource, where)

    def _check(self, name: str, value, where: str) -> None:
        if value is None:
            return
        if name.startswith("System."):
            accepts, words = _SYSTEM.get(name, _STRING)
        elif name in self._primitive:
            system = self._primitive[name]
            accepts, words = _SYSTEM.get(system, _STRING)
            words = words if system in ("System.Date", "System.DateTime") else f"{words} (FHIR {name[5:]})"
        else:
            if name in ("FHIR.Resource", "FHIR.DomainResource"):  # contained, Bundle.entry.resource
                self.check_resource(value, where)
                return
            if not isinstance(value, dict):
                raise InvalidRequest(f"{where} must be a JSON object (FHIR {name[5:]})", code="invalid-fhir")
            keys = self.keys_of(name)
            for key, child in value.items():
                element = keys.get(key)
                if element is None:
                    continue
                path = f"{where}.{key}"
                if element.many:
                    if not isinstance(child, list):
                        raise InvalidRequest(f"{path} must be a JSON array", code="invalid-fhir")
                    for i, item in enumerate(child):
                        self._check(element.type, item, f"{path}[{i}]")
                else:
                    self._check(element.type, child, path)
            return
        if not accepts(value):
            raise InvalidRequest(f"{where} must be {words}", code="invalid-fhir")


def load(node_modules: str | Path) -> FhirTypes:
    return FhirTypes(Path(node_modules) / MODEL_INFO)


def check_hook_resources(types: FhirTypes, body: dict) -> None:
    """Every resource of an order-sign call the engine may read: each prefetch value (a resource or a
    Bundle of them) and the resources of `context.draftOrders`."""
    prefetch = body.get("prefetch")
    if isinstance(prefetch, dict):
        for key, value in prefetch.items():
            types.check_resource(value, f"prefetch.{key if _PREFETCH_KEY.fullmatch(key) else '(a key)'}")
    context = body.get("context")
    orders = context.get("draftOrders") if isinstance(context, dict) else None
    if isinstance(orders, list):
        for i, order in enumerate(orders):
            types.check_resource(
                order.get("resource", order) if isinstance(order, dict) else None, f"context.draftOrders[{i}]"
            )
    else:
        types.check_resource(orders, "context.draftOrders")
