"""The fixture scripts (scripts/fixtures/): the committed requests are what make_requests.py writes now,
validate.py accepts every fixture, and each pack's corpus is what its generator writes and validates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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


# Each pack's adversarial corpus (fhir_fixtures/corpus/<pack>/) and the commands that regenerate it and
# check that the committed files are what it writes, and that validate it.
CORPUS_SCRIPTS = {
    "lumbar-fusion": {"check": ["make_corpus.py", "--check"], "validate": ["validate_corpus.py"]},
    "cervical-fusion": {
        "check": ["make_cervical_corpus.py", "--check"],
        "validate": ["make_cervical_corpus.py", "--validate"],
    },
}


def _run_script(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "fixtures" / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_pack_corpus_has_its_scripts():
    corpora = sorted(p.name for p in (REPO / "fhir_fixtures" / "corpus").iterdir() if p.is_dir())
    assert corpora == sorted(CORPUS_SCRIPTS)


@pytest.mark.parametrize("pack", sorted(CORPUS_SCRIPTS))
def test_the_committed_corpus_is_what_its_generator_writes(pack):
    args = CORPUS_SCRIPTS[pack]["check"]
    result = _run_script(args)
    assert result.returncode == 0, (
        f"regenerate: python3 scripts/fixtures/{args[0]}\n" + result.stdout[-2000:] + result.stderr[-2000:]
    )


@pytest.mark.parametrize("pack", sorted(CORPUS_SCRIPTS))
def test_the_corpus_validates(pack):
    result = _run_script(CORPUS_SCRIPTS[pack]["validate"])
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
