"""`cds-hooks brief REQUEST.json`: the printable peer-to-peer brief of a request file, offline.

The request is evaluated as `cds-hooks evaluate` does (development settings, no audit trail: an offline
look is not a call to record), and the brief is rendered from the same content the audit trail would
keep for the call (audit/call_record.py `sealed_content`), by the renderer of the case view's brief.
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


def _brief(args) -> int:
    from cds_hooks.audit.call_record import CallRecord, sealed_content
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
        hook = body.get("hook") if isinstance(body, dict) else None
        evaluator = registry.get(args.service) if args.service else next(
            (registry.get(p.service_id) for p in registry.packs() if p.hook == hook), None)
        if evaluator is None:
            print(f"no service answers {args.service or hook!r}", file=sys.stderr)
            return 2
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
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(html)
        print(f"brief for {len(outcome.cases)} case(s) written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(html)
    return 0


def register(sub) -> None:
    """Add `brief` to the `cds-hooks` subcommands."""
    p: argparse.ArgumentParser = sub.add_parser(
        "brief", help="write the printable peer-to-peer brief (HTML) for a request file, offline")
    p.add_argument("request", help="CDS Hooks request JSON file")
    p.add_argument("--output", "-o", help="write the HTML to this file instead of standard output")
    p.add_argument("--fhir-server", help="use this FHIR base URL instead of the request's fhirServer")
    p.add_argument("--service", help="service id (default: the one answering the request's hook)")
    p.set_defaults(func=_brief)
