"""The CQL engine stage, compiled (in process) against the reference engine (Node workers), side by side.

    .venv/bin/python -m benchmarks.compiled_vs_reference [--calls 200]

For the seed and the long-history patient (the engine call the service makes: same resources,
parameters and library, results expression only), per evaluation:
- reference: cql-execution as published (accelerate off), and with the service's shortcuts (accelerate on):
  the worker's own CPU and evaluation time, and the round trip as Python sees it;
- js-floor: prototype (b)'s floor -- the same request line sent to a Node process that parses it, makes one
  synchronous indexed pass over the resources and answers: everything (b) costs before any CQL runs;
- compiled: CompiledLibrary.evaluate in this process (CPU and wall).
Plus the resident size of a fresh Python process that has loaded the compiled libraries.
Medians and minimum CPU over --calls calls after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time

from tests.support.cql_judge import fixture_cases, load_pack_files
from cds_hooks.engine.compiled.library import CompiledLibrary

JS_FLOOR = r"""
const readline = require('node:readline');
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const c0 = process.cpuUsage(); const t0 = performance.now();
  const req = JSON.parse(line);
  const byType = new Map();
  for (const r of req.resources) { const l = byType.get(r.resourceType); if (l) l.push(r); else byType.set(r.resourceType, [r]); }
  const cpu = process.cpuUsage(c0);
  process.stdout.write(JSON.stringify({ id: req.id, ok: true, result: { Criteria: [] }, n: byType.size,
    ms: { evaluate: performance.now() - t0, cpu: (cpu.user + cpu.system) / 1000 } }) + '\n');
});
"""


def _stats(xs):
    return {"median_ms": round(statistics.median(xs) * 1000, 3), "min_ms": round(min(xs) * 1000, 3)}


def bench_compiled(lib, case, calls, warmup):
    for _ in range(warmup):
        lib.evaluate(case.resources, case.parameters, case.patient_id, expressions=["Criteria"])
    cpu, wall = [], []
    for _ in range(calls):
        c0, w0 = time.process_time(), time.perf_counter()
        lib.evaluate(case.resources, case.parameters, case.patient_id, expressions=["Criteria"])
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return {"cpu": _stats(cpu), "wall": _stats(wall)}


def bench_reference(engine, lib_id, version, case, calls, warmup):
    enc = engine.encode_resources(case.resources)
    for _ in range(warmup):
        engine.evaluate(lib_id, version, enc, case.patient_id, case.parameters, expressions=["Criteria"])
    cpu, ev, call = [], [], []
    for _ in range(calls):
        engine.evaluate(lib_id, version, enc, case.patient_id, case.parameters, expressions=["Criteria"])
        t = engine.last_timing()
        cpu.append(t["cpu"])
        ev.append(t["evaluate"])
        call.append(t["call"])
    return {"worker_cpu": _stats(cpu), "worker_evaluate": _stats(ev), "round_trip": _stats(call)}


def bench_js_floor(case, calls, warmup):
    node = shutil.which("node")
    if not node:
        return None
    proc = subprocess.Popen([node, "-e", JS_FLOOR], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        line_base = {
            "op": "evaluate",
            "resources": case.resources,
            "patientId": case.patient_id,
            "parameters": case.parameters,
        }
        cpu, call = [], []
        for i in range(warmup + calls):
            t0 = time.perf_counter()
            line = json.dumps({**line_base, "id": i}, separators=(",", ":")).encode() + b"\n"
            proc.stdin.write(line)
            proc.stdin.flush()
            resp = json.loads(proc.stdout.readline())
            if i >= warmup:
                call.append(time.perf_counter() - t0)
                cpu.append(resp["ms"]["cpu"] / 1000)
        return {"worker_cpu_parse_and_index_only": _stats(cpu), "round_trip_without_any_cql": _stats(call)}
    finally:
        proc.kill()
        proc.wait()


def rss_after_load() -> dict:
    code = (
        "import resource;b=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
        "from tests.support.cql_judge import load_pack_files;"
        "from cds_hooks.engine.compiled.library import CompiledLibrary;"
        "m,i,v=load_pack_files();l=CompiledLibrary.load(m,v,i);"
        "print(b, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    before, after = int(out[0]), int(out[1])
    return {"python_baseline_kb": before, "after_loading_compiled_libraries_kb": after, "delta_kb": after - before}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="compiled CQL vs the reference engine")
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    from cds_hooks.engine.bridge import CqlEngine

    elm, inc, vs = load_pack_files()
    t0 = time.perf_counter()
    lib = CompiledLibrary.load(elm, vs, inc)
    load_s = time.perf_counter() - t0
    ident = elm["library"]["identifier"]
    cases = {c.name: c for c in fixture_cases() if c.name in ("seed", "long-history")}
    out = {"compiled_load_ms": round(load_s * 1000, 1), "rss": rss_after_load(), "cases": {}}
    engines = {
        "reference-published": CqlEngine(workers=1, accelerate=False),
        "reference-accelerated": CqlEngine(workers=1, accelerate=True),
    }
    try:
        for e in engines.values():
            e.load([elm, *inc], vs)
        for name, case in cases.items():
            row = {"resources": len(case.resources)}
            for ename, e in engines.items():
                row[ename] = bench_reference(e, ident["id"], ident.get("version"), case, args.calls // 2, args.warmup)
            row["js-floor"] = bench_js_floor(case, args.calls, args.warmup)
            row["compiled"] = bench_compiled(lib, case, args.calls, args.warmup)
            ref = row["reference-published"]["worker_cpu"]["median_ms"]
            row["speedup_cpu_vs_published"] = round(ref / row["compiled"]["cpu"]["median_ms"], 1)
            row["speedup_cpu_vs_accelerated"] = round(
                row["reference-accelerated"]["worker_cpu"]["median_ms"] / row["compiled"]["cpu"]["median_ms"], 1
            )
            out["cases"][name] = row
    finally:
        for e in engines.values():
            e.close()
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
