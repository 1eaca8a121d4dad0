"""The `cds-hooks` command as a user runs it: evaluate a request file; serve and answer curl."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from conftest import FIXTURES, REPO
from support.fhir_server import free_port
from support.hooks import statuses
from support.processes import wait_until_answering

CLI = str(Path(sys.executable).parent / "cds-hooks")
SEED_STATUSES = {
    "indication": "met",
    "imaging-severity@L5-S1": "not-met",
    "conservative-care": "not-met",
    "instability@L5-S1": "not-documented",
    "injection-trial": "met",
    "neuropathic-medication": "not-documented",
    "facet-evaluation": "not-documented",
    "nicotine": "not-documented",
    "red-flags": "not-documented",
}


def run(*args, **kw):
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120, cwd=REPO, **kw)


def test_evaluate_prints_the_seed_response_with_the_nine_statuses():
    out = run("evaluate", str(FIXTURES / "requests" / "seed-prefetch.json"))
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert statuses(body["cards"][0]) == SEED_STATUSES


@pytest.mark.fhir_server
def test_evaluate_without_prefetch_against_the_fhir_server_gives_the_same_statuses(fhir_server):
    out = run("evaluate", str(FIXTURES / "requests" / "seed-no-prefetch.json"), "--fhir-server", fhir_server.base_url)
    assert out.returncode == 0, out.stderr
    assert statuses(json.loads(out.stdout)["cards"][0]) == SEED_STATUSES


def test_evaluate_exits_non_zero_and_prints_the_error_for_a_bad_request(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hook": "order-sign", "context": {}}))
    out = run("evaluate", str(bad))
    assert out.returncode == 1
    assert json.loads(out.stdout)["error"] == "invalid-request"


def test_evaluate_reports_an_unreadable_file():
    out = run("evaluate", "/no/such/file.json")
    assert out.returncode == 2 and "cannot read" in out.stderr


def test_evaluate_answers_from_the_service_whose_pack_claims_the_orders():
    out = run("evaluate", str(FIXTURES / "requests" / "cervical-seed-prefetch.json"))
    assert out.returncode == 0, out.stderr
    (card,) = json.loads(out.stdout)["cards"]
    assert card["summary"].startswith("C5-C6 ACDF (22551)")


def test_evaluate_refuses_orders_no_service_claims_in_one_line():
    out = run("evaluate", str(FIXTURES / "requests" / "non-fusion-prefetch.json"))
    assert out.returncode == 2 and out.stdout == ""
    (line,) = [x for x in out.stderr.splitlines() if not x.startswith("{")]  # JSON lines are the service's log
    assert "no service claims these orders" in line and "lumbar-fusion" in line and "cervical-fusion" in line


def test_evaluate_of_orders_for_two_services_prints_each_answer_under_its_service_id(tmp_path):
    body = json.loads((FIXTURES / "requests" / "seed-prefetch.json").read_text())
    cervical = json.loads((FIXTURES / "orders" / "cervical-seed.json").read_text())
    for entry in cervical["entry"]:
        entry["resource"]["subject"] = {"reference": "Patient/seed-patient"}
    body["context"]["draftOrders"]["entry"] += cervical["entry"]
    both = tmp_path / "both.json"
    both.write_text(json.dumps(body))
    out = run("evaluate", str(both))
    assert out.returncode == 0, out.stderr
    answers = json.loads(out.stdout)
    assert set(answers) == {"lumbar-fusion", "cervical-fusion"}
    assert statuses(answers["lumbar-fusion"]["cards"][0]) == SEED_STATUSES
    (card,) = answers["cervical-fusion"]["cards"]
    assert card["summary"].startswith("C5-C6 ACDF (22551)")


def test_evaluate_with_service_asks_that_service_alone():
    out = run("evaluate", str(FIXTURES / "requests" / "non-fusion-prefetch.json"), "--service", "lumbar-fusion")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"cards": []}


def test_serve_answers_discovery_and_the_readme_curl(tmp_path):
    port = free_port()
    env = {**os.environ, "CDS_VAR_DIR": str(tmp_path)}  # its audit database, not the checkout's var/
    proc = subprocess.Popen(
        [CLI, "serve", "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_until_answering(proc, f"{base}/cds-services", timeout=60), "server did not start"
        body = (FIXTURES / "requests" / "seed-prefetch.json").read_bytes()
        r = requests.post(
            f"{base}/cds-services/lumbar-fusion", data=body, headers={"Content-Type": "application/json"}, timeout=30
        )
        assert r.status_code == 200
        assert statuses(r.json()["cards"][0]) == SEED_STATUSES
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert "AUTHENTICATION IS OFF" in err
