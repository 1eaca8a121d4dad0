"""The case view one click from the card, and the peer-to-peer brief behind it.

Each live card gets a `links` entry (CDS Hooks 2.0, "Link", type `absolute`) to
`GET /cases/{call}/{card}?e=...&s=...`: a link signed for that call and card, valid for
`case_view_ttl_seconds` (auth/case_links.py; docs/security.md, "Case view links"). The page and the
brief (`/cases/{call}/{card}/brief`, same signature) are rendered from the call's audit record
(web/case_pages.py), never from a new evaluation; every opening is written to the audit access log
before the page is sent. An expired, altered or foreign link is refused with 403 and opens nothing.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, abort, current_app, request
from markupsafe import escape

from cds_hooks.auth.case_links import CaseLinkSigner
from cds_hooks.config import Config
from cds_hooks.web.case_pages import CaseNotFound, render_brief, render_case_view
from cds_hooks.web.http_errors import describe
from cds_hooks.web.recording import recorder_of

log = logging.getLogger("cds_hooks.errors")

bp = Blueprint("case_view", __name__)

EXTENSION = "cds_hooks.case_links"
LINK_LABEL = "Case view: every criterion, its evidence, the peer-to-peer brief"
# The page holds patient data: not cached, not indexed, never named in a Referer, nothing loaded
# from anywhere (styles are inline), not framed by other sites.
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'; "
    "base-uri 'none'; form-action 'none'",
}


def init_app(app: Flask, config: Config) -> None:
    key = config.case_view_key.get_secret_value() if config.case_view_key else None
    app.extensions[EXTENSION] = CaseLinkSigner.from_setting(key, config.case_view_ttl_seconds)
    app.register_blueprint(bp)


def signer_of(app: Flask) -> CaseLinkSigner:
    return app.extensions[EXTENSION]


def case_url(base_url: str, call_id: str, card_uuid: str, params: dict[str, str], brief: bool = False) -> str:
    return f"{base_url}/cases/{call_id}/{card_uuid}{'/brief' if brief else ''}?{urlencode(params)}"


def attach_links(response: dict, call_id: str, base_url: str) -> None:
    """Add the signed case-view link to every card of a live response (before it is recorded and sent)."""
    if recorder_of(current_app).store is None:
        return  # no audit trail, no record to show
    signer = signer_of(current_app)
    for card in response.get("cards") or []:
        params = signer.issue(call_id, card["uuid"])
        card.setdefault("links", []).append(
            {"label": LINK_LABEL, "url": case_url(base_url, call_id, card["uuid"], params), "type": "absolute"}
        )


def _page(html: str, status: int = 200) -> Response:
    return Response(html, status=status, mimetype="text/html", headers=HEADERS)


def _document(call_id: str, card_uuid: str, command: str) -> dict:
    link = signer_of(current_app).verify(call_id, card_uuid, request.args.get("e"), request.args.get("s"))
    store = recorder_of(current_app).store
    document = store.case_document(link.call_id, link.card_uuid, command, via="case-view link") if store else None
    if document is None:
        abort(404, "This case is no longer in the audit trail.")
    return document


@bp.get("/cases/<call_id>/<card_uuid>")
def case_view(call_id: str, card_uuid: str):
    document = _document(call_id, card_uuid, "case-view")
    brief = case_url("", call_id, card_uuid, {"e": request.args["e"], "s": request.args["s"]}, brief=True)
    try:
        return _page(render_case_view(document, card_uuid, brief_url=brief))
    except CaseNotFound:
        abort(404, "This card has no evaluation to show.")


@bp.get("/cases/<call_id>/<card_uuid>/brief")
def brief(call_id: str, card_uuid: str):
    document = _document(call_id, card_uuid, "brief")
    back = case_url("", call_id, card_uuid, {"e": request.args["e"], "s": request.args["s"]})
    try:
        return _page(render_brief(document, [card_uuid], back_url=back))
    except CaseNotFound:
        abort(404, "This card has no evaluation to show.")


@bp.errorhandler(Exception)
def _refused(exc: Exception):
    """A person opened the link: the answer is a page, with the status and sentence of web/http_errors.py."""
    failure = describe(exc)
    if failure.code == "internal-error":
        log.error("case view failed: %s", type(exc).__name__)  # the class only: the message may hold patient data
    html = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{failure.status}</title></head>"
        f"<body style='font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto'>"
        f"<h1>The case view cannot be shown</h1><p>{escape(failure.message)}</p></body></html>"
    )
    return _page(html, failure.status)
