"""An alternative measured side by side: the same engine in a V8 embedded in Python (mini-racer).

The service evaluates CQL in long-lived Node processes and talks to them over pipes. This experiment
runs the very same JavaScript (cql-execution, cql-exec-fhir, the worker's evaluation code and its
shortcuts, bundled with esbuild) inside the Python process with mini-racer, and compares the two on
every fixture: the Node worker's round trip from Python against the embedded call, interleaved, with
the results of every define required to be identical.

It needs two packages the service does not use, installed by hand for the experiment:

    .venv/bin/pip install mini-racer==0.14.1
    (cd /tmp/esb && npm install --no-save esbuild@0.28.2)
    .venv/bin/python -m benchmarks.embedded_v8 --esbuild /tmp/esb/node_modules/.bin/esbuild

The bundle is built from cds_hooks/engine/js/worker.mjs (its evaluation part: from the ELM types
constant up to the protocol loop) and accelerate.mjs, with Node's built-ins replaced by small shims
(the model info comes parsed from the worker's disk cache, so no XML parser runs in V8).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cds_hooks.engine.bridge import CqlEngine, _encode_line
from cds_hooks.pipeline.registry import engine_payload
from cds_hooks.engine.retrieves import retrieve_filter

from .engine_ab import engine_calls

REPO = Path(__file__).resolve().parents[1]
ENGINE_JS = REPO / "cds_hooks" / "engine" / "js"
CORE_MODULES = [
    "cql-execution/lib/util/immutableUtil",
    "cql-execution/lib/elm/list",
    "cql-execution/lib/datatypes/datetime",
    "xml2js",
]
PRELUDE = r"""
var process = { env: {}, stderr: { write() {} }, stdout: { write() {} },
  cpuUsage() { return { user: 0, system: 0 }; }, memoryUsage() { return {}; }, uptime() { return 0; } };
globalThis.process = process;
class EventEmitter { on() { return this; } once() { return this; } emit() { return false; }
  removeListener() { return this; } removeAllListeners() { return this; } }
var __shims = { events: Object.assign(EventEmitter, { EventEmitter }), stream: { Stream: EventEmitter },
  timers: { setImmediate: (f, ...a) => Promise.resolve().then(() => f(...a)) },
  fs: { readFileSync() { throw new Error("no file system in the embedded engine"); } } };
var require = (n) => { if (n in __shims) return __shims[n]; throw new Error("no module " + n); };
globalThis.require = require;
"""


def entry_source() -> str:
    worker = (ENGINE_JS / "worker.mjs").read_text(encoding="utf-8")
    body = worker[worker.index("const SYSTEM = ") : worker.index("const write = (obj) =>")]
    body = body.replace("function timing(", "function unusedTiming(")
    shortcuts = (
        (ENGINE_JS / "accelerate.mjs")
        .read_text(encoding="utf-8")
        .replace("export function installShortcuts", "function installShortcuts")
    )
    modules = ",\n".join(f"  {json.dumps(m)}: require({json.dumps(m)})" for m in CORE_MODULES)
    return f"""
const cql = require("cql-execution");
const {{ PatientSource }} = require("cql-exec-fhir");
const modules = {{
{modules}
}};
const load = (name) => modules[name];
{shortcuts}
const xml2js = require("xml2js");
xml2js.parseString = (xml, opts, cb) => cb(null, globalThis.__MODELINFO__);
{body}
globalThis.engine = {{
  load(line) {{ return JSON.stringify(opLoad(JSON.parse(line))); }},
  evaluate(line, done) {{
    opEvaluate(JSON.parse(line)).then(
      (r) => done(JSON.stringify({{ ok: true, result: r }})),
      (e) => done(JSON.stringify({{ ok: false, error: String((e && e.message) || e) }})));
  }},
}};
"""


def build_bundle(esbuild: str, workdir: Path) -> Path:
    entry = workdir / "entry.js"
    entry.write_text(entry_source(), encoding="utf-8")
    out = workdir / "bundle.js"
    externals = [
        f"--external:{m}"
        for m in ("events", "stream", "string_decoder", "timers", "fs", "path", "crypto", "util", "buffer")
    ]
    subprocess.run(
        [
            esbuild,
            str(entry),
            "--bundle",
            "--format=iife",
            "--platform=node",
            f"--outfile={out}",
            "--log-level=warning",
            *externals,
        ],
        check=True,
        cwd=REPO,
        env={"NODE_PATH": str(REPO / "node_modules"), "PATH": "/usr/bin:/bin"},
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="CQL engine: Node worker vs embedded V8 (mini-racer)")
    parser.add_argument("--esbuild", required=True, help="the esbuild executable")
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=8)
    args = parser.parse_args(argv)
    from py_mini_racer import MiniRacer

    pack, calls = engine_calls()
    libraries, valuesets = engine_payload({pack.service_id: pack})
    keep = retrieve_filter(pack.elm, pack.valuesets)
    lib = pack.library
    engine = CqlEngine(workers=1, timeout=60.0, max_heap_mb=192)
    engine.load(libraries, valuesets)
    engine.start()  # writes the parsed model info to its cache, which the embedded engine reads
    caches = sorted((REPO / "node_modules" / ".cache" / "fusion-cds").glob("modelinfo-*.json"))
    if not caches:
        print("no parsed model info in node_modules/.cache/fusion-cds", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        bundle = build_bundle(args.esbuild, Path(tmp))
        ctx = MiniRacer()
        t0 = time.perf_counter()
        ctx.eval(PRELUDE)
        ctx.eval("globalThis.__MODELINFO__ = " + caches[-1].read_text(encoding="utf-8") + ";")
        ctx.eval(bundle.read_text(encoding="utf-8"))
        load_line = json.dumps({"op": "load", "libraries": libraries, "valuesets": valuesets})
        ctx.eval(f"globalThis.__loaded = engine.load({json.dumps(load_line)})")
        started = time.perf_counter() - t0
    evaluate = ctx.eval("(line) => new Promise((resolve) => engine.evaluate(line, resolve))")
    print(f"embedded engine ready in {started:.2f}s (bundle, model, libraries)")
    print(f"{'fixture':14s} {'Node worker p50 / least ms':>28s} {'embedded V8 p50 / least ms':>28s}  identical")
    ok = True
    try:
        for name, call in calls:
            resources = engine.encode_resources(keep.select(call["resources"]))
            node, embedded = [], []
            for i in range(args.warmup + args.calls):
                t0 = time.perf_counter()
                expected = engine.evaluate(
                    lib["id"], lib.get("version"), resources, call["patient_id"], call["parameters"]
                )
                t1 = time.perf_counter()
                line = _encode_line(
                    {
                        "resources": resources,
                        "op": "evaluate",
                        "library": {"id": lib["id"], "version": lib.get("version")},
                        "patientId": call["patient_id"],
                        "parameters": call["parameters"],
                    }
                )
                out = json.loads(evaluate(line.decode("utf-8")).get())
                t2 = time.perf_counter()
                if i == 0:
                    same = bool(out.get("ok")) and out["result"] == expected
                    ok = ok and same
                if i >= args.warmup:
                    node.append(t1 - t0)
                    embedded.append(t2 - t1)
            print(
                f"{name:14s} {statistics.median(node) * 1e3:17.1f} / {min(node) * 1e3:6.1f}"
                f" {statistics.median(embedded) * 1e3:19.1f} / {min(embedded) * 1e3:6.1f}  {'yes' if same else 'NO'}"
            )
    finally:
        engine.close()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
