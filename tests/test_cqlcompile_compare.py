"""The judge: every define, reference engine (cql-execution as published) vs the compiled evaluator.

For every rule pack's library: its fixtures (every *-prefetch.json request whose orders the pack claims,
and the long-history patient for the lumbar pack) and its adversarial corpus
(fhir_fixtures/corpus/<pack>/requests), each with parameter variants, always; for the lumbar library,
generated patients (hypothesis, batches of 50 through two reference workers) under the `cqlcompare` mark:
CQLCOMPARE_PATIENTS sets how many (default 2000, about a minute on 2 cores).
"""

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.support.cql_judge import REPO, Judge, all_fixture_case_variants, corpus_cases, load_pack_files
from tests.support.cql_patients import HypothesisDraw, patient_case

BATCH = 50


PACKS = sorted(p.parent.name for p in (REPO / "cql").glob("*/pack.json"))


@pytest.fixture(scope="module")
def judge():
    elm, inc, vs = load_pack_files()
    j = Judge(elm, inc, vs, workers=2)
    yield j
    j.close()


@pytest.fixture(scope="module", params=PACKS)
def pack_judge(request):
    elm, inc, vs = load_pack_files(request.param)
    j = Judge(elm, inc, vs, workers=2)
    yield request.param, j
    j.close()


def _fail(report):
    lines = [
        f"{c} {n}\n  reference: {json.dumps(a)[:600]}\n  compiled:  {json.dumps(b)[:600]}"
        for c, n, a, b in report.disagreements[:5]
    ]
    return report.summary() + "\n" + "\n".join(lines)


def test_fixtures_agree(pack_judge):
    pack, judge = pack_judge
    report = judge.compare(all_fixture_case_variants(pack=pack))
    assert report.cases >= 25 and report.defines > 1000, report.summary()
    assert not report.disagreements, _fail(report)


def test_the_adversarial_corpus_agrees(pack_judge):
    pack, judge = pack_judge
    cases = corpus_cases(pack)
    assert len(cases) >= 50  # every request of fhir_fixtures/corpus/<pack>/ that orders the pack's procedure
    report = judge.compare(all_fixture_case_variants(cases, pack))
    assert report.errors_both == 0 and report.defines > 50 * 5 * 30, report.summary()
    assert not report.disagreements, _fail(report)


PATIENTS = int(os.environ.get("CQLCOMPARE_PATIENTS", "2000"))


@pytest.mark.cqlcompare
@settings(
    max_examples=max(1, PATIENTS // BATCH), deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
@given(st.data())
def test_generated_patients_agree(judge, data):
    d = HypothesisDraw(data)
    cases = [patient_case(d, n) for n in range(BATCH)]
    report = judge.compare(cases)
    assert not report.disagreements, _fail(report)


def test_the_documentation_library_agrees():
    """The pack's DTR pre-population library (cql/lumbar-fusion/dtr/), which includes the criteria library
    and passes its parameters on to it, on every fixture and 200 generated patients."""
    from conftest import REPO
    from tests.support.cql_judge import Case, fixture_cases
    from tests.support.cql_patients import generate_cases

    criteria, includes, valuesets = load_pack_files()
    (dtr_file,) = sorted((REPO / "cql" / "lumbar-fusion" / "dtr" / "elm").glob("*.json"))
    dtr = json.loads(dtr_file.read_text(encoding="utf-8"))
    names = {p["name"] for p in dtr["library"]["parameters"]["def"]}
    cases = [
        Case(c.name, c.resources, {k: v for k, v in c.parameters.items() if k in names}, c.patient_id)
        for c in fixture_cases() + generate_cases(200, seed=9)
    ]
    judge = Judge(dtr, [criteria, *includes], valuesets, workers=2)
    try:
        report = judge.compare(cases)
    finally:
        judge.close()
    assert report.defines > 200 * 10 and not report.disagreements, _fail(report)
