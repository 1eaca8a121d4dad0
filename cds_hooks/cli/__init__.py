"""The `cds-hooks` command: `serve`, `evaluate`; `brief` (cli/brief.py); `db`, `report`, `audit` (cli/audit.py);
`site` (cli/site.py); `corpus eval` (cli/corpus.py); `doctor` (ops/doctor.py); `report-text`, `note-text`; the
sandbox tools (sandbox/cli.py)."""

from __future__ import annotations

import argparse
import json
import sys

from cds_hooks.cli import audit, brief, corpus, site
from cds_hooks.cli.offline import offline_app
from cds_hooks.cli.services import NoClaimingService, claiming_services
from cds_hooks.config import Config
from cds_hooks.errors import CdsError
from cds_hooks.ops import doctor, logs
from cds_hooks.ops.logs import QuietRequestHandler


def _serve(args) -> int:
    if args.production:
        return _serve_production(args)
    from werkzeug.serving import make_server

    from cds_hooks.web.app import create_app
    from cds_hooks.web.extensions import registry_of

    host, port = args.host or "127.0.0.1", args.port or 8080
    app = create_app(Config.development())
    try:
        # Bound before the banner: a port in use fails here (werkzeug says so and exits), before
        # anything claims to be serving.
        # The service logs each request itself; werkzeug's own access log would print query strings.
        server = make_server(host, port, app, threaded=True, request_handler=QuietRequestHandler)
    except OSError as exc:
        registry_of(app).engine.close()
        print(f"cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"fusion-cds development server on http://{host}:{port}/cds-services", file=sys.stderr)
    print(f"try-it page on http://{host}:{port}/try/", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        registry_of(app).engine.close()
    return 0


def _serve_production(args) -> int:
    """gunicorn on cds_hooks/ops/gunicorn_conf.py, in this process (settings from the environment)."""
    from cds_hooks.auth.caller_jwt import check_settings
    from cds_hooks.packs.loader import load_rule_packs

    try:
        config = Config.from_env()
    except ValueError as exc:  # pydantic's ValidationError: say what is wrong before gunicorn starts
        print(f"invalid settings: {exc}", file=sys.stderr)
        return 2
    # The settings and rule packs are checked here, once, so that a problem is one line and exit 2
    # instead of gunicorn's own report of a failed application load.
    check_settings(config)
    load_rule_packs(config.cql_root, config.rule_packs or None)
    from gunicorn.app.wsgiapp import WSGIApplication

    argv = ["--config", "python:cds_hooks.ops.gunicorn_conf"]
    if args.host or args.port:
        default_host, _, default_port = config.server_bind.rpartition(":")
        argv += ["--bind", f"{args.host or default_host}:{args.port or default_port}"]
    sys.argv = ["cds-hooks serve --production", *argv, "cds_hooks.web.wsgi:app"]
    WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]", prog="cds-hooks serve --production").run()
    return 0  # gunicorn exits the process itself


def _evaluate(args) -> int:
    from cds_hooks.web.extensions import registry_of

    try:
        with open(args.request, encoding="utf-8") as f:
            body = json.load(f)
    except (OSError, ValueError) as exc:
        print(f"cannot read {args.request}: {exc}", file=sys.stderr)
        return 2
    if args.fhir_server and isinstance(body, dict):
        body["fhirServer"] = args.fhir_server
    app = offline_app()
    registry = registry_of(app)
    try:
        if args.service:
            service_ids = [args.service]  # an unknown id gets the service's own 404, printed below
        else:
            try:
                service_ids = [e.pack.service_id for e in claiming_services(registry, body)]
            except NoClaimingService as exc:
                print(f"cds-hooks evaluate: {exc}", file=sys.stderr)
                return 2
        client = app.test_client()
        responses = {sid: client.post(f"/cds-services/{sid}", json=body) for sid in service_ids}
        if len(responses) == 1:
            (response,) = responses.values()
            print(json.dumps(response.get_json(), indent=2, ensure_ascii=False))
        else:
            # Orders for several services: each answers as it would to the EHR, labelled by its id.
            print(json.dumps({sid: r.get_json() for sid, r in responses.items()}, indent=2, ensure_ascii=False))
        return 0 if all(r.status_code == 200 for r in responses.values()) else 1
    finally:
        registry.engine.close()


def _report_text(args) -> int:
    from pathlib import Path

    from cds_hooks.spine.report_text_eval import GOLD, run_bench, run_eval

    gold = Path(args.gold) if args.gold else GOLD
    if args.action == "bench":
        return run_bench(gold, repeat=args.repeat)
    return run_eval(gold, verbose=args.verbose, as_json=args.json)


def _note_text(args) -> int:
    from pathlib import Path

    from cds_hooks.spine.note_text_eval import GOLD, run_bench, run_eval

    gold = Path(args.gold) if args.gold else GOLD
    if args.action == "bench":
        return run_bench(gold, repeat=args.repeat)
    return run_eval(gold, split=args.split, verbose=args.verbose, as_json=args.json)


SANDBOX_COMMANDS = ("fixtures", "invoke", "keys")


def _may_name_sandbox_command(argv: list[str]) -> bool:
    """The EHR-side commands (cds_hooks.sandbox) are imported only when the command line may use them:
    it names one, asks for help, or names nothing (argparse then lists every command)."""
    return not argv or any(a in SANDBOX_COMMANDS or a in ("-h", "--help") for a in argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="cds-hooks",
        description="fusion-cds: CDS Hooks order-sign service checking surgical orders against payer criteria",
    )
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve", help="run the service (development server with authentication off, or --production)"
    )
    serve.add_argument("--host", help="listen address (default 127.0.0.1, or CDS_SERVER_BIND's in production)")
    serve.add_argument("--port", type=int, help="listen port (default 8080, or CDS_SERVER_BIND's in production)")
    serve.add_argument(
        "--production",
        action="store_true",
        help="production server: gunicorn, settings from the environment, authentication as configured",
    )
    serve.set_defaults(func=_serve)

    evaluate = sub.add_parser("evaluate", help="print the response the service gives to a request file")
    evaluate.add_argument("request", help="CDS Hooks request JSON file")
    evaluate.add_argument("--fhir-server", help="use this FHIR base URL instead of the request's fhirServer")
    evaluate.add_argument(
        "--service",
        help="service id (default: every service claiming the request's draft orders; several are printed as "
        "one JSON object keyed by service id)",
    )
    evaluate.set_defaults(func=_evaluate)
    brief.register(sub)
    audit.register(sub)
    site.register(sub)
    corpus.register(sub)
    doctor.register(sub)

    report_text = sub.add_parser(
        "report-text", help="evaluate or benchmark the report-text extractor (docs/report-text.md)"
    )
    report_text.add_argument("action", choices=["eval", "bench"])
    report_text.add_argument("--gold", help="gold set (default eval/report_text/gold.toml)")
    report_text.add_argument("--verbose", action="store_true", help="list every miss and extra")
    report_text.add_argument("--json", action="store_true", help="figures as JSON")
    report_text.add_argument("--repeat", type=int, default=20, help="bench: passes over the corpus")
    report_text.set_defaults(func=_report_text)

    note_text = sub.add_parser("note-text", help="evaluate or benchmark the clinical-note reader (docs/note-text.md)")
    note_text.add_argument("action", choices=["eval", "bench"])
    note_text.add_argument(
        "--split",
        choices=["dev", "heldout", "heldout-2"],
        default="dev",
        help="eval: the gold split to score (default dev; heldout is spent, heldout-2 is for the final run)",
    )
    note_text.add_argument("--gold", help="gold set (default eval/note_text/gold.jsonl)")
    note_text.add_argument("--verbose", action="store_true", help="list every miss and extra")
    note_text.add_argument("--json", action="store_true", help="figures as JSON")
    note_text.add_argument("--repeat", type=int, default=20, help="bench: passes over the gold passages")
    note_text.set_defaults(func=_note_text)
    if _may_name_sandbox_command(argv):
        from cds_hooks.sandbox.cli import add_sandbox_commands

        add_sandbox_commands(sub)

    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    try:
        return args.func(args)
    except CdsError as exc:
        # A domain error at start-up (a rule pack that fails its checks, no CQL engine, ...) is the
        # user's to fix: one line saying what, no traceback.
        print(f"cds-hooks {args.command}: {exc.message or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
