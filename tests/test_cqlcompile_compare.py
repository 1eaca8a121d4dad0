"""The judge: every define, reference engine (cql-execution as published) vs the compiled evaluator.

Fixtures (every *-prefetch.json request and the long-history patient) and the adversarial corpus
(fhir_fixtures/corpus/lumbar-fusion/requests), each with parameter variants, always;
generated patients (hypothesis, batches of 50 through two reference workers) under the `cqlcompare` mark:
CQLCOMPARE_PATIENTS sets how many (default 2000, about a minute on 2 cores).
"""
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.support.cql_judge import Judge, all_fixture_case_variants, corpus_cases, load_pack_files
from tests.support.cql_patients import HypothesisDraw, patient_case

BATCH = 50


@pytest.fixture(scope="module")
def judge():
    elm, inc, vs = load_pack_files()
    j = Judge(elm, inc, vs, workers=2)
    yield j
    j.close()


def _fail(report):
    lines = [f"{c} {n}\n  reference: {json.dumps(a)[:600]}\n  compiled:  {json.dumps(b)[:600]}"
             for c, n, a, b in report.disagreements[:5]]
    return report.summary() + "\n" + "\n".join(lines)


def test_fixtures_agree(judge):
    report = judge.compare(all_fixture_case_variants())
    assert report.cases >= 30 and report.defines > 1000
    assert not report.disagreements, _fail(report)


def test_the_adversarial_corpus_agrees(judge):
    cases = corpus_cases()
    assert len(cases) >= 50  # every request of fhir_fixtures/corpus/lumbar-fusion/ that orders a fusion
    report = judge.compare(all_fixture_case_variants(cases))
    assert report.errors_both == 0 and report.defines > 50 * 5 * 30, report.summary()
    assert not report.disagreements, _fail(report)


PATIENTS = int(os.environ.get("CQLCOMPARE_PATIENTS", "2000"))


@pytest.mark.cqlcompare
@settings(max_examples=max(1, PATIENTS // BATCH), deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(st.data())
def test_generated_patients_agree(judge, data):
    d = HypothesisDraw(data)
    cases = [patient_case(d, n) for n in range(BATCH)]
    report = judge.compare(cases)
    assert not report.disagreements, _fail(report)
