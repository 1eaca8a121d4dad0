"""`cds-hooks brief REQUEST.json`: the peer-to-peer brief offline, as a user runs it."""

import json
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

from conftest import FIXTURES, REPO

CLI = str(Path(sys.executable).parent / "cds-hooks")


def run(*args):
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120, cwd=REPO)


def text(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", " ", html))


def test_the_seed_brief_names_the_case_the_objections_and_the_missing_documents(tmp_path):
    out_file = tmp_path / "brief.html"
    out = run("brief", str(FIXTURES / "requests" / "seed-prefetch.json"), "-o", str(out_file))
    assert out.returncode == 0, out.stderr
    html = out_file.read_text(encoding="utf-8")
    page = text(html)
    assert "52-year-old female, covered by Acme Health Plan, for ALIF (22558) at L5-S1, planned 2026-12-14." in page
    objections = re.findall(r'<li data-criterion="([a-z-]+)"', html)
    assert objections == ["imaging-severity", "conservative-care", "instability"]
    assert re.search(r'data-document="instability-imaging".*?Missing', html, re.S)
    assert re.search(r'data-document="advanced-imaging".*?Present.*?DiagnosticReport/seed-mri-2026-report', html, re.S)


def test_the_brief_is_written_to_standard_output_without_a_file():
    out = run("brief", str(FIXTURES / "requests" / "meets-all-prefetch.json"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("<!doctype html>")
    assert "Every required criterion is met on the record" in text(out.stdout)


def test_a_request_without_an_order_to_check_gets_no_brief():
    out = run("brief", str(FIXTURES / "requests" / "non-fusion-prefetch.json"))
    assert out.returncode == 2 and "no service claims these orders" in out.stderr and out.stdout == ""


def test_orders_for_two_services_need_the_service_named(tmp_path):
    body = json.loads((FIXTURES / "requests" / "seed-prefetch.json").read_text())
    body["context"]["draftOrders"]["entry"] += json.loads((FIXTURES / "orders" / "cervical-seed.json").read_text())[
        "entry"
    ]
    both = tmp_path / "both.json"
    both.write_text(json.dumps(body))
    out = run("brief", str(both))
    assert out.returncode == 2 and out.stdout == ""
    assert "several services (cervical-fusion, lumbar-fusion)" in out.stderr and "--service" in out.stderr
    named = run("brief", str(both), "--service", "lumbar-fusion")
    assert named.returncode == 0, named.stderr
    assert named.stdout.startswith("<!doctype html>")


def test_a_request_the_service_cannot_use_is_reported(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hook": "order-sign", "context": {}}))
    out = run("brief", str(bad))
    assert out.returncode == 1 and "cannot evaluate" in out.stderr and "Traceback" not in out.stderr


def test_an_unreadable_file_is_reported():
    out = run("brief", "/no/such/file.json")
    assert out.returncode == 2 and "cannot read" in out.stderr


# ------------------------------------------------------------------ from the audit trail


def audit_run(audit_app, tmp_path, *args):
    import os

    from support.audit_db import audit_env

    env = {**os.environ, **audit_env(audit_app.config["AUDIT_DATABASE_URL"], tmp_path)}
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120, cwd=REPO, env=env)


def test_the_brief_of_a_card_comes_from_its_audit_record_and_the_read_is_logged(
    audit_app, audit_client, audit_store, tmp_path
):
    from conftest import request_fixture
    from support.hooks import call

    card = call(audit_client, request_fixture("seed"))["cards"][0]
    out = audit_run(
        audit_app, tmp_path, "brief", "--card", card["uuid"], "--actor", "office", "--purpose", "peer-to-peer call"
    )
    assert out.returncode == 0, out.stderr
    assert "ALIF (22558) at L5-S1" in text(out.stdout) and "from the evaluation of" in text(out.stdout)
    assert re.findall(r'<li data-criterion="([a-z-]+)"', out.stdout) == [
        "imaging-severity",
        "conservative-care",
        "instability",
    ]
    entry = audit_store.access_entries(1)[0]
    assert entry["command"] == "brief" and entry["actor"].startswith("office for ")
    assert card["uuid"] in entry["detail"] and "peer-to-peer call" in entry["detail"]


def test_the_brief_of_an_unknown_card_exits_1(audit_app, audit_store, tmp_path):
    out = audit_run(audit_app, tmp_path, "brief", "--card", "no-such-card")
    assert out.returncode == 1 and "no card" in out.stderr and out.stdout == ""


def test_brief_without_a_request_or_a_card_says_what_it_needs():
    out = run("brief")
    assert out.returncode == 2 and "--card" in out.stderr
