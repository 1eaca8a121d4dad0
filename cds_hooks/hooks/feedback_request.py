"""The feedback request body, validated entry by entry (CDS Hooks 2.0, "Feedback").

`{"feedback": [Feedback, ...]}`; each Feedback has `card` (the card's uuid), `outcome`
(`accepted` | `overridden`), `acceptedSuggestions` (`[{"id": suggestion uuid}]`, required with
`accepted`), `overrideReason` (`{"reason": Coding, "userComment": string}`, only with
`overridden`) and `outcomeTimestamp` (an instant). One malformed entry rejects the whole request
(400, naming the entry), so a client's retry never stores half a batch.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

from cds_hooks.errors import InvalidRequest

OUTCOMES = ("accepted", "overridden")
MAX_ENTRIES = 100
MAX_COMMENT = 4000


@dataclass
class FeedbackEntry:
    card: str
    outcome: str
    outcome_at: datetime  # UTC, naive
    accepted_suggestions: list[str] = field(default_factory=list)
    reason: dict | None = None  # the override reason Coding: system, code, display
    user_comment: str | None = None
    raw: dict = field(default_factory=dict, repr=False)

    def digest(self, service_id: str) -> str:
        """Identifies the entry, so a client's retry of the same feedback is stored once."""
        canonical = json.dumps([service_id, self.raw], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _bad(message: str) -> InvalidRequest:
    return InvalidRequest(message, code="invalid-feedback")


def _uuid(value, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad(f"{where} must be the uuid string of a card or suggestion")
    text = value.strip()
    if text.lower().startswith("urn:uuid:"):
        text = text[len("urn:uuid:") :]
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise _bad(f"{where} is not a uuid") from None


def _instant(value, where: str) -> datetime:
    if not isinstance(value, str):
        raise _bad(f"{where} is required: the time of the user's action, e.g. 2026-09-10T14:03:00Z")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _bad(f"{where} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise _bad(f"{where} must be an instant with a time zone, e.g. 2026-09-10T14:03:00Z")
    return parsed.astimezone(timezone.utc).replace(tzinfo=None)


def _coding(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise _bad(f"{where} must be a Coding object")
    code = value.get("code")
    if not isinstance(code, str) or not code.strip() or len(code) > 100:
        raise _bad(f"{where}.code is required (a string of at most 100 characters)")
    out = {"code": code.strip()}
    for key, limit in (("system", 300), ("display", 300)):
        if key in value and value[key] is not None:
            if not isinstance(value[key], str) or len(value[key]) > limit:
                raise _bad(f"{where}.{key} must be a string of at most {limit} characters")
            out[key] = value[key]
    return out


def _entry(item, where: str) -> FeedbackEntry:
    if not isinstance(item, dict):
        raise _bad(f"{where} must be an object")
    card = _uuid(item.get("card"), f"{where}.card")
    outcome = item.get("outcome")
    if outcome not in OUTCOMES:
        raise _bad(f"{where}.outcome must be accepted or overridden")
    entry = FeedbackEntry(
        card=card,
        outcome=outcome,
        outcome_at=_instant(item.get("outcomeTimestamp"), f"{where}.outcomeTimestamp"),
        raw=item,
    )

    accepted = item.get("acceptedSuggestions")
    if accepted is not None:
        if outcome != "accepted":
            raise _bad(f"{where}.acceptedSuggestions is only allowed with outcome accepted")
        if not isinstance(accepted, list):
            raise _bad(f'{where}.acceptedSuggestions must be a list of {{"id": suggestion uuid}}')
        for i, s in enumerate(accepted):
            if not isinstance(s, dict):
                raise _bad(f"{where}.acceptedSuggestions[{i}] must be an object with an id")
            entry.accepted_suggestions.append(_uuid(s.get("id"), f"{where}.acceptedSuggestions[{i}].id"))
    if outcome == "accepted" and not entry.accepted_suggestions:
        raise _bad(f"{where}.acceptedSuggestions is required with outcome accepted (the suggestions the user took)")

    reason = item.get("overrideReason")
    if reason is not None:
        if outcome != "overridden":
            raise _bad(f"{where}.overrideReason is only allowed with outcome overridden")
        if not isinstance(reason, dict):
            raise _bad(f"{where}.overrideReason must be an object with reason and/or userComment")
        if reason.get("reason") is not None:
            entry.reason = _coding(reason["reason"], f"{where}.overrideReason.reason")
        comment = reason.get("userComment")
        if comment is not None:
            if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
                raise _bad(f"{where}.overrideReason.userComment must be a string of at most {MAX_COMMENT} characters")
            entry.user_comment = comment
    return entry


def parse_feedback(body) -> list[FeedbackEntry]:
    if not isinstance(body, dict) or "feedback" not in body:
        raise _bad('the body must be an object {"feedback": [...]}')
    items = body["feedback"]
    if not isinstance(items, list) or not items:
        raise _bad("feedback must be a non-empty list of feedback entries")
    if len(items) > MAX_ENTRIES:
        raise _bad(f"at most {MAX_ENTRIES} feedback entries per request")
    return [_entry(item, f"feedback[{i}]") for i, item in enumerate(items)]
