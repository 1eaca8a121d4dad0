"""Statistics, targets and the printed table of a benchmark run."""

from __future__ import annotations

import math
import statistics

MS = 1000.0

# The latency budget (docs/performance.md). "Must" holds in every scenario on the production server.
MUST_P95 = 0.500
MUST_P99 = 1.000
GOAL_PREFETCH_RATIO = 5.0
GOAL_PREFETCH_P99 = 0.050
GOAL_FAST_PATH_RATIO = 2.0
GOAL_NO_PREFETCH_MARGIN = 0.020
GOAL_THROUGHPUT = 100.0
GOAL_RSS = 250 * 1024 * 1024
GOAL_READY = 3.0


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[rank - 1]


def summarize_load(result: dict, served: int, cpu: float) -> dict:
    lat = result["latencies"]
    n = len(lat)
    ok = result["statuses"].get("200", 0)
    return {
        "clients": result["clients"],
        "requests": n,
        "ok": ok,
        "errors": result["errors"] + (n - ok),
        "statuses": result["statuses"],
        "p50": percentile(lat, 50),
        "p95": percentile(lat, 95),
        "p99": percentile(lat, 99),
        "mean": statistics.fmean(lat) if lat else math.nan,
        "max": max(lat) if lat else math.nan,
        "throughput": n / result["wall"] if result["wall"] > 0 else math.nan,
        "cpu_per_request": cpu / served if served else math.nan,
    }


def median_spread(values: list[float]) -> dict:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return {"median": math.nan, "min": math.nan, "max": math.nan}
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def combine(runs: list[dict]) -> dict:
    """Median and spread over the repeats of one (scenario, target, clients)."""
    keys = ("p50", "p95", "p99", "mean", "max", "throughput", "cpu_per_request")
    return {k: median_spread([r[k] for r in runs]) for k in keys} | {
        "errors": sum(r["errors"] for r in runs),
        "requests": sum(r["requests"] for r in runs),
    }


def ratios(service_runs: list[dict], floor_runs: list[dict], key: str = "p50") -> dict:
    """Service / floor, per repeat (each pair measured side by side), then median and spread."""
    pairs = [s[key] / f[key] for s, f in zip(service_runs, floor_runs) if f[key] and not math.isnan(f[key])]
    return median_spread(pairs)


def fmt_ms(seconds: float) -> str:
    return "—" if seconds is None or math.isnan(seconds) else f"{seconds * MS:.1f}"


def fmt_spread(ms: dict, scale: float = MS, digits: int = 1) -> str:
    if math.isnan(ms["median"]):
        return "—"
    med = f"{ms['median'] * scale:.{digits}f}"
    if ms["min"] == ms["max"]:
        return med
    return f"{med} ({ms['min'] * scale:.{digits}f}–{ms['max'] * scale:.{digits}f})"


def table(rows: list[dict], markdown: bool = False) -> str:
    """rows: dicts with the columns below; values already formatted."""
    cols = ["scenario", "server", "clients", "p50 ms", "p95 ms", "p99 ms", "req/s", "CPU ms/req", "p50 / floor"]
    data = [[str(r.get(c, "")) for c in cols] for r in rows]
    if markdown:
        out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        out += ["| " + " | ".join(d) + " |" for d in data]
        return "\n".join(out)
    widths = [max(len(c), *(len(d[i]) for d in data)) for i, c in enumerate(cols)]
    line = lambda cells: "  ".join(x.ljust(w) for x, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(d) for d in data])


