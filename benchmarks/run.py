"""The benchmark: every scenario against the service and the floor, side by side, repeated.

    ./scripts/bench                      # the full run (about ten minutes on two cores)
    ./scripts/bench --quick              # a short run of every scenario
    ./scripts/bench --scenarios fast-path,seed-prefetch --repeat 5

Scenarios (each measured on the service and on the floor with the same body, in alternating order):

- fast-path: a non-fusion order (nothing to check, no data touched);
- seed-prefetch: the seed case with full prefetch;
- seed-no-prefetch: the seed case without prefetch, data fetched from a local FHIR server;
- long-history: a patient with about 500 resources (benchmarks/long_history.py), full prefetch;
- long-history-no-prefetch: the same patient fetched from the FHIR server;
- concurrency: the seed case with full prefetch at 1, 4, 16 and 64 clients, for a fixed time.

The service runs once per CQL engine (`--engines`, default both): "service" is the compiled engine (the
default, CDS_CQL_ENGINE=compiled), "reference" the reference engine (cql-execution in Node workers), each
with the same settings, measured side by side with the floor in every repeat.

Latency runs use one client and `--requests` requests after a warm-up; every run reads the server's
CPU time (master, workers and engine processes) before and after. Writes benchmarks/results/<time>.json
(and latest.json), prints the table and the targets.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from . import report
from .long_history import patient_bundle, requests_for
from .servers import REPO, Server, floor_server, free_port, service_server

FIXTURES = REPO / "fhir_fixtures"
RESULTS = REPO / "benchmarks" / "results"
SERVICE_PATH = "/cds-services/lumbar-fusion"
# The service's server name for each CQL engine it runs with (CDS_CQL_ENGINE).
ENGINE_SERVERS = {"compiled": "service", "reference": "reference"}
SEQUENTIAL = ["fast-path", "seed-prefetch", "seed-no-prefetch", "long-history", "long-history-no-prefetch"]
NEEDS_FHIR = {"seed-no-prefetch", "long-history-no-prefetch"}
TITLES = {
    "fast-path": "non-fusion order (fast path)",
    "seed-prefetch": "seed case, full prefetch",
    "seed-no-prefetch": "seed case, no prefetch (local FHIR server)",
    "long-history": "long history (~500 resources), full prefetch",
    "long-history-no-prefetch": "long history, no prefetch (local FHIR server)",
    "concurrency": "seed case, full prefetch, N clients",
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- set-up


def _machine() -> dict:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass

    def version(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    try:
        import gunicorn

        gunicorn_version = gunicorn.__version__
    except ImportError:
        gunicorn_version = ""
    commit = version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = bool(version(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"]))
    mem_total = 0
    try:
        with open("/proc/meminfo") as f:
            mem_total = int(next(line.split()[1] for line in f if line.startswith("MemTotal"))) * 1024
    except (OSError, StopIteration, ValueError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_bytes": mem_total,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": version(["node", "--version"]),
        "gunicorn": gunicorn_version,
        "commit": commit + ("+dirty" if dirty else ""),
        "load_average_at_start": os.getloadavg(),
    }


def _bodies(workdir: Path, fhir_base: str | None) -> dict[str, Path]:
    """The request body file of every scenario (FHIR server address filled in where it matters)."""
    bodies: dict[str, Path] = {}

    def put(name: str, obj: dict) -> None:
        path = workdir / f"{name}.json"
        path.write_text(json.dumps(obj), encoding="utf-8")
        bodies[name] = path

    load = lambda p: json.loads(p.read_text(encoding="utf-8"))  # noqa: E731
    put("fast-path", load(FIXTURES / "requests" / "non-fusion-prefetch.json"))
    put("seed-prefetch", load(FIXTURES / "requests" / "seed-prefetch.json"))
    no_prefetch = load(FIXTURES / "requests" / "seed-no-prefetch.json")
    no_prefetch["fhirServer"] = fhir_base or no_prefetch["fhirServer"]
    put("seed-no-prefetch", no_prefetch)
    lh_prefetch, lh_no_prefetch = requests_for(patient_bundle(), fhir_base or "http://127.0.0.1:8090/fhir")
    put("long-history", lh_prefetch)
    put("long-history-no-prefetch", lh_no_prefetch)
    return bodies


def _start_fhir(workdir: Path):
    from tests.support.fhir_server import FhirServer

    server = FhirServer(workdir / "fhir-server").start()
    seed = json.loads((FIXTURES / "patients" / "seed.json").read_text(encoding="utf-8"))
    server.load_bundle(seed)
    server.load_bundle(patient_bundle())
    return server


def _fhir_search_times(base_url: str, body_path: Path, calls: int) -> dict:
    """Each prefetch search of the pack, alone and sequentially, as the service's client runs it."""
    from cds_hooks.pipeline.fhir_client import FhirClient
    from cds_hooks.hooks.prefetch import render

    pack = json.loads((REPO / "cql" / "lumbar-fusion" / "pack.json").read_text(encoding="utf-8"))
    body = json.loads(body_path.read_text(encoding="utf-8"))
    client = FhirClient(base_url, None, timeout=10.0, page_size=200)
    per_query = {}
    try:
        for key, template in pack["prefetch"].items():
            query = render(template, body["context"], body["context"].get("userId"))
            times = []
            for i in range(calls + 2):
                t0 = time.perf_counter()
                client.get(query)
                if i >= 2:
                    times.append(time.perf_counter() - t0)
            per_query[key] = statistics.median(times)
    finally:
        client.close()
    slowest = max(per_query, key=per_query.get)
    return {
        "per_query_p50": per_query,
        "slowest": slowest,
        "slowest_p50": per_query[slowest],
        "sum_p50": sum(per_query.values()),
    }


