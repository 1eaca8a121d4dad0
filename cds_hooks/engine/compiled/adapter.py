"""CompiledEngine: the engine bridge's interface (cds_hooks/engine/bridge.py CqlEngine) over compiled
libraries, so the service switches engines by one setting (`cql_engine`, CDS_CQL_ENGINE=compiled|reference).

The application factory, the production server's warm-up and `cds-hooks doctor` build their engine with
`engine_from_config(config)`; the reference engine (cql-execution in Node workers) stays the judge
(tests/support/cql_judge.py) and the fallback a setting away.
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
        """Compile every library that has statements of its own (a library another one includes too: a
        pack's criteria library is also included by its documentation library), each with the others
        available to its includes; fails at load, naming the construct."""
        libs = {}
        for elm in libraries:
            if not (elm["library"].get("statements") or {}).get("def"):
                continue
            ident = elm["library"]["identifier"]
            others = [lib for lib in libraries if lib is not elm]
            libs[(ident["id"], ident.get("version"))] = CompiledLibrary.load(elm, valuesets, others)
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

    def evaluate(
        self,
        library_id,
        library_version,
        resources,
        patient_id,
        parameters,
        expressions=None,
        *,
        execution_datetime=None,
        timeout=None,
    ) -> dict:
        from cds_hooks.engine.bridge import EngineError

        if self._closed:
            raise EngineError("unavailable", "the CQL engine is closed")
        lib = self._find(library_id, library_version)
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            out = lib.evaluate(
                resources, parameters, patient_id, expressions=expressions, execution_datetime=execution_datetime
            )
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


def engine_from_config(config, workers: int | None = None):
    """The engine `config.cql_engine` names, with the service's engine settings (`workers` overrides
    `engine_workers`, the number of Node processes of the reference engine)."""
    return engine_for(
        config.cql_engine,
        node_executable=config.node_executable,
        workers=workers or config.engine_workers,
        timeout=config.engine_timeout,
        max_heap_mb=config.engine_heap_mb,
        cache_dir=config.engine_cache_dir,
    )


__all__ = ["CompiledEngine", "engine_for", "engine_from_config", "UnsupportedElm"]
