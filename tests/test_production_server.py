"""`cds-hooks serve --production`: gunicorn on cds_hooks/ops/gunicorn_conf.py, warm workers, graceful stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from conftest import FIXTURES, REPO, declared_services
from support.fhir_server import free_port
from support.hooks import statuses
from support.processes import wait_until_answering

from test_cli import SEED_STATUSES

CLI = str(Path(sys.executable).parent / "cds-hooks")


def children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def production_env(**settings: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    # The session's temporary folder (conftest.py), never the checkout's var/: the server writes its
    # audit database and development key there.
    env["CDS_VAR_DIR"] = os.environ["CDS_VAR_DIR"]
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return {**env, **settings}


@pytest.fixture(scope="module", params=["compiled", "reference"])
def server(request):
    port = free_port()
    env = production_env(
        CDS_AUTH_DISABLED="true",
        CDS_SERVER_WORKERS="2",
        CDS_ENGINE_WORKERS="1",
        CDS_SERVER_GRACEFUL_TIMEOUT="10",
        CDS_CQL_ENGINE=request.param,
    )
    proc = subprocess.Popen(
        [CLI, "serve", "--production", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    assert wait_until_answering(proc, f"{base}/cds-services", timeout=90, interval=0.1), (
        "production server did not start"
    )
    yield proc, base, request.param
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


def engine_processes(master: int) -> dict[int, list[int]]:
    return {w: children(w) for w in children(master)}


def test_it_runs_the_configured_number_of_workers_each_with_its_engine_started(server):
    proc, _, cql_engine = server
    nodes_per_worker = 1 if cql_engine == "reference" else 0  # the compiled engine runs inside the worker
    deadline = time.monotonic() + 60
    while True:  # a worker accepts connections only once its engine is warm; the other may still be warming
        workers = engine_processes(proc.pid)
        if len(workers) == 2 and all(len(nodes) == nodes_per_worker for nodes in workers.values()):
            break
        assert time.monotonic() < deadline, f"workers and engines: {workers}"
        time.sleep(0.2)
    for nodes in workers.values():
        assert all("worker.mjs" in Path(f"/proc/{n}/cmdline").read_text() for n in nodes)


def test_it_answers_the_seed_case(server):
    _, base, _ = server
    body = (FIXTURES / "requests" / "seed-prefetch.json").read_bytes()
    r = requests.post(
        f"{base}/cds-services/lumbar-fusion", data=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    assert r.status_code == 200
    assert statuses(r.json()["cards"][0]) == SEED_STATUSES


def test_sigterm_stops_it_gracefully_with_its_engines(server):
    proc, _, cql_engine = server
    engines = [n for nodes in engine_processes(proc.pid).values() for n in nodes]
    assert bool(engines) == (cql_engine == "reference")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out[-2000:]
    assert "Shutting down" in out and out.count("engine warm in") == 2
    deadline = time.monotonic() + 10
    while any(alive(n) for n in engines) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(n) for n in engines)


def test_invalid_settings_are_refused_before_the_server_starts():
    out = subprocess.run(
        [CLI, "serve", "--production"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=production_env(CDS_SERVER_WORKERS="0"),
    )
    assert out.returncode == 2
    assert "invalid settings" in out.stderr and "server_workers" in out.stderr


def test_the_wsgi_module_builds_the_application_from_the_environment():
    code = (
        "import cds_hooks.web.wsgi as w; from cds_hooks.web.extensions import registry_of; "
        "print(sorted(e.pack.service_id for e in registry_of(w.app).evaluators.values()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=production_env(CDS_AUTH_DISABLED="true"),
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.replace("'", '"')) == sorted(declared_services())


def readme_production_command() -> tuple[dict[str, str], list[str]]:
    """The settings and command of the README's "Production server" block, as a shell would split them."""
    import re
    import shlex

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Production server\s+```sh\n(.*?)```", readme, re.S).group(1)
    words = shlex.split(block.replace("\\\n", " "))
    settings = dict(w.split("=", 1) for w in words if re.match(r"^[A-Z_]+=", w))
    return settings, [w for w in words if not re.match(r"^[A-Z_]+=", w)]


def test_the_readme_production_command_starts_as_written():
    settings, command = readme_production_command()
    assert command == [".venv/bin/cds-hooks", "serve", "--production"]
    port = free_port()
    settings["CDS_SERVER_BIND"] = f"127.0.0.1:{port}"  # the one change: a free loopback port
    proc = subprocess.Popen(
        [str(REPO / command[0]), *command[1:]],
        cwd=REPO,
        env=production_env(**settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert wait_until_answering(proc, f"http://127.0.0.1:{port}/readyz", timeout=90), (
            "the README's production command did not start"
        )
        # Authentication is on: a hook call without a JWT is refused.
        body = (FIXTURES / "requests" / "seed-prefetch.json").read_bytes()
        r = requests.post(
            f"http://127.0.0.1:{port}/cds-services/lumbar-fusion",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        assert r.status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


def test_the_production_server_without_its_settings_says_which_and_exits_2():
    result = subprocess.run(
        [CLI, "serve", "--production"], cwd=REPO, env=production_env(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "CDS_PUBLIC_BASE_URL" in result.stderr and "Traceback" not in result.stderr
