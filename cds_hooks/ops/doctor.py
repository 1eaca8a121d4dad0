"""`cds-hooks doctor`: checks a configuration end to end before go-live, and prints a pass/fail table.

Each check does what the service would do with the same settings, against the real thing:

- settings: the configuration parses, and with authentication on names an audience and an issuer;
- public base URL: an absolute https URL without query or fragment, from which the service builds the
  `aud` a caller's JWT must carry (CDS Hooks 2.0, "Trusting CDS Clients"); with `--registered-url`,
  the URL entered in the EHR must be one of those;
- each trusted issuer's JWK Set URL (and `jku` allowlist entries): downloaded and parsed exactly as
  for verification, with at least one signing key usable with the issuer's algorithms;
- audit database: reachable, at the schema revision this code ships; audit keys configured;
- CQL engine: Node starts, every rule pack's ELM loads, and the seed fixture request evaluates to cards;
- each allowlisted FHIR server (and each `--fhir-server`): `GET [base]/metadata` answers a FHIR R4
  CapabilityStatement (FHIR R4, "capabilities"), over the transport the service would use.

Exit status 1 when any check fails, 0 otherwise; warnings do not fail. Nothing secret is printed.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

PASS, FAIL, WARN, SKIP = "pass", "fail", "warn", "skip"


@dataclass
class Check:
    name: str
    status: str
    detail: str


# ------------------------------------------------------------------ settings and the audience


def check_settings(config) -> Check:
    from cds_hooks.auth.caller_jwt import ConfigError, check_settings as security_check

    try:
        security_check(config)
    except ConfigError as exc:
        return Check("settings", FAIL, str(exc))
    if config.auth_disabled:
        return Check("settings", WARN, "caller authentication is OFF (auth_disabled): any caller can use the service")
    return Check(
        "settings",
        PASS,
        f"{len(config.trusted_issuers)} trusted issuer(s), "
        f"{len(config.fhir_servers)} FHIR server entr{'y' if len(config.fhir_servers) == 1 else 'ies'}",
    )


def expected_audiences(base: str, service_ids: list[str]) -> dict[str, str]:
    base = base.rstrip("/")
    out = {"discovery": f"{base}/cds-services"}
    for sid in service_ids:
        out[f"service {sid}"] = f"{base}/cds-services/{sid}"
        out[f"feedback {sid}"] = f"{base}/cds-services/{sid}/feedback"
    return out


def check_public_base_url(config, service_ids: list[str], registered_url: str | None) -> Check:
    from cds_hooks.auth.outbound import is_loopback_host

    base = config.public_base_url
    if not base:
        status = WARN if config.auth_disabled else FAIL
        return Check(
            "public base URL",
            status,
            "not set: card links use the request's host, and with authentication on no aud can be checked",
        )
    parts = urlsplit(base)
    loopback_http = parts.scheme == "http" and config.allow_http_loopback and is_loopback_host(parts.hostname or "")
    problems = []
    if parts.scheme != "https" and not loopback_http:
        problems.append("must be https (EHRs call over TLS, and the aud they sign is the https URL)")
    if parts.query or parts.fragment or parts.username or parts.password or not parts.hostname:
        problems.append("must be scheme://host[:port][/path] without user info, query or fragment")
    if problems:
        return Check("public base URL", FAIL, f"{base}: " + "; ".join(problems))
    audiences = expected_audiences(base, service_ids)
    if registered_url is not None:
        if registered_url.rstrip("/") not in audiences.values():
            return Check(
                "public base URL",
                FAIL,
                f"the registered URL {registered_url} is not one this service answers under {base}; "
                f"expected {audiences['discovery']} (discovery) or a service URL below it",
            )
    return Check(
        "public base URL", PASS, "callers' JWTs need aud = " + "; ".join(f"{v} ({k})" for k, v in audiences.items())
    )


# ------------------------------------------------------------------ trusted issuers


def check_issuers(config) -> list[Check]:
    from cds_hooks.auth.caller_jwt import JwksCache, usable_algorithms

    if config.auth_disabled:
        return [Check("trusted issuers", SKIP, "authentication is off")]
    if not config.trusted_issuers:
        return [Check("trusted issuers", FAIL, "none configured (trusted_issuers)")]
    cache = JwksCache(timeout=config.jwks_timeout, allow_http_loopback=config.allow_http_loopback)
    checks = []
    for issuer in config.trusted_issuers:
        label = issuer.iss + (f" (tenant {issuer.tenant})" if issuer.tenant else "")
        for url in ([issuer.jwks_url] if issuer.jwks_url else []) + list(issuer.jku_allowlist):
            name = f"JWK Set of {label}"
            try:
                keys = cache.download(url)
            except Exception as exc:  # noqa: BLE001 - every failure is reported, none is raised
                checks.append(Check(name, FAIL, f"{url}: {_why(exc)}"))
                continue
            usable = {kid: algs for kid, key in keys.items() if (algs := usable_algorithms(key, issuer.algorithms))}
            if not usable:
                checks.append(
                    Check(name, FAIL, f"{url}: {len(keys)} key(s), none usable with {', '.join(issuer.algorithms)}")
                )
            else:
                checks.append(
                    Check(
                        name,
                        PASS,
                        f"{url}: " + ", ".join(f"{kid} ({'/'.join(algs)})" for kid, algs in sorted(usable.items())),
                    )
                )
    return checks


def _why(exc: Exception) -> str:
    import requests

    from cds_hooks.auth.outbound import OutboundError

    if isinstance(exc, OutboundError):
        return str(exc)
    if isinstance(exc, requests.Timeout):
        return "no answer in time"
    if isinstance(exc, requests.ConnectionError):
        return "cannot connect"
    if isinstance(exc, ValueError):
        return "the answer is not a JWK Set (JSON with a keys array)"
    return type(exc).__name__


# ------------------------------------------------------------------ the audit database


def check_database(config) -> list[Check]:
    from sqlalchemy.engine import make_url

    from cds_hooks.audit.database import create_db_engine, current_revision, database_url, head_revision, ping

    if not config.audit_enabled:
        return [Check("audit database", SKIP, "audit_enabled is off")]
    url = make_url(database_url(config))
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).is_file():
        status = WARN if config.database_migrate_on_start else FAIL
        checks = [
            Check(
                "audit database",
                status,
                f"{shown}: no database file yet"
                + (" (the service creates and migrates it at start)" if status == WARN else ""),
            )
        ]
    else:
        engine = create_db_engine(str(url), config.database_busy_timeout)
        try:
            if not ping(engine):
                checks = [Check("audit database", FAIL, f"{shown}: not reachable")]
            else:
                checks = [_revision_check(config, shown, current_revision(engine), head_revision())]
        finally:
            engine.dispose()
    checks.append(_keys_check(config))
    return checks


def _revision_check(config, shown: str, current: str | None, head: str) -> Check:
    if current == head:
        return Check("audit database", PASS, f"{shown}: schema at revision {head} (this code's newest)")
    if current is not None and _is_newer(current, head):
        return Check("audit database", FAIL, f"{shown}: schema at revision {current}, newer than this code's {head}")
    status = WARN if config.database_migrate_on_start else FAIL
    return Check(
        "audit database",
        status,
        f"{shown}: schema at revision {current or 'none'}, this code needs {head}; "
        + (
            "the service migrates it at start (database_migrate_on_start)"
            if status == WARN
            else "run `cds-hooks db upgrade`"
        ),
    )


def _is_newer(current: str, head: str) -> bool:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    from cds_hooks.audit.database import MIGRATIONS

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_revision(current) is None


def _keys_check(config) -> Check:
    from cds_hooks.audit.sealing import Sealer

    if not config.audit_keys:
        return Check(
            "audit keys",
            WARN,
            "none configured: a development key file in var_dir encrypts the trail "
            "(set audit_keys and audit_pseudonym_key for production)",
        )
    try:
        sealer = Sealer.from_config(config)
    except Exception as exc:  # noqa: BLE001 - a bad key is a failed check
        return Check("audit keys", FAIL, _first_line(exc))
    return Check("audit keys", PASS, f"{len(config.audit_keys)} key(s); new rows sealed with {sealer.current!r}")


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]


# ------------------------------------------------------------------ the CQL engine

SEED_REQUEST = Path("requests") / "seed-prefetch.json"


def check_engine(config) -> Check:
    from cds_hooks.engine.bridge import find_node
    from cds_hooks.engine.compiled.adapter import engine_from_config
    from cds_hooks.pipeline.evaluation import Evaluator
    from cds_hooks.hooks.hook_request import parse_hook_request
    from cds_hooks.pipeline.registry import engine_payload
    from cds_hooks.packs.loader import load_rule_packs

    try:
        packs = load_rule_packs(config.cql_root, config.rule_packs or None)
    except Exception as exc:  # noqa: BLE001
        return Check("CQL engine", FAIL, f"rule packs in {config.cql_root}: {_first_line(exc)}")
    if not packs:
        return Check("CQL engine", FAIL, f"no rule pack in {config.cql_root}")
    started = time.perf_counter()
    try:
        engine = engine_from_config(config, workers=1)
        engine.load(*engine_payload(packs))  # the compiled engine compiles here: unsupported ELM fails
    except Exception as exc:  # noqa: BLE001 - UnsupportedElm, a bad library: the service would not start
        return Check("CQL engine", FAIL, f"{config.cql_engine}: {type(exc).__name__}: {_first_line(exc)}")
    try:
        engine.start()
        runs_on = (
            f"node {find_node(config.node_executable)}" if config.cql_engine == "reference" else "compiled, in process"
        )
        fixture = Path(config.fixtures_root) / SEED_REQUEST
        body = json.loads(fixture.read_text(encoding="utf-8")) if fixture.is_file() else None
        results = []
        for sid, pack in packs.items():
            evaluator = Evaluator(pack, engine, config)
            if body is not None and body.get("hook") == pack.hook:
                outcome = evaluator.evaluate(parse_hook_request(body, pack.hook))
                if outcome.cases:
                    criteria = sum(len(c.results) for c in outcome.cases)
                    results.append(f"{sid}: seed fixture -> {len(outcome.cases)} card(s), {criteria} criterion results")
                    continue
            library = pack.library
            engine.evaluate(
                library["id"],
                library.get("version"),
                [{"resourceType": "Patient", "id": "doctor"}],
                "doctor",
                {},
                expressions=[library.get("resultsExpression", "Criteria")],
            )
            results.append(f"{sid}: library evaluates")
    except Exception as exc:  # noqa: BLE001 - EngineError, CriteriaError, a bad fixture: all are failures
        return Check("CQL engine", FAIL, f"{type(exc).__name__}: {_first_line(exc)}")
    finally:
        engine.close()
    return Check(
        "CQL engine",
        PASS,
        f"{runs_on}; " + "; ".join(results) + f" ({time.perf_counter() - started:.1f} s with start-up)",
    )


# ------------------------------------------------------------------ FHIR servers


def check_fhir_servers(config, extra: list[str]) -> list[Check]:
    from cds_hooks.auth.outbound import FhirServerPolicy

    policy = FhirServerPolicy.from_config(config)
    checks = []
    if not config.fhir_servers and not extra:
        status = WARN if not config.fhir_allow_loopback else SKIP
        return [
            Check(
                "FHIR servers",
                status,
                "none allowlisted (fhir_servers): calls without full prefetch will be refused (403)",
            )
        ]
    for entry in config.fhir_servers:
        if entry.endswith("/*"):
            checks.append(
                Check(
                    f"FHIR {entry}",
                    SKIP,
                    "an entry for every base below a path: name one with --fhir-server to check it",
                )
            )
            continue
        checks.append(_metadata_check(config, entry))
    for base in extra:
        if not policy.allows(base):
            checks.append(Check(f"FHIR {base}", FAIL, "not allowed by fhir_servers: the service would refuse it (403)"))
        else:
            checks.append(_metadata_check(config, base))
    return checks


def _metadata_check(config, base: str) -> Check:
    import requests

    from cds_hooks.auth.outbound import new_session, transport_allowed

    name = f"FHIR {base}"
    if not transport_allowed(base, config.allow_http_loopback):
        return Check(
            name, FAIL, "the service sends tokens over https only (http only to loopback with allow_http_loopback)"
        )
    url = base.rstrip("/") + "/metadata"
    try:
        with new_session() as session:
            r = session.get(
                url, headers={"Accept": "application/fhir+json"}, timeout=config.fhir_timeout, allow_redirects=False
            )
    except requests.RequestException as exc:
        return Check(name, FAIL, f"GET {url}: {_why(exc)}")
    if r.status_code != 200:
        return Check(name, FAIL, f"GET {url}: HTTP {r.status_code}")
    try:
        statement = r.json()
    except ValueError:
        return Check(name, FAIL, f"GET {url}: not JSON")
    if not isinstance(statement, dict) or statement.get("resourceType") != "CapabilityStatement":
        return Check(name, FAIL, f"GET {url}: not a CapabilityStatement")
    version = statement.get("fhirVersion")
    software = (statement.get("software") or {}).get("name") if isinstance(statement.get("software"), dict) else None
    detail = f"CapabilityStatement, FHIR {version or 'version not stated'}" + (f", {software}" if software else "")
    if not (isinstance(version, str) and version.startswith("4.0")):
        return Check(name, WARN, detail + " (the service reads FHIR R4, 4.0.x)")
    return Check(name, PASS, detail)


# ------------------------------------------------------------------ running it


def run_checks(
    config, *, fhir_servers: list[str] | None = None, registered_url: str | None = None, engine: bool = True
) -> list[Check]:
    from cds_hooks.packs.loader import load_rule_packs

    try:
        service_ids = sorted(load_rule_packs(config.cql_root, config.rule_packs or None))
    except Exception:  # noqa: BLE001 - reported by the engine check
        service_ids = []
    checks = [check_settings(config), check_public_base_url(config, service_ids, registered_url)]
    checks += check_issuers(config)
    checks += check_database(config)
    if engine:
        checks.append(check_engine(config))
    checks += check_fhir_servers(config, fhir_servers or [])
    return checks


def render(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"{'check'.ljust(width)}  result  detail", f"{'-' * width}  ------  ------"]
    lines += [f"{c.name.ljust(width)}  {c.status.upper().ljust(6)}  {c.detail}" for c in checks]
    failed = sum(c.status == FAIL for c in checks)
    warned = sum(c.status == WARN for c in checks)
    lines.append("")
    lines.append(
        f"{len(checks)} checks: {failed} failed, {warned} warnings"
        if failed or warned
        else f"{len(checks)} checks: all passed"
    )
    return "\n".join(lines)


def _doctor(args) -> int:
    from pydantic import ValidationError

    from cds_hooks.config import Config

    try:
        config = Config.from_env()
    except (ValidationError, ValueError) as exc:
        checks = [Check("settings", FAIL, " ".join(str(exc).split())[:500])]
    else:
        checks = run_checks(
            config, fhir_servers=args.fhir_server, registered_url=args.registered_url, engine=not args.no_engine
        )
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        print(render(checks))
    sys.stdout.flush()
    return 1 if any(c.status == FAIL for c in checks) else 0


def register(sub) -> None:
    p = sub.add_parser(
        "doctor",
        help="check this configuration end to end (issuers, database, engine, FHIR servers, "
        "audience) and print a pass/fail table",
    )
    p.add_argument(
        "--fhir-server",
        action="append",
        default=[],
        help="also check this FHIR base (e.g. one below a /* entry); repeatable",
    )
    p.add_argument(
        "--registered-url", help="the discovery or service URL entered in the EHR: must match public_base_url"
    )
    p.add_argument("--no-engine", action="store_true", help="skip the CQL engine check")
    p.add_argument("--json", action="store_true", help="the checks as JSON")
    p.set_defaults(func=_doctor)
