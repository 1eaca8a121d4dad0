"""`cds-hooks brief`: the printable peer-to-peer brief, of a request file or of a card in the audit trail.

`cds-hooks brief REQUEST.json` evaluates the request as `cds-hooks evaluate` does (development
settings, no audit trail: an offline look is not a call to record) and renders the brief from the same
content the audit trail would keep for the call (audit/call_record.py `sealed_content`).
`cds-hooks brief --card UUID` renders it from the audit record of the call that card was part of: what
the surgeon was told then, long after the card's link has expired; the read is written to the access
log first, like `cds-hooks audit show`. Both use the case view's renderer (web/case_pages.py).
"""

from __future__ import annotations

import argparse
import json
import sys

from cds_hooks.config import Config


def _read(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        print(f"cannot read {path}: {exc}", file=sys.stderr)
        return None


def _from_audit(args) -> str | None:
    from cds_hooks.audit.setup import open_store
    from cds_hooks.cli.audit import _actor
    from cds_hooks.web.case_pages import render_brief

    store = open_store(Config.from_env())
    calls = store.find_calls(args.card)
    document = (
        store.case_document(calls[0], args.card, "brief", via=_actor(args), purpose=args.purpose)
        if len(calls) == 1
        else None
    )
    if document is None:
        print(f"no card {args.card!r} in the audit trail", file=sys.stderr)
        return None
    return render_brief(document, [args.card])


def _write(args, html: str, what: str) -> None:
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(html)
        print(f"brief for {what} written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(html)


def _brief(args) -> int:
    if args.card:
        html = _from_audit(args)
        if html is None:
            return 1
        _write(args, html, f"card {args.card}")
        return 0
    if not args.request:
        print("name a request file, or --card UUID", file=sys.stderr)
        return 2
    return _brief_of_request(args)


def _brief_of_request(args) -> int:
    from cds_hooks.audit.call_record import CallRecord, sealed_content
    from cds_hooks.cli.services import NoClaimingService, claiming_services
    from cds_hooks.errors import CdsError
    from cds_hooks.hooks.hook_request import parse_hook_request
    from cds_hooks.web.app import create_app
    from cds_hooks.web.case_pages import render_brief
    from cds_hooks.web.extensions import registry_of

    body = _read(args.request)
    if body is None:
        return 2
    if args.fhir_server and isinstance(body, dict):
        body["fhirServer"] = args.fhir_server
    registry = registry_of(create_app(Config.development(audit_enabled=False)))
    try:
        if args.service:
            evaluator = registry.get(args.service)
            if evaluator is None:
                print(f"no service {args.service!r} (services: {_served(registry)})", file=sys.stderr)
                return 2
        else:
            try:
                claiming = claiming_services(registry, body)
            except NoClaimingService as exc:
                print(f"{args.request}: {exc}, so no brief", file=sys.stderr)
                return 2
            if len(claiming) > 1:
                # One brief is one service's call; the reviewer of each payer criterion set gets its own.
                ids = ", ".join(e.pack.service_id for e in claiming)
                print(f"{args.request}: orders for several services ({ids}); name one with --service", file=sys.stderr)
                return 2
            (evaluator,) = claiming
        try:
            request = parse_hook_request(body, evaluator.pack.hook)
            outcome = evaluator.evaluate(request)
        except CdsError as exc:
            print(f"cannot evaluate {args.request}: {exc.message}", file=sys.stderr)
            return 1
        if not outcome.cases:
            print(f"{args.request}: no order the service checks, so no brief", file=sys.stderr)
            return 1
        html = render_brief(sealed_content(CallRecord(evaluator.pack.service_id, request=request, outcome=outcome)))
    finally:
        registry.engine.close()
    _write(args, html, f"{len(outcome.cases)} case(s)")
    return 0


def _served(registry) -> str:
    return ", ".join(p.service_id for p in registry.packs())


def register(sub) -> None:
    """Add `brief` to the `cds-hooks` subcommands."""
    p: argparse.ArgumentParser = sub.add_parser(
        "brief", help="write the printable peer-to-peer brief (HTML) for a request file, offline"
    )
    p.add_argument("request", nargs="?", help="CDS Hooks request JSON file (evaluated offline)")
    p.add_argument("--card", help="instead: the card uuid of a call in the audit trail (the read is logged)")
    p.add_argument("--actor", help="with --card: who is reading, for the access log (default: user@host)")
    p.add_argument("--purpose", help="with --card: why, for the access log")
    p.add_argument("--output", "-o", help="write the HTML to this file instead of standard output")
    p.add_argument("--fhir-server", help="use this FHIR base URL instead of the request's fhirServer")
    p.add_argument("--service", help="service id (default: the one service claiming the request's draft orders)")
    p.set_defaults(func=_brief)