# --------------------------------------------------------------------------- load


def _load(
    server: Server, path: str, body: Path, clients: int, requests: int, duration: float, warmup: int, headers: list[str]
) -> dict:
    """Run the load generator (separate processes, at most 16 clients each) and read the server's CPU."""
    procs = max(1, math.ceil(clients / 16))
    split = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    per_proc_requests = [max(1, requests * c // clients) for c in split]
    cpu0 = server.cpu()
    running = []
    for c, n in zip(split, per_proc_requests):
        argv = [
            sys.executable,
            "-m",
            "benchmarks.loadgen",
            "--url",
            f"{server.base_url}{path}",
            "--body",
            str(body),
            "--clients",
            str(c),
            "--requests",
            str(n),
            "--duration",
            str(duration),
            "--warmup",
            str(warmup),
        ]
        for h in headers:
            argv += ["--header", h]
        running.append(subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for p in running:
        out, err = p.communicate(timeout=duration + 600)
        if p.returncode != 0:
            raise RuntimeError(f"load generator failed: {err.strip()[-500:]}")
        results.append(json.loads(out))
    cpu = server.cpu() - cpu0
    merged = {
        "clients": clients,
        "latencies": [x for r in results for x in r["latencies"]],
        "statuses": {},
        "errors": sum(r["errors"] for r in results),
        "wall": max(r["wall"] for r in results),
    }
    for r in results:
        for k, v in r["statuses"].items():
            merged["statuses"][k] = merged["statuses"].get(k, 0) + v
    served = len(merged["latencies"]) + merged["errors"] + warmup * clients
    summary = report.summarize_load(merged, served, cpu)
    # Throughput of several generator processes: each measured its own window.
    summary["throughput"] = sum(len(r["latencies"]) / r["wall"] for r in results if r["wall"] > 0)
    return summary


def _check(server: Server, body: Path, headers: list[str]) -> dict:
    """One call: status, and the criteria statuses of each card (to compare scenarios)."""
    import requests

    hdrs = {"Content-Type": "application/json"}
    for h in headers:
        k, _, v = h.partition(":")
        hdrs[k.strip()] = v.strip()
    r = requests.post(f"{server.base_url}{SERVICE_PATH}", data=body.read_bytes(), headers=hdrs, timeout=30)
    out = {"status": r.status_code}
    try:
        cards = r.json().get("cards", [])
    except ValueError:
        return out
    out["cards"] = len(cards)
    out["criteria"] = [
        {
            f"{c['id']}@{c['level']}" if c.get("level") else c["id"]: c["status"]
            for c in card.get("extension", {}).get("org.example.fusion-cds.criteria", [])
        }
        for card in cards
    ]
    return out


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description="fusion-cds latency benchmark")
    p.add_argument(
        "--scenarios", default=",".join(SEQUENTIAL + ["concurrency"]), help="comma-separated scenarios (default: all)"
    )
    p.add_argument("--repeat", type=int, default=3, help="repeats of every measurement (default 3)")
    p.add_argument("--requests", type=int, default=300, help="measured requests per latency run (default 300)")
    p.add_argument("--warmup", type=int, default=20, help="unmeasured requests per client first (default 20)")
    p.add_argument("--sweep-clients", default="1,4,16,64", help="client counts of the concurrency sweep")
    p.add_argument("--sweep-duration", type=float, default=8.0, help="seconds per concurrency level (default 8)")
    p.add_argument("--stage-calls", type=int, default=30, help="in-process calls for the stage breakdown")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers (CDS_SERVER_WORKERS)")
    p.add_argument("--threads", type=int, default=4, help="gthread threads per worker (CDS_SERVER_THREADS)")
    p.add_argument("--engine-workers", type=int, default=1, help="CQL engine processes per worker (CDS_ENGINE_WORKERS)")
    p.add_argument(
        "--engines",
        default="compiled,reference",
        help="CQL engines to run the service with, side by side (compiled = 'service', reference = 'reference')",
    )
    p.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="CDS_NAME=value",
        help="more service settings (e.g. for a trusted test issuer)",
    )
    p.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'Name: value'",
        help="extra request header (e.g. an Authorization bearer token)",
    )
    p.add_argument(
        "--auth",
        choices=["disabled", "configured"],
        default="disabled",
        help="disabled: CDS_AUTH_DISABLED=true; configured: as --setting/--header configure it",
    )
    p.add_argument("--quick", action="store_true", help="short run: 1 repeat, 40 requests, 2 s sweep levels 1,4")
    p.add_argument("--out", type=Path, help="JSON output (default benchmarks/results/<time>.json)")
    p.add_argument("--markdown", action="store_true", help="print the tables as markdown")
    args = p.parse_args(argv)
    if args.quick:
        args.repeat, args.requests, args.warmup = 1, 40, 5
        args.sweep_clients, args.sweep_duration, args.stage_calls = "1,4", 2.0, 5
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(SEQUENTIAL) - {"concurrency"}
    if unknown:
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    args.sweep_clients = [int(x) for x in args.sweep_clients.split(",") if x.strip()]
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if not args.engines or set(args.engines) - set(ENGINE_SERVERS):
        p.error("--engines takes compiled and/or reference")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = {
        "CDS_SERVER_WORKERS": str(args.workers),
        "CDS_SERVER_THREADS": str(args.threads),
        "CDS_ENGINE_WORKERS": str(args.engine_workers),
    }
    if args.auth == "disabled":
        settings["CDS_AUTH_DISABLED"] = "true"
    for s in args.setting:
        k, _, v = s.partition("=")
        settings[k.strip()] = v
    started = datetime.now(timezone.utc)
    result: dict = {
        "started": started.isoformat(timespec="seconds"),
        "machine": _machine(),
        "settings": settings,
        # Names only: values may be secrets.
        "settings_from_environment": sorted(k for k in os.environ if k.startswith("CDS_") and k not in settings),
        "authentication": args.auth,
        "parameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    workdir = Path(tempfile.mkdtemp(prefix="fusion-cds-bench-"))
    fhir = None
    servers: list[Server] = []
    try:
        if NEEDS_FHIR & set(args.scenarios):
            log("starting the local FHIR server and loading the seed and long-history patients")
            fhir = _start_fhir(workdir)
            # The service fetches only from allowlisted FHIR servers (docs/security.md): allow this one.
            settings.setdefault("CDS_FHIR_SERVERS", json.dumps([fhir.base_url]))
            settings.setdefault("CDS_ALLOW_HTTP_LOOPBACK", "true")
        bodies = _bodies(workdir, fhir.base_url if fhir else None)
        probe = bodies["seed-prefetch"].read_bytes()

        log(
            f"starting the floor and the service with the {' and the '.join(args.engines)} CQL engine "
            "(production server configuration)"
        )
        engine_settings = {e: {**settings, "CDS_CQL_ENGINE": e} for e in args.engines}
        floor = floor_server(free_port(), settings).start(workdir, SERVICE_PATH, probe)
        services = [
            service_server(free_port(), engine_settings[e], ENGINE_SERVERS[e]).start(workdir, SERVICE_PATH, probe)
            for e in args.engines
        ]
        service = services[0]
        servers = [floor, *services]
        result["engines"] = {ENGINE_SERVERS[e]: e for e in args.engines}
        result["startup"] = {s.name: [s.startup] for s in servers}

        checks = {
            name: _check(service, bodies[name], args.header)
            for name in SEQUENTIAL
            if name in args.scenarios or name == "seed-prefetch"
        }
        result["checks"] = checks
        # Both engines must give the same answer before their speeds are compared.
        result["checks_agree"] = all(
            _check(other, bodies[name], args.header) == checks[name] for other in services[1:] for name in checks
        )

        runs: dict = {name: {s.name: [] for s in servers} for name in SEQUENTIAL if name in args.scenarios}
        sweep: dict = {}
        for rep in range(args.repeat):
            order = servers if rep % 2 == 0 else servers[::-1]
            for name in runs:
                for server in order:
                    log(f"repeat {rep + 1}/{args.repeat}: {name} on the {server.name}")
                    runs[name][server.name].append(
                        _load(server, SERVICE_PATH, bodies[name], 1, args.requests, 600.0, args.warmup, args.header)
                    )
            if "concurrency" in args.scenarios:
                for clients in args.sweep_clients:
                    level = sweep.setdefault(str(clients), {s.name: [] for s in servers})
                    for server in order:
                        log(f"repeat {rep + 1}/{args.repeat}: {clients} clients on the {server.name}")
                        level[server.name].append(
                            _load(
                                server,
                                SERVICE_PATH,
                                bodies["seed-prefetch"],
                                clients,
                                10**9,
                                args.sweep_duration,
                                3,
                                args.header,
                            )
                        )

        result["memory"] = _memory_of(service, floor)
        result["memory_by_server"] = {s.name: _memory_of(s, floor) for s in services}
        # Start-up again, twice more, for a spread (fresh processes, after the machine is warm).
        for _ in range(max(0, min(2, args.repeat - 1))):
            extras = [floor_server(free_port(), settings)]
            extras += [service_server(free_port(), engine_settings[e], ENGINE_SERVERS[e]) for e in args.engines]
            for extra in extras:
                extra.start(workdir, SERVICE_PATH, probe)
                result["startup"][extra.name].append(extra.startup)
                extra.stop()
        result["shutdown_seconds"] = {s.name: s.stop() for s in servers}
        servers = []

        if fhir:
            result["fhir_searches"] = {
                "seed": _fhir_search_times(fhir.base_url, bodies["seed-no-prefetch"], 20),
                "long-history": _fhir_search_times(fhir.base_url, bodies["long-history-no-prefetch"], 10),
            }

        log("per-stage breakdown (in process)")
        from .stages import StageProbe

        stage_settings = {k: v for k, v in settings.items() if k != "CDS_ENGINE_WORKERS"}
        result["stages_by_server"] = {}
        for e in args.engines:
            probe_app = StageProbe({**stage_settings, "CDS_ENGINE_WORKERS": "1", "CDS_CQL_ENGINE": e})
            try:
                result["stages_by_server"][ENGINE_SERVERS[e]] = {
                    name: probe_app.measure("lumbar-fusion", bodies[name].read_bytes(), args.stage_calls)
                    for name in runs
                }
            finally:
                probe_app.close()
        result["stages"] = result["stages_by_server"][ENGINE_SERVERS[args.engines[0]]]
    finally:
        for s in servers:
            s.stop()
        if fhir:
            fhir.stop()

    result["runs"] = runs
    result["sweep_runs"] = sweep
    summary = _summarize(result)
    result["summary"] = summary
    result["targets"] = report.targets(summary)
    result["engine_targets"] = report.engine_targets(summary)
    result["machine"]["load_average_at_end"] = os.getloadavg()
    result["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")

    out = args.out or RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_nan_to_none(result), indent=1, default=_json_default, allow_nan=False)
    out.write_text(text + "\n", encoding="utf-8")
    if args.out is None:
        (RESULTS / "latest.json").write_text(text + "\n", encoding="utf-8")
    print(render(result, markdown=args.markdown))
    print(f"\nJSON: {out}")
    return 0


