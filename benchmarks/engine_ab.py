"""The CQL engine side by side: the published engine against each optimisation, on every fixture.

    .venv/bin/python -m benchmarks.engine_ab [--calls 40] [--elm-before FILE]

For every fixture request with prefetch (fhir_fixtures/requests/*-prefetch.json) and the long-history
patient, the engine call the service would make (same resources, parameters, library) is run on
several engines at once, interleaved call by call so that a noisy machine hurts them alike:

- published: cql-execution as published (CDS_ENGINE_ACCELERATE=0), every resource of the record;
- shortcuts: + the exact shortcuts of cds_hooks/engine/js/accelerate.mjs;
- filtered: + only the resources the library's retrieves can use (cds_hooks/engine/retrieves.py);
- restructured (with --elm-before): the three above run the ELM of FILE (the library before its
  CQL was restructured); this one runs the current ELM, as the service does.

Every variant must give the published engine's results: all defines where the ELM is the same,
the results expression where it differs. Reports per variant the median wall time of the worker's
evaluation, its median and least CPU time and the request size. The least CPU time of many calls is
the steadiest number when other work shares the machine (contention inflates the medians).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from cds_hooks.config import Config
from cds_hooks.pipeline.criteria import parameters_for
from cds_hooks.engine.bridge import CqlEngine
from cds_hooks.hooks.hook_request import parse_hook_request
from cds_hooks.pipeline.orders import group_cases
from cds_hooks.pipeline.patient_data import gather
from cds_hooks.pipeline.profiles import select_profile
from cds_hooks.pipeline.registry import engine_payload
from cds_hooks.engine.retrieves import retrieve_filter
from cds_hooks.packs.loader import load_rule_packs

from .long_history import patient_bundle, requests_for

REPO = Path(__file__).resolve().parents[1]


def engine_calls(
    pack_id: str = "lumbar-fusion", requests: list[tuple[str, dict]] | None = None
) -> tuple[object, list[tuple[str, dict]]]:
    """(pack, [(name, call)]): the engine call of the first case of every request in `requests`
    ((name, body) pairs; by default every fixture request with full prefetch and the long-history patient)."""
    from cds_hooks.spine.derived_findings import derive as derive_findings
    from cds_hooks.pipeline.evaluation import Evaluator

    config = Config.development()
    pack = load_rule_packs(config.cql_root)[pack_id]
    evaluator = Evaluator(pack, engine=None, config=config)
    if requests is None:
        requests = [
            (p.name.replace("-prefetch.json", ""), json.loads(p.read_text(encoding="utf-8")))
            for p in sorted((REPO / "fhir_fixtures" / "requests").glob("*-prefetch.json"))
            if not p.name.endswith("-no-prefetch.json")
        ]
        requests.append(("long-history", requests_for(patient_bundle(), "http://127.0.0.1:8090/fhir")[0]))
    calls = []
    for name, body in requests:
        hook_request = parse_hook_request(body, pack.hook)
        cases = group_cases(evaluator.detector.detect(hook_request.draft_orders))
        if not cases:
            continue
        data = gather(hook_request, pack.prefetch, evaluator.fetch_settings)
        if config.report_text:  # as the service does: findings read from report text join the record
            data.add_derived(derive_findings(data.resources, evaluator.region))
        choice = select_profile(pack, data.of_type("Coverage"), cases[0], config.payer_profiles)
        calls.append(
            (
                name,
                {
                    "resources": data.resources,
                    "patient_id": data.patient_id,
                    "parameters": parameters_for(cases[0], choice.profile, data),
                },
            )
        )
    return pack, calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="CQL engine variants side by side")
    parser.add_argument("--calls", type=int, default=40, help="measured calls per fixture and variant")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--elm-before", type=Path, help="ELM JSON of the library before a CQL change")
    parser.add_argument("--out", type=Path, help="write the numbers as JSON here")
    args = parser.parse_args(argv)

    pack, calls = engine_calls()
    libraries, valuesets = engine_payload({pack.service_id: pack})
    lib_id, lib_version = pack.library["id"], pack.library.get("version")
    results_expression = pack.library.get("resultsExpression", "Criteria")
    before = libraries
    if args.elm_before:
        old = json.loads(args.elm_before.read_text(encoding="utf-8"))
        before = [old if lib["library"]["identifier"]["id"] == lib_id else lib for lib in libraries]
    keep = retrieve_filter(pack.elm, pack.valuesets)
    keep_before = retrieve_filter(before, pack.valuesets)

    variants = [
        ("published", False, None, before),
        ("shortcuts", True, None, before),
        ("filtered", True, keep_before, before),
    ]
    if args.elm_before:
        variants.append(("restructured", True, keep, libraries))
    engines = {}
    try:
        for name, accelerate, _, elm in variants:
            engines[name] = CqlEngine(workers=1, timeout=60.0, accelerate=accelerate)
            engines[name].load(elm, valuesets)
            engines[name].start()
        report: dict = {"variants": [v[0] for v in variants], "fixtures": {}}
        for fixture, call in calls:
            inputs = {
                name: (flt.select(call["resources"]) if flt else call["resources"]) for name, _, flt, _ in variants
            }
            samples = {
                name: {"wall": [], "cpu": [], "bytes": 0, "resources": len(inputs[name])} for name, *_ in variants
            }
            reference = None
            for i in range(args.warmup + args.calls):
                for name, _, _, elm in variants:
                    same_elm = elm is before
                    expressions = None if same_elm else [results_expression]
                    out = engines[name].evaluate(
                        lib_id, lib_version, inputs[name], call["patient_id"], call["parameters"], expressions
                    )
                    timing = engines[name].last_timing()
                    if i == 0:
                        if name == "published":
                            reference = out
                        else:
                            expected = reference if same_elm else {results_expression: reference[results_expression]}
                            # A filtered engine returns resources without the elements it was not sent.
                            flt = next(v[2] for v in variants if v[0] == name)
                            if flt is not None:
                                expected = flt.prune_within(expected)
                            if out != expected:
                                print(
                                    f"MISMATCH: {name} differs from the published engine on {fixture}", file=sys.stderr
                                )
                                return 1
                    if i >= args.warmup:
                        samples[name]["wall"].append(timing.get("evaluate", 0.0))
                        samples[name]["cpu"].append(timing.get("cpu", 0.0))
                        samples[name]["bytes"] = timing["bytes_sent"]
            report["fixtures"][fixture] = {
                name: {
                    "evaluate_ms": statistics.median(s["wall"]) * 1000,
                    "cpu_ms": statistics.median(s["cpu"]) * 1000,
                    "cpu_min_ms": min(s["cpu"]) * 1000,
                    "request_bytes": s["bytes"],
                    "resources": s["resources"],
                }
                for name, s in samples.items()
            }
    finally:
        for engine in engines.values():
            engine.close()

    names = report["variants"]
    print(
        "per evaluation in the worker: median wall ms / median CPU ms / least CPU ms (request KB, resources);"
        " results identical to the published engine: yes"
    )
    print(f"{'fixture':14s} " + " ".join(f"{n:>34s}" for n in names))
    for fixture, by_variant in report["fixtures"].items():
        cells = [
            f"{v['evaluate_ms']:.1f} / {v['cpu_ms']:.1f} / {v['cpu_min_ms']:.1f} ({v['request_bytes'] / 1024:.0f} KB, {v['resources']})"
            for v in (by_variant[n] for n in names)
        ]
        print(f"{fixture:14s} " + " ".join(f"{c:>34s}" for c in cells))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
