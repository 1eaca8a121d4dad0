"""Command-line access to the audit database: `db`, `report` and `audit` subcommands of `cds-hooks`.

Every command that reads audit content (report, show, export) or changes it (purge, rekey) writes
who did it, when and what into the access log first. The actor defaults to the operating-system
user at this host; `--purpose` adds why (a dispute, a quality review).
"""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import sys
from datetime import datetime, timedelta, timezone

from cds_hooks.config import Config


def _actor(args) -> str:
    if args.actor:
        return args.actor
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _when(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date or date-time: {text!r} (use YYYY-MM-DD)") from None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def _period(args) -> tuple[datetime | None, datetime | None]:
    until = args.until
    since = args.since
    if args.days is not None:
        end = until or datetime.now(timezone.utc).replace(tzinfo=None)
        since = end - timedelta(days=args.days)
    return since, until


def _store():
    from cds_hooks.audit.setup import open_store

    return open_store(Config.from_env())


def _output(args, text: str) -> None:
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


# ------------------------------------------------------------------------- commands


def _db_upgrade(args) -> int:
    from cds_hooks.audit.database import create_db_engine, database_url, upgrade

    config = Config.from_env()
    engine = create_db_engine(database_url(config), config.database_busy_timeout)
    print(f"audit database ({engine.dialect.name}) at revision {upgrade(engine, args.revision)}")
    return 0


def _db_current(args) -> int:
    from cds_hooks.audit.database import create_db_engine, current_revision, database_url

    config = Config.from_env()
    engine = create_db_engine(database_url(config), config.database_busy_timeout)
    print(f"audit database ({engine.dialect.name}) at revision {current_revision(engine) or 'none'}")
    return 0


def _report(args) -> int:
    from cds_hooks.audit.usage_report import build_report, render_csv, render_text

    from cds_hooks.packs.loader import load_rule_packs

    since, until = _period(args)
    config = Config.from_env()
    packs = load_rule_packs(config.cql_root, config.rule_packs or None)
    informational = frozenset(c.id for p in packs.values() for c in p.model.criteria if c.informational)
    report = build_report(_store(), since, until, args.service, _actor(args), args.mode, informational)
    _output(args, render_csv(report) if args.format == "csv" else render_text(report) + "\n")
    return 0


def _show(args) -> int:
    documents = _store().show(args.ident, _actor(args), args.purpose)
    if not documents:
        print(f"no call, card, suggestion or hookInstance {args.ident!r} in the audit trail", file=sys.stderr)
        return 1
    if args.response:
        out = [d.get("response") for d in documents]
        text = json.dumps(out[0] if len(out) == 1 else out, indent=2, ensure_ascii=False)
    else:
        text = json.dumps(documents[0] if len(documents) == 1 else documents, indent=2, ensure_ascii=False, default=str)
    _output(args, text + "\n")
    return 0


def _export(args) -> int:
    since, until = _period(args)
    documents = _store().export(since, until, args.service, _actor(args), args.purpose)
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    count = 0
    try:
        for doc in documents:
            out.write(json.dumps(doc, ensure_ascii=False, default=str) + "\n")
            count += 1
    finally:
        if args.output:
            out.close()
    print(f"exported {count} calls", file=sys.stderr)
    return 0


def _purge(args) -> int:
    config = Config.from_env()
    days = args.older_than_days if args.older_than_days is not None else config.audit_retention_days
    before = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(days=days)
    counts = _store().purge(before, _actor(args), dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    print(
        f"{verb} (older than {days} days, before {before.isoformat(timespec='seconds')}Z): "
        + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items())
    )
    return 0


def _rekey(args) -> int:
    store = _store()
    done = store.rekey(_actor(args))
    print(
        f"re-encrypted {done['calls']} calls and {done['feedback']} feedback entries under key "
        f"{store.sealer.current}; rows per key now: {json.dumps(store.key_usage())}"
    )
    return 0


def _access_log(args) -> int:
    for entry in reversed(_store().access_entries(args.limit)):
        print(f"{entry['at']}  {entry['actor']}  {entry['command']}  records={entry['records']}  {entry['detail']}")
    return 0


def _new_key(args) -> int:
    from cds_hooks.audit.sealing import new_key

    print(new_key())
    return 0


# ------------------------------------------------------------------------- parser


def _reader_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--actor", help="who is reading, for the access log (default: user@host)")
    p.add_argument("--purpose", help="why, for the access log")


def _period_options(p: argparse.ArgumentParser, default_days: int | None) -> None:
    p.add_argument("--since", type=_when, help="start of the period (UTC date or date-time, inclusive)")
    p.add_argument("--until", type=_when, help="end of the period (exclusive; default now)")
    p.add_argument(
        "--days", type=int, default=default_days, help="the period is this many days up to --until (overrides --since)"
    )
    p.add_argument("--service", help="only this service id")
    p.add_argument("--output", "-o", help="write to this file instead of standard output")


def register(sub) -> None:
    """Add `db`, `report` and `audit` to the `cds-hooks` subcommands."""
    db = sub.add_parser("db", help="the audit database schema").add_subparsers(dest="db_command", required=True)
    p = db.add_parser("upgrade", help="apply the schema migrations")
    p.add_argument("--revision", default="head")
    p.set_defaults(func=_db_upgrade)
    db.add_parser("current", help="print the schema revision").set_defaults(func=_db_current)

    p = sub.add_parser("report", help="overrides, unmet criteria, suggestion acceptance, volume and latency")
    _period_options(p, default_days=30)
    p.add_argument("--format", choices=("table", "csv"), default="table")
    p.add_argument(
        "--mode",
        choices=("live", "shadow", "off", "all"),
        default="live",
        help="calls answered in this go-live mode (default live; shadow: what would have been shown)",
    )
    _reader_options(p)
    p.set_defaults(func=_report)

    audit = sub.add_parser("audit", help="read, export and purge the audit trail").add_subparsers(
        dest="audit_command", required=True
    )
    p = audit.add_parser("show", help="everything stored about a call (decrypted)")
    p.add_argument("ident", help="call id, card uuid, suggestion uuid or hookInstance")
    p.add_argument("--response", action="store_true", help="print only the response JSON the user was shown")
    p.add_argument("--output", "-o")
    _reader_options(p)
    p.set_defaults(func=_show)

    p = audit.add_parser("export", help="every call of a period as JSON lines (decrypted)")
    _period_options(p, default_days=None)
    _reader_options(p)
    p.set_defaults(func=_export)

    p = audit.add_parser("purge", help="delete what is older than the retention period")
    p.add_argument("--older-than-days", type=int, help="default: the audit_retention_days setting")
    p.add_argument("--dry-run", action="store_true", help="count only")
    p.add_argument("--actor", help="who is purging, for the access log (default: user@host)")
    p.set_defaults(func=_purge)

    p = audit.add_parser("rekey", help="re-encrypt rows sealed under older keys with the current key")
    p.add_argument("--actor", help="who is re-keying, for the access log (default: user@host)")
    p.set_defaults(func=_rekey)

    p = audit.add_parser("access-log", help="who read or changed the audit trail")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=_access_log)

    audit.add_parser(
        "new-key", help="print a new random key (base64) for audit_keys or audit_pseudonym_key"
    ).set_defaults(func=_new_key)
