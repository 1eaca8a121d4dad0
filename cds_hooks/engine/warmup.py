"""Warm a freshly started service process before it takes traffic.

Runs each pack's results expression a few times for a synthetic patient, so that the first real call
pays no start-up: for the reference engine it starts every Node worker and loads the libraries into it
(the Node start-up, the library build, a cold JIT); for the compiled engine, whose libraries were
compiled when the application was built, it runs the generated code once through every define the
results expression reaches. The production server calls it in each worker after
the fork (cds_hooks/ops/gunicorn_conf.py).
"""

from __future__ import annotations

import logging
import time

from cds_hooks.engine.bridge import CqlEngine, EngineError
from cds_hooks.engine.compiled.adapter import CompiledEngine

log = logging.getLogger("cds_hooks.warmup")

WARM_UP_PATIENT = {"resourceType": "Patient", "id": "warm-up"}


def warm_up(engine: CqlEngine | CompiledEngine, packs, rounds: int = 3) -> float:
    """Start and exercise `engine` with the results expression of each rule pack in `packs`; returns
    the seconds it took.

    Raises EngineError when the engine cannot start (no Node, bad ELM): a worker that cannot evaluate
    must not serve. An evaluation that fails here is logged and ignored (no parameters are passed,
    so a library may legitimately reject the synthetic call).
    """
    started = time.perf_counter()
    engine.start()
    calls = max(1, rounds) * max(1, len(engine.worker_pids()))
    for pack in packs:
        expression = pack.library.get("resultsExpression", "Criteria")
        for _ in range(calls):
            try:
                engine.evaluate(
                    pack.library["id"],
                    pack.library.get("version"),
                    [WARM_UP_PATIENT],
                    WARM_UP_PATIENT["id"],
                    {},
                    expressions=[expression],
                )
            except EngineError as exc:
                if exc.kind != "evaluation":
                    raise
                log.warning("warm-up evaluation of %s failed (%s); continuing", pack.service_id, exc)
                break
    elapsed = time.perf_counter() - started
    log.info("engine warm in %.2fs (%d workers)", elapsed, len(engine.worker_pids()))
    return elapsed
