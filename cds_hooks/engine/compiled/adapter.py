"""CompiledEngine: the engine bridge's interface (cds_hooks/engine.py CqlEngine) over compiled libraries,
so the service can switch engines by a setting (`engine_for("compiled" | "reference")`).

Not wired into the service yet. Where it plugs in: wherever the app builds its CqlEngine (the pipeline's
Evaluator takes `engine` and calls `engine.encode_resources(...)` then, through criteria.evaluate_case,
`engine.evaluate(library_id, version, resources, patient_id, parameters, expressions=[...])`).
`engine_for(setting)` below returns either engine.
"""
from __future__ import annotations

import os
import threading
import time

from cds_hooks.engine.compiled.library import CompiledLibrary, CqlError, ParameterError, UnsupportedElm


class CompiledEngine:
    """Same calls as CqlEngine: load(libraries, valuesets), evaluate(...), encode_resources, start, close,
    ping, stats, last_timing. Errors are raised as cds_hooks.engine.EngineError with the same kinds."""

    def __init__(self, **_ignored):
        self._libs: dict[tuple[str, str | None], CompiledLibrary] = {}
        self._last = threading.local()
        self._closed = False

    def load(self, libraries: list[dict], valuesets: list[dict]) -> None:
        """Compile every library that is not only included by another one; fails at load, naming the construct."""
        by_id = {l["library"]["identifier"]["id"]: l for l in libraries}
        included = {i["path"] for l in libraries for i in (l["library"].get("includes") or {}).get("def", [])}
        libs = {}
        for lid, elm in by_id.items():
            if lid in included and len(by_id) > 1:
                continue
            incs = [by_id[i["path"]] for i in (elm["library"].get("includes") or {}).get("def", []) if i["path"] in by_id]
            lib = CompiledLibrary.load(elm, valuesets, incs)
            libs[(lid, elm["library"]["identifier"].get("version"))] = lib
        self._libs = libs

    def start(self) -> None:
        pass

    def close(self) -> None:
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def encode_resources(resources: list[dict]) -> list[dict]:
        return resources  # nothing to encode: the compiled evaluator reads the dicts in place

    def _find(self, library_id, version):
        from cds_hooks.engine.bridge import EngineError
        hits = [l for (i, v), l in self._libs.items() if i == library_id and (version is None or v == version)]
        if not hits:
            raise EngineError("evaluation", f"library {library_id} is not loaded", "not_loaded")
        if len(hits) > 1:
            raise EngineError("evaluation", f"library {library_id} is loaded in several versions", "bad_request")
        return hits[0]

    def evaluate(self, library_id, library_version, resources, patient_id, parameters, expressions=None, *,
                 execution_datetime=None, timeout=None) -> dict:
        from cds_hooks.engine.bridge import EngineError
        if self._closed:
            raise EngineError("unavailable", "the CQL engine is closed")
        lib = self._find(library_id, library_version)
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            out = lib.evaluate(resources, parameters, patient_id, expressions=expressions,
                               execution_datetime=execution_datetime)
        except ParameterError as exc:
            raise EngineError("evaluation", str(exc), "parameter") from None
        except KeyError as exc:
            raise EngineError("evaluation", str(exc), "bad_request") from None
        except (CqlError, ValueError, TypeError) as exc:
            raise EngineError("evaluation", str(exc), "evaluation") from None
        dt = time.perf_counter() - t0
        self._last.timing = {"call": dt, "evaluate": dt, "cpu": time.process_time() - c0, "bytes_sent": 0}
        return out

    def last_timing(self) -> dict:
        return dict(getattr(self._last, "timing", {}))

    def ping(self) -> bool:
        return not self._closed

    def stats(self) -> dict:
        import resource
        return {"rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "libraries": len(self._libs)}

    def worker_pids(self) -> list[int]:
        return [os.getpid()]


def engine_for(setting: str = "compiled", **reference_kwargs):
    """`setting`: "compiled" or "reference" (the caller's setting; nothing here reads the environment)."""
    choice = setting.strip().lower()
    if choice == "compiled":
        return CompiledEngine()
    if choice == "reference":
        from cds_hooks.engine.bridge import CqlEngine
        return CqlEngine(**reference_kwargs)
    raise ValueError(f"the CQL engine must be 'compiled' or 'reference', not {choice!r}")


__all__ = ["CompiledEngine", "engine_for", "UnsupportedElm"]
