"""`cds-hooks fixtures`, `cds-hooks invoke` and `cds-hooks keys`: testing from the EHR's side.

- `fixtures load|remove|list`: the fixture patients on any FHIR R4 server (sandbox/fixture_loader.py).
- `invoke`: an order-sign call made the way an EHR makes it (sandbox/ehr_client.py), signed with the
  caller's key (sandbox/client_jwt.py), with the cards rendered in the terminal (sandbox/terminal_cards.py).
- `keys generate|jwks`: a key pair for signing, and the JWK Set to give the service.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

from cds_hooks.config import REPO_ROOT

FIXTURES = REPO_ROOT / "fhir_fixtures"
CQL_ROOT = REPO_ROOT / "cql"
DEFAULT_SERVICE_URL = "http://127.0.0.1:8080"
DEFAULT_USER = "Practitioner/surgeon-1"


def _fail(message: str, code: int = 2) -> int:
    print(f"cds-hooks: {message}", file=sys.stderr)
    return code


# ------------------------------------------------------------------------------------- fixtures


def _fixtures(args) -> int:
    from cds_hooks.sandbox.fixture_loader import FixtureLoader, LoadError, shared_keys
    from cds_hooks.sandbox.fixtures import FixtureError, load_fixtures

    root = Path(args.fixtures)
    try:
        chosen = load_fixtures(root, args.names or None)
    except FixtureError as exc:
        return _fail(str(exc))
    if args.action == "list":
        for f in chosen:
            print(f"{f.name:12} Patient/{f.patient_id:20} {len(f.resources):3} resources  {f.label()}")
        return 0
    if not args.fhir_server:
        return _fail("--fhir-server is required")
    loader = FixtureLoader(args.fhir_server, args.token, timeout=args.timeout)
    reports = []
    keep: set[str] = set()
    try:
        if args.action == "load":
            for f in chosen:
                reports.append(loader.load(f, mode=args.mode, dry_run=args.dry_run))
        else:
            staying = [f for f in load_fixtures(root) if f.name not in {c.name for c in chosen}]
            keep = shared_keys(chosen, staying)
            for f in chosen:
                reports.append(loader.remove(f, keep=keep, mode=args.mode, dry_run=args.dry_run))
    except LoadError as exc:
        return _fail(str(exc), 1)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "fixture": r.fixture,
                        "how": r.how,
                        "note": r.note,
                        "counts": r.counts(),
                        "resources": [
                            {
                                "method": w.method,
                                "url": w.url,
                                "status": w.status,
                                "outcome": w.outcome,
                                "detail": w.detail,
                            }
                            for w in r.rows
                        ],
                    }
                    for r in reports
                ],
                indent=2,
            )
        )
    else:
        verb = (
            "would write"
            if args.dry_run and args.action == "load"
            else ("would delete" if args.dry_run else ("wrote" if args.action == "load" else "removed"))
        )
        for r in reports:
            for w in r.rows:
                status = "" if w.status is None else str(w.status)
                detail = f"  ({w.detail})" if w.detail else ""
                print(f"{r.fixture:12} {w.method:6} {w.url:52} {status:>4} {w.outcome}{detail}")
            counts = ", ".join(f"{n} {k}" for k, n in sorted(r.counts().items()))
            how = {
                "transaction": "in one transaction",
                "per-resource": "one resource at a time",
                "dry-run": "(dry run: nothing sent)",
            }[r.how]
            print(
                f"{r.fixture}: {verb} {len(r.rows)} resources {how}: {counts}" + (f"; {r.note}" if r.note else ""),
                file=sys.stderr,
            )
        if args.action == "remove" and keep:
            print(f"kept (shared with fixtures that stay): {', '.join(sorted(keep))}", file=sys.stderr)
    return 0 if all(r.ok for r in reports) else 1


# ------------------------------------------------------------------------------------- keys


def _keys(args) -> int:
    from cds_hooks.sandbox import client_jwt

    if args.action == "generate":
        out = Path(args.out)
        if out.exists() and not args.force:
            return _fail(f"{out} exists; use --force to replace it")
        key = client_jwt.generate_private_key(args.alg)
        jwk = client_jwt.public_jwk(key, args.kid)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(client_jwt.private_key_pem(key))
        print(f"private key: {out} (keep it secret); kid: {jwk['kid']}; alg: {jwk['alg']}", file=sys.stderr)
    else:
        try:
            signing = client_jwt.load_signing_key(args.key, args.kid)
        except (OSError, client_jwt.SigningKeyError) as exc:
            return _fail(str(exc))
        jwk = signing.public_jwk
    document = json.dumps(client_jwt.jwks(jwk), indent=2)
    if getattr(args, "jwks_out", None):
        Path(args.jwks_out).write_text(document + "\n", encoding="utf-8")
        print(f"JWK Set: {args.jwks_out}", file=sys.stderr)
    else:
        print(document)
    return 0


# ------------------------------------------------------------------------------------- invoke


def _issuer(args):
    from cds_hooks.sandbox import client_jwt

    if not args.key:
        if args.iss or args.kid or args.jku or args.tenant:
            raise ValueError("--iss, --kid, --jku and --tenant need --key")
        return None
    if not args.iss:
        raise ValueError("--key needs --iss (the issuer the service trusts)")
    signing = client_jwt.load_signing_key(args.key, args.kid)
    if args.alg and args.alg != signing.alg:
        raise ValueError(f"--alg {args.alg} does not match the key, which signs {signing.alg}")
    return client_jwt.TokenIssuer(signing, iss=args.iss, tenant=args.tenant, jku=args.jku, lifetime=args.lifetime)


def _draft_orders(args) -> tuple[dict, str | None]:
    """The draftOrders Bundle and, when it is a bundled fixture, the fixture's name."""
    from cds_hooks.sandbox import draft_orders as d

    if args.order and args.cpt:
        raise d.OrderError("give either --order or --cpt/--level, not both")
    if args.order:
        candidate = Path(args.order)
        fixture = None
        if not candidate.exists():
            if not (FIXTURES / "orders" / f"{args.order}.json").exists():
                known = ", ".join(sorted(p.stem for p in (FIXTURES / "orders").glob("*.json")))
                raise d.OrderError(f"--order {args.order!r} is neither a file nor a fixture order ({known})")
            candidate, fixture = FIXTURES / "orders" / f"{args.order}.json", args.order
        orders = d.read_orders_file(candidate)
        if args.patient:
            orders = copy.deepcopy(orders)
            for entry in orders.get("entry") or []:
                if isinstance(entry.get("resource"), dict):
                    entry["resource"]["subject"] = {"reference": f"Patient/{args.patient}"}
            fixture = fixture if args.patient == _fixture_patient_id(fixture) else None
        return orders, fixture
    if not args.cpt:
        raise d.OrderError("give --order NAME|FILE, or --cpt CODE --level LEVEL --patient ID")
    if not args.patient:
        raise d.OrderError("--cpt needs --patient")
    catalogue = {c["code"]: c for c in d.catalogue_from_folder(CQL_ROOT)}
    levels = d.parse_levels(args.level or [])
    d.check_levels_for_code(CQL_ROOT, args.cpt.strip(), levels)
    order = d.fusion_order(
        patient_id=args.patient,
        cpt=args.cpt,
        levels=levels,
        priority=args.priority,
        user_id=args.user or DEFAULT_USER,
        occurrence=args.date,
        display=(catalogue.get(args.cpt) or {}).get("display"),
    )
    return d.bundle([order]), _fixture_for_patient(args.patient)


