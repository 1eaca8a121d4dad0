"""Committed ELM (cql/**/elm/, tests/cql/elm/) and the generated FHIRHelpers.cql must match their sources."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cds_hooks.engine.bridge import find_node

REPO = Path(__file__).resolve().parents[1]


def node_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([find_node(), *args], cwd=REPO, capture_output=True, text=True, timeout=240)


def test_fhirhelpers_cql_is_generated_from_model_info():
    out = node_check("cql/tools/gen-fhirhelpers.mjs", "--check")
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("dirs", [[], ["tests/cql"]], ids=["cql", "tests-cql"])
def test_elm_matches_cql(dirs):
    out = node_check("cql/tools/translate.mjs", "--check", *dirs)
    assert out.returncode == 0, f"stale or untranslatable CQL:\n{out.stderr}"
    assert out.stdout == "", "translate.mjs must keep stdout clean"
