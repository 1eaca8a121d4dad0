"""CDS Hooks 2.0 response rules, checked on every response the tests see.

CDS Hooks 2.0, "CDS Service Response" and "Card Attributes".
"""

from __future__ import annotations

import uuid as uuidlib

from fhir.resources.R4B import get_fhir_model_class

INDICATORS = {"info", "warning", "critical"}
ACTION_TYPES = {"create", "update", "delete"}
SELECTION = {"at-most-one", "any"}
LINK_TYPES = {"absolute", "smart"}


def _is_uuid(value) -> bool:
    try:
        uuidlib.UUID(str(value))
        return True
    except ValueError:
        return False


def problems(response: dict) -> list[str]:
    """Everything in a response that breaks the spec; empty when conformant."""
    out: list[str] = []
    if not isinstance(response, dict) or not isinstance(response.get("cards"), list):
        return ["response has no cards array"]
    seen: set[str] = set()
    for i, card in enumerate(response["cards"]):
        where = f"cards[{i}]"
        if not _is_uuid(card.get("uuid")):
            out.append(f"{where}.uuid missing or not a UUID")
        elif card["uuid"] in seen:
            out.append(f"{where}.uuid repeated")
        else:
            seen.add(card["uuid"])
        summary = card.get("summary")
        if not isinstance(summary, str) or not summary or len(summary) >= 140:
            out.append(f"{where}.summary must be a string under 140 characters")
        if card.get("indicator") not in INDICATORS:
            out.append(f"{where}.indicator {card.get('indicator')!r} is not one of {sorted(INDICATORS)}")
        source = card.get("source")
        if not isinstance(source, dict) or not isinstance(source.get("label"), str) or not source["label"]:
            out.append(f"{where}.source.label is required")
        elif "topic" in source:
            topic = source["topic"]
            if not isinstance(topic, dict) or not topic.get("code") or not topic.get("system"):
                out.append(f"{where}.source.topic must be a Coding")
        if "detail" in card and not isinstance(card["detail"], str):
            out.append(f"{where}.detail must be markdown text")
        suggestions = card.get("suggestions") or []
        if suggestions and card.get("selectionBehavior") not in SELECTION:
            out.append(f"{where}.selectionBehavior is required with suggestions")
        for j, s in enumerate(suggestions):
            sw = f"{where}.suggestions[{j}]"
            if not isinstance(s.get("label"), str) or not s["label"]:
                out.append(f"{sw}.label is required")
            if not _is_uuid(s.get("uuid")):
                out.append(f"{sw}.uuid missing or not a UUID")
            elif s["uuid"] in seen:
                out.append(f"{sw}.uuid repeated")
            else:
                seen.add(s["uuid"])
            for k, action in enumerate(s.get("actions") or []):
                aw = f"{sw}.actions[{k}]"
                if action.get("type") not in ACTION_TYPES:
                    out.append(f"{aw}.type invalid")
                if not isinstance(action.get("description"), str):
                    out.append(f"{aw}.description is required")
                resource = action.get("resource")
                if action.get("type") in ("create", "update"):
                    if not isinstance(resource, dict) or "resourceType" not in resource:
                        out.append(f"{aw}.resource is required for {action.get('type')}")
                    else:
                        try:
                            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
                        except Exception as exc:  # noqa: BLE001
                            out.append(f"{aw}.resource is not valid FHIR R4: {str(exc)[:200]}")
        for j, reason in enumerate(card.get("overrideReasons") or []):
            if not reason.get("code") or not reason.get("display"):
                out.append(f"{where}.overrideReasons[{j}] needs code and display")
        for j, link in enumerate(card.get("links") or []):
            if not link.get("label") or not link.get("url") or link.get("type") not in LINK_TYPES:
                out.append(f"{where}.links[{j}] needs label, url and type absolute|smart")
    return out


def assert_conformant(response: dict) -> None:
    found = problems(response)
    assert not found, "CDS Hooks 2.0 violations:\n" + "\n".join(found)