def _fixture_patient_id(name: str | None) -> str | None:
    from cds_hooks.sandbox.fixtures import FixtureError, load_fixture

    if not name:
        return None
    try:
        return load_fixture(FIXTURES, name).patient_id
    except FixtureError:
        return None


def _fixture_for_patient(patient_id: str) -> str | None:
    from cds_hooks.sandbox.fixtures import load_fixtures

    return next((f.name for f in load_fixtures(FIXTURES) if f.patient_id == patient_id), None)


def _invoke(args) -> int:
    from cds_hooks.sandbox import draft_orders as d
    from cds_hooks.sandbox.client_jwt import SigningKeyError
    from cds_hooks.sandbox.ehr_client import CdsClient, ClientError

    try:
        issuer = _issuer(args)
        orders, fixture_name = _draft_orders(args)
    except (ValueError, OSError, SigningKeyError) as exc:  # OrderError is a ValueError
        return _fail(str(exc))
    patient_id = args.patient or d.patient_of(orders)
    if not patient_id:
        return _fail("the orders name no patient; add --patient")
    user_id = args.user or d.requester_of(orders) or DEFAULT_USER

    client = CdsClient(args.service_url, issuer, timeout=args.timeout)
    try:
        services = _services_to_call(client.discover(), args.service, orders)
    except ClientError as exc:
        return _fail(str(exc), 1)
    except LookupError as exc:
        return _fail(str(exc))
    context = {
        "userId": user_id,
        "patientId": patient_id,
        **({"encounterId": args.encounter} if args.encounter else {}),
    }
    codes = [
        _call_one(args, client, service, orders, context, fixture_name, label=len(services) > 1) for service in services
    ]
    return max(codes)