def _memory_of(service: Server, floor: Server) -> dict:
    workers = service.workers()
    return {
        "service_workers": workers,
        "service_master": service.master_memory(),
        "floor_workers": floor.workers(),
        "largest_process_peak": max(
            [w["peak_rss"] for w in workers] + [x for w in workers for x in w["engine_peak_rss"]]
        ),
        "largest_worker_with_engine_peak": max(w["peak_rss_with_engine"] for w in workers),
    }


def _json_default(o):
    raise TypeError(f"not JSON: {type(o).__name__}")


def _nan_to_none(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


def _summarize(result: dict) -> dict:
    scenarios = {}
    for name, by_server in result["runs"].items():
        scenarios[name] = {"title": TITLES[name], "floor": report.combine(by_server["floor"])}
        for server in (s for s in by_server if s != "floor"):
            suffix = "" if server == "service" else f"_{server}"
            scenarios[name][server] = report.combine(by_server[server])
            scenarios[name]["ratio_p50" + suffix] = report.ratios(by_server[server], by_server["floor"], "p50")
            scenarios[name]["ratio_p99" + suffix] = report.ratios(by_server[server], by_server["floor"], "p99")
            scenarios[name]["ratio_cpu" + suffix] = report.ratios(
                by_server[server], by_server["floor"], "cpu_per_request"
            )
    sweep = {}
    for level, by_server in result["sweep_runs"].items():
        sweep[level] = {"floor": report.combine(by_server["floor"])}
        for server in (s for s in by_server if s != "floor"):
            suffix = "" if server == "service" else f"_{server}"
            sweep[level][server] = report.combine(by_server[server])
            sweep[level]["ratio_p50" + suffix] = report.ratios(by_server[server], by_server["floor"], "p50")
            sweep[level]["ratio_throughput" + suffix] = report.ratios(
                by_server[server], by_server["floor"], "throughput"
            )
    startup = {
        k: {m: report.median_spread([s[m] for s in v]) for m in ("first_200_discovery", "first_200_call")}
        for k, v in result["startup"].items()
    }
    return {
        "scenarios": scenarios,
        "sweep": sweep,
        "startup": startup,
        "memory": result.get("memory"),
        "fhir_searches": result.get("fhir_searches"),
        "stages": result.get("stages"),
        "engines": result.get("engines", {"service": "compiled"}),
        "memory_by_server": result.get("memory_by_server"),
        "stages_by_server": result.get("stages_by_server"),
    }


def render(result: dict, markdown: bool = False) -> str:
    s = result["summary"]
    rows = []
    fix = lambda d: d  # noqa: E731

    def row(name, server, clients, st, ratio=None):
        return {
            "scenario": name,
            "server": server,
            "clients": clients,
            "p50 ms": report.fmt_spread(fix(st["p50"])),
            "p95 ms": report.fmt_spread(fix(st["p95"])),
            "p99 ms": report.fmt_spread(fix(st["p99"])),
            "req/s": report.fmt_spread(fix(st["throughput"]), scale=1, digits=0),
            "CPU ms/req": report.fmt_spread(fix(st["cpu_per_request"])),
            "p50 / floor": report.fmt_spread(fix(ratio), scale=1, digits=2) if ratio else "",
        }

    label = {k: f"{k} ({v})" for k, v in s.get("engines", {}).items()}
    for name, sc in s["scenarios"].items():
        for server in (k for k in sc if k in label):
            suffix = "" if server == "service" else f"_{server}"
            rows.append(row(name, label[server], 1, sc[server], sc["ratio_p50" + suffix]))
        rows.append(row(name, "floor", 1, sc["floor"]))
    for level, sw in s["sweep"].items():
        for server in (k for k in sw if k in label):
            suffix = "" if server == "service" else f"_{server}"
            rows.append(row("concurrency", label[server], level, sw[server], sw["ratio_p50" + suffix]))
        rows.append(row("concurrency", "floor", level, sw["floor"]))
    parts = ["Latency and throughput (median of repeats, (min–max) across repeats):", report.table(rows, markdown)]
    for server, stages in (s.get("stages_by_server") or {"service": s.get("stages")}).items():
        if not stages:
            continue
        stage_rows = ["", f"Per-stage median, ms (in process), {label.get(server, server)}:"]
        names = (
            "parse",
            "orders",
            "data",
            "report_text",
            "engine",
            "cards",
            "respond",
            "total",
            "engine.prepare",
            "engine.transport",
            "engine.parse",
            "engine.cql",
        )
        if markdown:
            stage_rows += ["| scenario | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for name, st in stages.items():
            cells = [f"{st[k] * report.MS:.2f}" if k in st else "—" for k in names]
            stage_rows.append(
                ("| " + " | ".join([name] + cells) + " |")
                if markdown
                else f"  {name:28s} " + "  ".join(f"{k}={c}" for k, c in zip(names, cells))
            )
        parts += stage_rows
    st = s["startup"]
    mem = s.get("memory") or {}
    parts += [
        "",
        "Start-up (process start -> first 200 on a full-prefetch call), s: "
        + ", ".join(f"{k} {report.fmt_spread(fix(v['first_200_call']), scale=1, digits=2)}" for k, v in st.items()),
    ]
    for server, m in (s.get("memory_by_server") or ({"service": mem} if mem else {})).items():
        parts.append(
            f"Peak RSS per worker, {label.get(server, server)}, MB: "
            + ", ".join(
                f"worker {w['peak_rss'] / 2**20:.0f} + engine {'+'.join(f'{x / 2**20:.0f}' for x in w['engine_peak_rss']) or '0'}"
                f" = {w['peak_rss_with_engine'] / 2**20:.0f}"
                for w in m["service_workers"]
            )
        )
    if s.get("fhir_searches"):
        fs = s["fhir_searches"]["seed"]
        parts.append(
            f"FHIR searches (seed, sequential, p50): slowest {fs['slowest']} {fs['slowest_p50'] * report.MS:.1f} ms,"
            f" all {len(fs['per_query_p50'])} together {fs['sum_p50'] * report.MS:.1f} ms"
        )
    parts.append(f"Authentication: {result['authentication']}")
    parts += ["", "Targets:", report.targets_table(result["targets"], markdown)]
    if result.get("engine_targets"):
        parts += [
            "",
            "Compiled engine targets (compiled and reference engine, side by side, this run):",
            report.engine_targets_table(result["engine_targets"], markdown),
        ]
    return "\n".join(parts)