def targets(summary: dict) -> list[dict]:
    """Every target of the latency budget with the measured number and whether it is met."""
    out: list[dict] = []
    seq = summary["scenarios"]

    def add(name: str, measured: float | None, limit: float, unit: str, met: bool | None, note: str = "") -> None:
        out.append({"target": name, "measured": measured, "limit": limit, "unit": unit, "met": met, "note": note})

    worst_p95 = worst_p99 = None
    for name, sc in seq.items():
        svc = sc["service"]
        p95, p99 = svc["p95"]["median"], svc["p99"]["median"]
        add(f"{name}: p95 < 500 ms", p95 * MS, MUST_P95 * MS, "ms", p95 < MUST_P95)
        add(f"{name}: p99 < 1 s", p99 * MS, MUST_P99 * MS, "ms", p99 < MUST_P99)
        worst_p95 = max(worst_p95 or 0, p95)
        worst_p99 = max(worst_p99 or 0, p99)
    for level, sw in summary.get("sweep", {}).items():
        svc = sw["service"]
        add(
            f"concurrency {level}: p95 < 500 ms",
            svc["p95"]["median"] * MS,
            MUST_P95 * MS,
            "ms",
            svc["p95"]["median"] < MUST_P95,
        )
        add(
            f"concurrency {level}: p99 < 1 s",
            svc["p99"]["median"] * MS,
            MUST_P99 * MS,
            "ms",
            svc["p99"]["median"] < MUST_P99,
        )
    if "seed-prefetch" in seq:
        sc = seq["seed-prefetch"]
        add(
            "full prefetch: p50 ≤ 5× floor",
            sc["ratio_p50"]["median"],
            GOAL_PREFETCH_RATIO,
            "×",
            sc["ratio_p50"]["median"] <= GOAL_PREFETCH_RATIO,
        )
        add(
            "full prefetch: p99 < 50 ms",
            sc["service"]["p99"]["median"] * MS,
            GOAL_PREFETCH_P99 * MS,
            "ms",
            sc["service"]["p99"]["median"] < GOAL_PREFETCH_P99,
        )
    if "fast-path" in seq:
        sc = seq["fast-path"]
        add(
            "fast path: p50 ≤ 2× floor",
            sc["ratio_p50"]["median"],
            GOAL_FAST_PATH_RATIO,
            "×",
            sc["ratio_p50"]["median"] <= GOAL_FAST_PATH_RATIO,
        )
    if "seed-no-prefetch" in seq and summary.get("fhir_searches"):
        slowest = summary["fhir_searches"]["seed"]["slowest_p50"]
        p50 = seq["seed-no-prefetch"]["service"]["p50"]["median"]
        add(
            "no prefetch: p50 ≤ slowest FHIR search + 20 ms",
            p50 * MS,
            (slowest + GOAL_NO_PREFETCH_MARGIN) * MS,
            "ms",
            p50 <= slowest + GOAL_NO_PREFETCH_MARGIN,
            f"slowest single search p50 {slowest * MS:.1f} ms",
        )
    if summary.get("sweep"):
        best = max(sw["service"]["throughput"]["median"] for sw in summary["sweep"].values())
        add(
            "≥ 100 evaluations/s (both cores)",
            best,
            GOAL_THROUGHPUT,
            "req/s",
            best >= GOAL_THROUGHPUT,
            "best level of the concurrency sweep, full prefetch",
        )
    mem = summary.get("memory")
    if mem:
        add(
            "≤ 250 MB RSS per worker process",
            mem["largest_process_peak"] / 2**20,
            GOAL_RSS / 2**20,
            "MB",
            mem["largest_process_peak"] <= GOAL_RSS,
            "largest peak RSS of one gunicorn or engine process",
        )
        add(
            "≤ 250 MB RSS per worker with its engine",
            mem["largest_worker_with_engine_peak"] / 2**20,
            GOAL_RSS / 2**20,
            "MB",
            mem["largest_worker_with_engine_peak"] <= GOAL_RSS,
            "a gunicorn worker plus its Node engine processes",
        )
    startup = summary.get("startup", {}).get("service")
    if startup:
        add(
            "ready within 3 s of start",
            startup["first_200_call"]["median"],
            GOAL_READY,
            "s",
            startup["first_200_call"]["median"] <= GOAL_READY,
            "process start -> first 200 on a full-prefetch call",
        )
    return out


def targets_table(rows: list[dict], markdown: bool = False) -> str:
    def num(v):
        return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"

    lines = []
    if markdown:
        lines += ["| target | measured | limit | met |", "|---|---|---|---|"]
    for r in rows:
        met = "yes" if r["met"] else "no"
        cells = [r["target"], f"{num(r['measured'])} {r['unit']}", f"{num(r['limit'])} {r['unit']}", met]
        if r["note"]:
            cells[1] += f" ({r['note']})"
        lines.append(("| " + " | ".join(cells) + " |") if markdown else "  ".join(cells))
    return "\n".join(lines)


# The compiled engine's targets (docs/performance.md, "Compiled CQL"): the service on the compiled engine,
# the reference engine's service beside it in the same run.
ENGINE_SPEEDUP = 10.0
CPU_RATIO = 10.0
PREFETCH_RATIO = 8.0
THROUGHPUT_16 = 150.0
P95_64 = 0.500
LONG_HISTORY_RATIO = 3.0
FAST_PATH_RATIO = 2.0
RSS_PER_WORKER = 150 * 1024 * 1024