def _services_to_call(discovery: dict, named: str | None, orders: dict) -> list[dict]:
    """The discovery entries to call: the one named; else those whose pack claims the draft orders (an
    EHR calls every order-sign service and each answers for its own orders, so several are all called).
    Raises LookupError, one line, when none of the order-sign services in discovery claims them."""
    from cds_hooks.sandbox import draft_orders as d
    from cds_hooks.sandbox.ehr_client import pick_service

    if named:
        return [pick_service(discovery, named)]
    order_sign = [s for s in discovery.get("services", []) if isinstance(s, dict) and s.get("hook") == "order-sign"]
    claiming = set(d.claiming_services(CQL_ROOT, orders))
    chosen = [s for s in order_sign if s.get("id") in claiming]
    if chosen:
        return chosen
    if len(order_sign) == 1 and not claiming:
        # One service, and no pack here claims the orders: it may know codes this checkout does not
        # (a site's local order codes); its answer says whether it checks them.
        return order_sign
    listed = ", ".join(str(s.get("id")) for s in order_sign) or "none"
    raise LookupError(
        f"no service claims these orders (order-sign services in discovery: {listed}); name one with --service"
    )


def _call_one(args, client, service: dict, orders: dict, context: dict, fixture_name: str | None, label: bool) -> int:
    """One order-sign call to `service`, its answer printed (headed by the service id when `label`)."""
    from cds_hooks.sandbox.ehr_client import ClientError, order_sign_request, resolve_prefetch
    from cds_hooks.sandbox.fixtures import fixture_prefetch, load_fixture
    from cds_hooks.sandbox.terminal_cards import render_response

    patient_id, user_id = context["patientId"], context["userId"]
    try:
        templates = service.get("prefetch") or {}
        prefetch = None
        if args.no_prefetch:
            note = "no prefetch: the service fetches from the FHIR server"
            if not args.fhir_server:
                print(
                    "cds-hooks: --no-prefetch without --fhir-server leaves the service no data source", file=sys.stderr
                )
        elif args.fhir_server:
            outcome = resolve_prefetch(
                templates,
                context,
                args.fhir_server,
                access_token=args.fhir_token,
                user_id=user_id,
                timeout=args.timeout,
            )
            prefetch = outcome.prefetch
            note = "prefetch from " + args.fhir_server + ": " + "; ".join(f"{k} {v}" for k, v in outcome.notes.items())
        elif fixture_name:
            prefetch = fixture_prefetch(load_fixture(FIXTURES, fixture_name), templates, context, user_id)
            note = f"prefetch from the bundled fixture {fixture_name!r} (no --fhir-server given)"
        else:
            return _fail(f"Patient/{patient_id} is not a bundled fixture: give --fhir-server (or --no-prefetch)")
        request = order_sign_request(
            patient_id=patient_id,
            user_id=user_id,
            draft_orders=orders,
            fhir_server=args.fhir_server,
            access_token=args.fhir_token,
            service_id=service["id"],
            encounter_id=args.encounter,
            prefetch=prefetch,
        )
        if args.save_request:
            save = Path(args.save_request)
            if label:  # one request per service called
                save = save.with_name(f"{save.stem}.{service['id']}{save.suffix}")
            save.write_text(json.dumps(request, indent=2) + "\n", encoding="utf-8")
        exchange = client.call(service["id"], request)
    except ClientError as exc:
        return _fail(str(exc), 1)

    signed = "signed JWT" if client.issuer else "no JWT (authentication must be off)"
    print(f"order-sign -> {client.service_url(service['id'])} ({signed}); {note}", file=sys.stderr)
    if label:
        print(f"== {service['id']} ==")
    if args.json or not exchange.ok or not isinstance(exchange.body, dict):
        print(
            json.dumps(exchange.body, indent=2, ensure_ascii=False)
            if not isinstance(exchange.body, str)
            else exchange.body
        )
        if not exchange.ok:
            print(f"cds-hooks: the service answered {exchange.outcome()}", file=sys.stderr)
        return 0 if exchange.ok else 1
    colour = args.color == "always" or (args.color == "auto" and sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
    print(render_response(exchange.body, colour=colour))
    return 0


# ------------------------------------------------------------------------------------- parser


def add_sandbox_commands(sub) -> None:
    from cds_hooks.sandbox.client_jwt import ALGORITHMS, DEFAULT_ALGORITHM, MAX_LIFETIME
    from cds_hooks.sandbox.draft_orders import PRIORITIES
    from cds_hooks.sandbox.fixture_loader import MODES

    fixtures = sub.add_parser("fixtures", help="put the fixture patients on a FHIR server, or remove them")
    fixtures.add_argument("action", choices=["load", "remove", "list"])
    fixtures.add_argument("names", nargs="*", help="fixture names (default: all)")
    fixtures.add_argument("--fhir-server", help="FHIR R4 base URL")
    fixtures.add_argument("--token", help="bearer token for the FHIR server")
    fixtures.add_argument("--dry-run", action="store_true", help="say what would be sent; send nothing")
    fixtures.add_argument(
        "--mode",
        choices=MODES,
        default="auto",
        help="transaction, one request per resource, or a transaction falling back to one per resource (default)",
    )
    fixtures.add_argument("--json", action="store_true", help="print the report as JSON")
    fixtures.add_argument("--fixtures", default=str(FIXTURES), help="fixture folder (default: %(default)s)")
    fixtures.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    fixtures.set_defaults(func=_fixtures)

    invoke = sub.add_parser("invoke", help="call the service's order-sign hook as an EHR would")
    invoke.add_argument(
        "--service-url",
        default=DEFAULT_SERVICE_URL,
        help="service base URL or its /cds-services URL (default: %(default)s)",
    )
    invoke.add_argument(
        "--service",
        help="service id (default: each order-sign service in discovery whose pack claims the orders)",
    )
    invoke.add_argument("--order", help="a fixture order name (seed, meets-all, ...) or a draft-orders JSON file")
    invoke.add_argument("--cpt", help="CPT code of a fusion order to build (e.g. 22558)")
    invoke.add_argument("--level", action="append", help="operative level(s), e.g. L5-S1, L4-L5 or L4-S1")
    invoke.add_argument("--priority", choices=PRIORITIES, default="routine")
    invoke.add_argument("--date", help="planned date of surgery (occurrenceDateTime), YYYY-MM-DD")
    invoke.add_argument("--patient", help="patient id (default: the orders' subject)")
    invoke.add_argument("--user", help=f"context.userId (default: the orders' requester, else {DEFAULT_USER})")
    invoke.add_argument("--encounter", help="context.encounterId")
    invoke.add_argument("--fhir-server", help="FHIR base URL: prefetch is resolved there, and sent as fhirServer")
    invoke.add_argument("--fhir-token", help="FHIR access token: used for prefetch and sent as fhirAuthorization")
    invoke.add_argument("--no-prefetch", action="store_true", help="send no prefetch; the service fetches")
    invoke.add_argument("--key", help="private key (PEM or JWK) to sign the JWT with")
    invoke.add_argument("--kid", help="key id in the JWT header (default: the JWK's kid or the key thumbprint)")
    invoke.add_argument("--iss", help="JWT issuer")
    invoke.add_argument("--alg", choices=ALGORITHMS, help="check the key signs with this algorithm")
    invoke.add_argument("--jku", help="URL of the JWK Set, put in the JWT header")
    invoke.add_argument("--tenant", help="JWT tenant claim")
    invoke.add_argument(
        "--lifetime", type=int, default=MAX_LIFETIME, help=f"JWT lifetime in seconds (at most {MAX_LIFETIME})"
    )
    invoke.add_argument("--json", action="store_true", help="print the response JSON instead of the cards")
    invoke.add_argument("--save-request", help="also write the request body to this file")
    invoke.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    invoke.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP request")
    invoke.set_defaults(func=_invoke)

    keys = sub.add_parser("keys", help="a signing key pair for invoke, and its JWK Set")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    generate = keys_sub.add_parser("generate", help="write a new private key; print the public JWK Set")
    generate.add_argument("--out", required=True, help="private key file to write (PEM, mode 0600)")
    generate.add_argument("--alg", choices=ALGORITHMS, default=DEFAULT_ALGORITHM)
    generate.add_argument("--kid", help="key id (default: the RFC 7638 thumbprint)")
    generate.add_argument("--jwks-out", help="write the JWK Set here instead of printing it")
    generate.add_argument("--force", action="store_true", help="replace an existing key file")
    generate.set_defaults(func=_keys)
    jwks = keys_sub.add_parser("jwks", help="print the public JWK Set of a private key")
    jwks.add_argument("--key", required=True, help="private key (PEM or JWK)")
    jwks.add_argument("--kid", help="key id (default: the JWK's kid or the RFC 7638 thumbprint)")
    jwks.add_argument("--jwks-out", help="write the JWK Set here instead of printing it")
    jwks.set_defaults(func=_keys)
