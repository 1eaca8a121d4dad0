"""Regenerate fhir_r4_model.json (choice order, base types, primitive names) from the FHIR R4 model info
that cql-exec-fhir ships: `python -m cds_hooks.engine.compiled.gen_model node_modules`.

The compiled evaluator needs three facts the ELM does not carry: the order in which the reference engine
tries the choices of a choice element (the model info's order, not the ELM's alphabetical one), each
type's base type (for `as`/`is` on subtypes such as Age of Quantity) and which FHIR types are primitives.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

NS = {"m": "urn:hl7-org:elm-modelinfo:r1", "xsi": "http://www.w3.org/2001/XMLSchema-instance"}
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
OUT = Path(__file__).with_name("fhir_r4_model.json")


def generate(node_modules: str) -> dict:
    path = Path(node_modules) / "cql-exec-fhir" / "lib" / "modelInfos" / "fhir-modelinfo-4.0.1.xml"
    root = ET.parse(path).getroot()
    base: dict[str, str] = {}
    choices: dict[str, dict[str, list[str]]] = {}
    elements: dict[str, dict[str, str]] = {}
    counts: dict[str, int] = {}
    for ti in root.iter():
        if not ti.tag.endswith("typeInfo") or ti.get(XSI_TYPE, "").split(":")[-1] != "ClassInfo":
            continue
        name = ti.get("name")
        if ti.get("baseType"):
            base[name] = ti.get("baseType").replace("FHIR.", "").replace("System.", "System.")
        for el in ti:
            if not el.tag.endswith("element"):
                continue
            counts[name] = counts.get(name, 0) + 1
            spec = next((c for c in el if c.tag.endswith("elementTypeSpecifier")), None)
            if spec is not None and spec.get(XSI_TYPE, "").endswith("ChoiceTypeSpecifier"):
                choices.setdefault(name, {})[el.get("name")] = [c.get("name") for c in spec if c.tag.endswith("choice")]
            elif el.get("elementType"):
                elements.setdefault(name, {})[el.get("name")] = el.get("elementType")
    # cql-exec-fhir treats a lower-case FHIR type, and a class over Element with one String `value`
    # (the R4 model info's code bindings such as ObservationStatus), as a primitive with _name siblings.
    primitives = sorted(
        n
        for n in base
        if n[:1].islower()
        or (
            base[n] == "Element"
            and counts.get(n) == 1
            and elements.get(n, {}).get("value") == "System.String"
            and n not in choices
        )
    )
    return {
        "base": base,
        "choices": choices,
        "primitives": primitives,
        "primitiveValue": {n: _value_type(n, base, elements) for n in primitives},
    }


def _value_type(name: str, base: dict, elements: dict) -> str | None:
    while name:
        v = elements.get(name, {}).get("value")
        if v:
            return v
        name = base.get(name)
    return None


if __name__ == "__main__":
    OUT.write_text(
        json.dumps(generate(sys.argv[1] if len(sys.argv) > 1 else "node_modules"), indent=0, sort_keys=True) + "\n"
    )
    print(f"wrote {OUT}")
