"""The README's two commands after the first set-up: nothing reinstalled, no package index needed.

`./scripts/setup` (which `./scripts/serve` and `./scripts/test` run first) installs only when
pyproject.toml or package-lock.json changed since the last install; with both unchanged it calls
neither pip nor npm, so a second run works with the package index unreachable.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import pytest
import requests

from conftest import REPO
from support.fhir_server import free_port
from support.processes import wait_until_answering

UNREACHABLE = {
    "PIP_INDEX_URL": "http://127.0.0.1:9/",
    "PIP_EXTRA_INDEX_URL": "",
    "npm_config_registry": "http://127.0.0.1:9/",
}


def test_a_second_set_up_installs_nothing_and_needs_no_index():
    started = time.monotonic()
    result = subprocess.run(
        [str(REPO / "scripts" / "setup"), "--test"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **UNREACHABLE},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "installing" not in result.stderr
    assert time.monotonic() - started < 10


def test_serve_starts_with_the_package_index_unreachable():
    port = free_port()
    proc = subprocess.Popen(
        [str(REPO / "scripts" / "serve"), "--port", str(port)],
        cwd=REPO,
        env={**os.environ, **UNREACHABLE},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until_answering(proc, f"http://127.0.0.1:{port}/cds-services", timeout=90), "serve did not start"
        assert requests.get(f"http://127.0.0.1:{port}/cds-services", timeout=10).json()["services"]
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "installing" not in err


def test_a_port_in_use_fails_before_the_banner():
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        result = subprocess.run(
            [str(REPO / ".venv" / "bin" / "cds-hooks"), "serve", "--port", str(port)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode != 0
    assert f"Port {port} is in use" in result.stderr
    assert "server on" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.fhir_server
def test_the_readme_s_fhir_server_serves_the_fixtures_to_the_no_prefetch_example(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [str(REPO / "scripts" / "fhir-server"), str(port)],
        cwd=REPO,
        text=True,
        env={**os.environ, "FHIR_SERVER_DIR": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        for line in proc.stderr:  # set-up and loading lines, then the one saying it is ready
            if "Ctrl-C stops it" in line:
                break
        assert "FHIR server with the fixture patients on" in line, line
        answers = [
            subprocess.run(
                [
                    str(REPO / ".venv" / "bin" / "cds-hooks"),
                    "evaluate",
                    str(REPO / "fhir_fixtures" / "requests" / f"seed-{kind}.json"),
                    *extra,
                ],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=120,
            )
            for kind, extra in (("prefetch", []), ("no-prefetch", ["--fhir-server", f"http://127.0.0.1:{port}/fhir"]))
        ]
        summaries = [json.loads(a.stdout)["cards"][0]["summary"] for a in answers]
        assert summaries[0] == summaries[1]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
