"""The fixture scripts (scripts/fixtures/): the committed requests are what make_requests.py writes now,
and validate.py accepts every fixture."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REQUESTS = REPO / "fhir_fixtures" / "requests"


def test_the_committed_requests_are_fresh(tmp_path):
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "fixtures" / "make_requests.py"), str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    fresh = {p.name: p.read_bytes() for p in tmp_path.glob("*.json")}
    committed = {p.name: p.read_bytes() for p in REQUESTS.glob("*.json")}
    assert fresh, "make_requests.py wrote nothing"
    assert sorted(fresh) == sorted(committed), "regenerate: python3 scripts/fixtures/make_requests.py"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale requests {stale}: regenerate with python3 scripts/fixtures/make_requests.py"


def test_the_fixtures_validate():
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "fixtures" / "validate.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_the_committed_corpus_is_what_make_corpus_writes():
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "fixtures" / "make_corpus.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, "regenerate: python3 scripts/fixtures/make_corpus.py\n" + result.stdout[-2000:]


def test_the_corpus_validates():
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "fixtures" / "validate_corpus.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
