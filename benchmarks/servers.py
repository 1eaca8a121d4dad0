"""Start the servers under test and read their processes' CPU time and memory from /proc.

Both the service and the floor run under the production server configuration
(cds_hooks/ops/gunicorn_conf.py): the service through its own command, `cds-hooks serve --production`,
the floor with the same gunicorn settings module.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def process_tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(_children(p))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the given processes (those still alive)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        except (OSError, IndexError, ValueError):
            continue
    return total / CLK_TCK


def memory(pid: int) -> dict[str, int]:
    """Resident set size now and at its peak (VmRSS, VmHWM), in bytes."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    name, value, _unit = line.split()
                    out[name[:-1]] = int(value) * 1024
    except OSError:
        pass
    return out


def command_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


@dataclass
class Server:
    """A gunicorn server process (master, workers, and the workers' CQL engine processes)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    log_path: Path | None = None
    startup: dict[str, float] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_dir: Path, probe_path: str, probe_body: bytes, timeout: float = 60.0) -> "Server":
        """Start, and time process start -> first 200 on discovery and on a real call (`probe_body`)."""
        self.log_path = log_dir / f"{self.name}.log"
        log = open(self.log_path, "wb")
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(
            self.argv, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        import requests  # the project's own dependency; only for the start-up probe

        session = requests.Session()
        while "first_200_call" not in self.startup:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not answer within {timeout:g}s; see {self.log_path}")
            try:
                if "first_200_discovery" not in self.startup:
                    if session.get(f"{self.base_url}/cds-services", timeout=2).status_code == 200:
                        self.startup["first_200_discovery"] = time.perf_counter() - self.started_at
                if (
                    session.post(
                        f"{self.base_url}{probe_path}",
                        data=probe_body,
                        timeout=10,
                        headers={"Content-Type": "application/json"},
                    ).status_code
                    == 200
                ):
                    self.startup["first_200_call"] = time.perf_counter() - self.started_at
            except requests.RequestException:
                pass
            time.sleep(0.02)
        session.close()
        return self

    def pids(self) -> list[int]:
        return process_tree(self.proc.pid) if self.proc else []

    def cpu(self) -> float:
        return cpu_seconds(self.pids())

    def workers(self) -> list[dict]:
        """Each gunicorn worker with its peak RSS and that of its engine (Node) processes."""
        out = []
        for wpid in _children(self.proc.pid):
            nodes = [p for p in process_tree(wpid) if p != wpid]
            w_mem = memory(wpid)
            n_mem = [memory(p) for p in nodes]
            out.append(
                {
                    "pid": wpid,
                    "peak_rss": w_mem.get("VmHWM", 0),
                    "rss": w_mem.get("VmRSS", 0),
                    "engine_peak_rss": [m.get("VmHWM", 0) for m in n_mem],
                    "peak_rss_with_engine": w_mem.get("VmHWM", 0) + sum(m.get("VmHWM", 0) for m in n_mem),
                }
            )
        return out

    def master_memory(self) -> dict[str, int]:
        return memory(self.proc.pid) if self.proc else {}

    def stop(self, timeout: float = 30.0) -> float | None:
        """SIGTERM (graceful shutdown) and wait; returns the seconds it took, None if it had to be killed."""
        if not self.proc or self.proc.poll() is not None:
            return None
        t0 = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
            return time.perf_counter() - t0
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
            return None


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment (CDS_* settings included: the servers run as configured), the harness's settings on top."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def service_server(port: int, settings: dict[str, str], name: str = "service") -> Server:
    cli = str(Path(sys.executable).parent / "cds-hooks")
    return Server(
        name, [cli, "serve", "--production", "--host", "127.0.0.1", "--port", str(port)], server_env(settings), port
    )


def floor_server(port: int, settings: dict[str, str]) -> Server:
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:cds_hooks.ops.gunicorn_conf",
        "--bind",
        f"127.0.0.1:{port}",
        "benchmarks.floor:app",
    ]
    return Server("floor", argv, server_env(settings), port)