def engine_targets(summary: dict) -> list[dict]:
    """Each target with the compiled service's number, the reference service's, and whether the compiled
    one meets it. A target whose scenario was not run is left out."""
    seq, sweep = summary["scenarios"], summary.get("sweep", {})
    stages = summary.get("stages_by_server") or {}
    memory = summary.get("memory_by_server") or {}
    out: list[dict] = []

    def add(name, compiled, reference, limit, unit, met, note=""):
        out.append(
            {
                "target": name,
                "compiled": compiled,
                "reference": reference,
                "limit": limit,
                "unit": unit,
                "met": bool(met),
                "note": note,
            }
        )

    def med(d, *keys):
        for k in keys:
            if d is None or k not in d:
                return None
            d = d[k]
        return d.get("median") if isinstance(d, dict) else d

    seed_c, seed_r = stages.get("service", {}).get("seed-prefetch"), stages.get("reference", {}).get("seed-prefetch")
    if seed_c and seed_r:
        speedup = seed_r["engine"] / seed_c["engine"]
        add(
            "engine stage, seed: compiled ≥ 10× faster than the reference",
            speedup,
            1.0,
            ENGINE_SPEEDUP,
            "×",
            speedup >= ENGINE_SPEEDUP,
            f"engine stage {seed_c['engine'] * MS:.2f} ms vs {seed_r['engine'] * MS:.2f} ms",
        )
    if "seed-prefetch" in seq:
        sc = seq["seed-prefetch"]
        cpu_c, cpu_r = med(sc, "ratio_cpu"), med(sc, "ratio_cpu_reference")
        add(
            "CPU per seed call (all server processes) ≤ 10× the floor's",
            cpu_c,
            cpu_r,
            CPU_RATIO,
            "×",
            cpu_c is not None and cpu_c <= CPU_RATIO,
        )
        p_c, p_r = med(sc, "ratio_p50"), med(sc, "ratio_p50_reference")
        add(
            "seed, full prefetch: p50 ≤ 8× floor (durable audit write included)",
            p_c,
            p_r,
            PREFETCH_RATIO,
            "×",
            p_c is not None and p_c <= PREFETCH_RATIO,
        )
    if "16" in sweep:
        t_c, t_r = med(sweep["16"], "service", "throughput"), med(sweep["16"], "reference", "throughput")
        add(
            "seed evaluations/s at 16 clients ≥ 150",
            t_c,
            t_r,
            THROUGHPUT_16,
            "req/s",
            t_c is not None and t_c >= THROUGHPUT_16,
        )
    if "64" in sweep:
        q_c, q_r = med(sweep["64"], "service", "p95"), med(sweep["64"], "reference", "p95")
        add(
            "p95 at 64 clients < 500 ms",
            None if q_c is None else q_c * MS,
            None if q_r is None else q_r * MS,
            P95_64 * MS,
            "ms",
            q_c is not None and q_c < P95_64,
        )
    if "long-history" in seq:
        sc = seq["long-history"]
        l_c, l_r = med(sc, "ratio_p50"), med(sc, "ratio_p50_reference")
        add(
            "long history: p50 ≤ 3× its floor",
            l_c,
            l_r,
            LONG_HISTORY_RATIO,
            "×",
            l_c is not None and l_c <= LONG_HISTORY_RATIO,
        )
    if "fast-path" in seq:
        sc = seq["fast-path"]
        f_c, f_r = med(sc, "ratio_p50"), med(sc, "ratio_p50_reference")
        add("fast path: p50 ≤ 2× floor", f_c, f_r, FAST_PATH_RATIO, "×", f_c is not None and f_c <= FAST_PATH_RATIO)
    if memory.get("service"):
        r_c = memory["service"]["largest_worker_with_engine_peak"] / 2**20
        r_r = memory["reference"]["largest_worker_with_engine_peak"] / 2**20 if memory.get("reference") else None
        add(
            "RSS per worker, everything included ≤ 150 MB",
            r_c,
            r_r,
            RSS_PER_WORKER / 2**20,
            "MB",
            r_c <= RSS_PER_WORKER / 2**20,
            "peak RSS of a gunicorn worker plus its engine processes",
        )
    return out


def engine_targets_table(rows: list[dict], markdown: bool = False) -> str:
    def num(v):
        return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}" if v >= 10 else f"{v:.2f}"

    lines = ["| target | compiled | reference | limit | met (compiled) |", "|---|---|---|---|---|"] if markdown else []
    for r in rows:
        cells = [
            r["target"],
            f"{num(r['compiled'])} {r['unit']}",
            f"{num(r['reference'])} {r['unit']}",
            f"{num(r['limit'])} {r['unit']}",
            "yes" if r["met"] else "no",
        ]
        if r["note"]:
            cells[0] += f" ({r['note']})"
        lines.append(("| " + " | ".join(cells) + " |") if markdown else "  ".join(cells))
    return "\n".join(lines)
