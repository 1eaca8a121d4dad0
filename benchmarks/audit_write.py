"""What the audit trail costs per hook call, on SQLite (embedded, WAL, synchronous=FULL) and PostgreSQL.

Three measurements, all printed:

0. building and sealing the rows alone (no database);
1. the audit write alone: `AuditStore.record_call` for the seed case's real outcome (one call row,
   one card, nine criterion rows, three suggestions, the sealed response), N times per backend;
2. the whole call through the Flask app (seed request, full prefetch, real CQL engine) with the
   audit trail on (each backend) and off, interleaved in rounds so drift hits all alike.

PostgreSQL is a throwaway server started from Debian's package (as the tests do) unless
--postgres-url names one. Usage: .venv/bin/python benchmarks/audit_write.py [--writes 500] [--calls 150]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from cds_hooks.web.app import create_app  # noqa: E402
from cds_hooks.audit.store import AuditStore  # noqa: E402
from cds_hooks.audit.call_record import CallRecord, call_rows  # noqa: E402
from cds_hooks.config import Config  # noqa: E402
from cds_hooks.audit.database import create_db_engine, upgrade  # noqa: E402
from cds_hooks.engine.bridge import CqlEngine  # noqa: E402
from cds_hooks.hooks.hook_request import parse_hook_request  # noqa: E402
from cds_hooks.web.extensions import registry_of  # noqa: E402
from cds_hooks.audit.sealing import Sealer  # noqa: E402
from support.audit_db import audit_settings  # noqa: E402
from support.postgres import PostgresServer, create_database  # noqa: E402


def summary(samples_ms: list[float]) -> dict:
    s = sorted(samples_ms)
    pick = lambda p: s[max(0, min(len(s) - 1, round(p / 100 * len(s)) - 1))]  # noqa: E731
    return {"n": len(s), "mean": statistics.fmean(s), "p50": pick(50), "p95": pick(95), "p99": pick(99), "max": s[-1]}


def fmt(d: dict) -> str:
    return (
        f"n={d['n']:4d}  mean {d['mean']:7.2f} ms  p50 {d['p50']:7.2f}  p95 {d['p95']:7.2f}  "
        f"p99 {d['p99']:7.2f}  max {d['max']:7.2f}"
    )


def fresh_record(template: CallRecord) -> CallRecord:
    """The same outcome under new ids (cards and suggestions are primary keys)."""
    outcome = copy.deepcopy(template.outcome)
    for case in outcome.cases:
        case.card["uuid"] = str(uuid.uuid4())
        for s in case.card.get("suggestions", []):
            s["uuid"] = str(uuid.uuid4())
    rec = CallRecord(service_id=template.service_id, request=template.request, outcome=outcome)
    rec.duration_ms = 50.0
    return rec


def bench_writes(url: str, template: CallRecord, writes: int) -> dict:
    engine = create_db_engine(url)
    upgrade(engine)
    store = AuditStore(engine, Sealer.from_config(Config(**audit_settings(url, tempfile.mkdtemp()))))
    for _ in range(20):  # warm-up: connections, statement caches
        store.record_call(fresh_record(template))
    times = []
    for _ in range(writes):
        rec = fresh_record(template)
        t0 = time.perf_counter()
        store.record_call(rec)
        times.append((time.perf_counter() - t0) * 1000)
    engine.dispose()
    return summary(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=500)
    parser.add_argument("--calls", type=int, default=150)
    parser.add_argument("--postgres-url", help="base URL of a PostgreSQL server (default: start one)")
    args = parser.parse_args()

    server = None
    pg_base = args.postgres_url
    if not pg_base:
        server = PostgresServer().start()
        pg_base = server.base_url
    engine = CqlEngine(workers=2, timeout=30)
    work = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    results: dict = {}
    try:
        urls = {"sqlite": f"sqlite:///{work / 'bench.db'}", "postgresql": create_database(pg_base, "audit_bench")}
        body = json.loads((REPO / "fhir_fixtures" / "requests" / "seed-prefetch.json").read_text())

        # A real outcome to write: the seed case through the pipeline once.
        app_off = create_app(Config.development(var_dir=work / "off", audit_enabled=False), engine=engine)
        evaluator = registry_of(app_off).get("lumbar-fusion")
        hook_request = parse_hook_request(body, "order-sign")
        template = CallRecord(
            service_id="lumbar-fusion",
            request=hook_request,
            outcome=evaluator.evaluate(hook_request, "http://localhost"),
        )

        sealer = Sealer.from_config(Config(**audit_settings(urls["sqlite"], work / "keys")))
        sealing = []
        for _ in range(args.writes):
            rec = fresh_record(template)
            t0 = time.perf_counter()
            call_rows(rec, sealer)
            sealing.append((time.perf_counter() - t0) * 1000)
        results["rows_and_sealing"] = r = summary(sealing)
        print(f"0. building and sealing the rows (JSON, zlib, AES-GCM), no database\n   {'':10s} {fmt(r)}\n")

        print(f"1. audit write alone (AuditStore.record_call, seed outcome), {args.writes} writes each")
        for backend, url in urls.items():
            results[f"write_{backend}"] = r = bench_writes(url, template, args.writes)
            print(f"   {backend:10s} {fmt(r)}")

        print(f"\n2. whole call through the app (seed request, real CQL engine), {args.calls} calls each, interleaved")
        apps = {"audit off": app_off}
        for backend in urls:
            url = (
                create_database(pg_base, "audit_bench_app")
                if backend == "postgresql"
                else f"sqlite:///{work / 'app.db'}"
            )
            apps[f"audit {backend}"] = create_app(
                Config.development(**audit_settings(url, work / backend)), engine=engine
            )
        clients = {name: a.test_client() for name, a in apps.items()}
        times: dict[str, list[float]] = {name: [] for name in clients}
        for i in range(args.calls + 10):
            for name, client in clients.items():
                request = {**body, "hookInstance": f"bench-{name}-{i}"}
                t0 = time.perf_counter()
                r = client.post("/cds-services/lumbar-fusion", json=request)
                elapsed = (time.perf_counter() - t0) * 1000
                assert r.status_code == 200, r.get_data(as_text=True)
                if i >= 10:  # the first rounds warm the engine workers
                    times[name].append(elapsed)
        for name, samples in times.items():
            results[f"call_{name.replace(' ', '_')}"] = r = summary(samples)
            print(f"   {name:18s} {fmt(r)}")
        off = results["call_audit_off"]
        for backend in urls:
            on = results[f"call_audit_{backend}"]
            print(
                f"   cost with {backend:10s}: p50 {on['p50'] - off['p50']:+.2f} ms, "
                f"mean {on['mean'] - off['mean']:+.2f} ms"
            )
        out = REPO / "benchmarks" / "results"
        out.mkdir(parents=True, exist_ok=True)
        (out / "audit_write.json").write_text(json.dumps(results, indent=2))
    finally:
        engine.close()
        if server:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
