"""The case view and the peer-to-peer brief as HTML, from a call's audit document.

The input is what the audit trail keeps of a call (audit/call_record.py `sealed_content`, as
`AuditStore.case_document` returns it, or as `cds-hooks brief` builds it offline): the response the
user was shown and, per case, the evaluation (pipeline/case_record.py). Nothing is looked up again, so
a page shows exactly what the card said and what it rested on. Templates are Jinja2 with
autoescaping (templates/); no Flask here, so the command line renders the same pages.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES = Path(__file__).resolve().parent / "templates"
KIND_ORDER = (("Required", "required"), ("Advisory", "advisory"), ("Informational", "informational"))

_env = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=select_autoescape(["html", "css"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.autoescape = True  # the stylesheet is included into HTML: escape everything that is not markup


class CaseNotFound(LookupError):
    """The document has no case for this card (a card of another call, or a call without cases)."""


def case_of(document: dict, card_uuid: str) -> tuple[dict, dict]:
    """(the card as the user was shown it, its case's evaluation) for `card_uuid`."""
    cards = (document.get("response") or {}).get("cards") or []
    card = next((c for c in cards if isinstance(c, dict) and c.get("uuid") == card_uuid), None)
    case = next((c for c in document.get("cases") or [] if c.get("card") == card_uuid), None)
    if card is None or case is None or not case.get("evaluation"):
        raise CaseNotFound(card_uuid)
    return card, case["evaluation"]


def _evaluated_at(document: dict) -> str | None:
    received = (document.get("call") or {}).get("received_at")
    return f"{received[:16].replace('T', ' ')} UTC" if isinstance(received, str) else None


def _pathway(ev: dict) -> str:
    """The pathway the record supports; before the rule pack names pathways, its indication finding."""
    pathway = ev.get("pathway")
    if isinstance(pathway, dict):
        text = f"{pathway['label']} — {pathway['reason'].rstrip('.')}"
        return (
            f"{text} (the policy excludes or restricts fusion for this indication)" if pathway.get("excluded") else text
        )
    if pathway:
        return str(pathway)
    indication = next((c for c in ev["criteria"] if c["id"] == "indication"), None)
    if indication is None:
        return "not named by this rule pack"
    return f"{indication['statusLabel'].lower()} indication ({indication['reason'].rstrip('.')})"


def render_case_view(document: dict, card_uuid: str, brief_url: str | None = None) -> str:
    card, ev = case_of(document, card_uuid)
    groups = [(heading, [c for c in ev["criteria"] if c["kind"] == kind]) for heading, kind in KIND_ORDER]
    return _env.get_template("case_view.html").render(
        ev=ev,
        card=card,
        groups=[g for g in groups if g[1]],
        brief_url=brief_url,
        pathway=_pathway(ev),
        evaluated_at=_evaluated_at(document),
    )


def render_brief(
    document: dict, card_uuids: list[str] | None = None, back_url: str | None = None, now: datetime | None = None
) -> str:
    """One printable page per case (every case of the call unless `card_uuids` names some)."""
    uuids = card_uuids or [c.get("card") for c in document.get("cases") or []]
    briefs = []
    for card_uuid in uuids:
        _, ev = case_of(document, card_uuid)
        required = [c for c in ev["criteria"] if c["kind"] == "required"]
        clauses = list({c["id"]: c for c in required}.values())  # one per criterion, whatever its levels
        briefs.append(
            {
                "ev": ev,
                "pathway": _pathway(ev),
                "back_url": back_url,
                "required": required,
                "clauses": clauses,
                "evaluated_at": _evaluated_at(document),
            }
        )
    if not briefs:
        raise CaseNotFound("no case in this call")
    prepared = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
    return _env.get_template("brief.html").render(briefs=briefs, prepared=prepared)
