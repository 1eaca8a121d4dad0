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
    assert out.returncode == 1 and "no order the service checks" in out.stderr and out.stdout == ""


def test_a_request_the_service_cannot_use_is_reported(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hook": "order-sign", "context": {}}))
    out = run("brief", str(bad))
    assert out.returncode == 1 and "cannot evaluate" in out.stderr and "Traceback" not in out.stderr


def test_an_unreadable_file_is_reported():
    out = run("brief", "/no/such/file.json")
    assert out.returncode == 2 and "cannot read" in out.stderr
