"""Per-stage time of one call, measured in this process on the service's own pipeline.

parse (JSON body -> HookRequest), then the stages the evaluator records in `Outcome.timings`
(orders, data, engine, cards), then respond (the response object -> JSON bytes). The application is
built by the same factory as the server's, with the same settings, and its own engine.

The engine stage is split further with what the engine reports of its last call
(CqlEngine.last_timing): engine.prepare (choosing and encoding the resources, in Python),
engine.transport (pipes and the Python side of the protocol), engine.parse (the worker reading the
request line), engine.cql (the evaluation itself, in the Node worker), and the request line's size.
"""

from __future__ import annotations

import json
import statistics
import time

from cds_hooks.web.app import create_app
from cds_hooks.config import Config
from cds_hooks.hooks.hook_request import parse_hook_request
from cds_hooks.web.extensions import registry_of

STAGES = ("parse", "orders", "data", "report_text", "engine", "cards", "respond")
ENGINE_PARTS = ("engine.prepare", "engine.transport", "engine.parse", "engine.cql")


class StageProbe:
    def __init__(self, settings: dict[str, str]):
        # As the environment gives them: JSON for lists and maps (e.g. CDS_FHIR_SERVERS).
        overrides = {
            k[len("CDS_") :].lower(): json.loads(v) if v[:1] in ("[", "{") else v
            for k, v in settings.items()
            if k.startswith("CDS_") and not k.startswith("CDS_SERVER_")
        }
        self.app = create_app(Config.from_env(**overrides))
        self.registry = registry_of(self.app)

    def measure(self, service_id: str, body: bytes, calls: int, warmup: int = 5) -> dict:
        evaluator = self.registry.get(service_id)
        samples: dict[str, list[float]] = {s: [] for s in STAGES + ENGINE_PARTS + ("engine.bytes",)}
        totals = []
        for i in range(warmup + calls):
            t0 = time.perf_counter()
            hook_request = parse_hook_request(json.loads(body), evaluator.pack.hook)
            t1 = time.perf_counter()
            outcome = evaluator.evaluate(hook_request, "http://127.0.0.1")
            t2 = time.perf_counter()
            json.dumps(outcome.response, ensure_ascii=False).encode("utf-8")
            t3 = time.perf_counter()
            if i < warmup:
                continue
            samples["parse"].append(t1 - t0)
            for stage in ("orders", "data", "report_text", "engine", "cards"):
                samples[stage].append(outcome.timings.get(stage, 0.0))
            samples["respond"].append(t3 - t2)
            timing = self.registry.engine.last_timing() if outcome.cases else {}
            if timing and len(outcome.cases) == 1:
                call = timing["call"]
                samples["engine.prepare"].append(outcome.timings["engine"] - call)
                samples["engine.transport"].append(call - timing.get("parse", 0.0) - timing.get("evaluate", 0.0))
                samples["engine.parse"].append(timing.get("parse", 0.0))
                samples["engine.cql"].append(timing.get("evaluate", 0.0))
                samples["engine.bytes"].append(timing["bytes_sent"])
            totals.append(t3 - t0)
        out = {s: statistics.median(v) for s, v in samples.items() if v}
        out["total"] = statistics.median(totals)
        return out

    def close(self) -> None:
        self.registry.engine.close()
