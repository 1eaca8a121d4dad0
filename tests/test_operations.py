"""Operations endpoints: /healthz, /readyz and /metrics (Prometheus text format)."""

import os
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cds_hooks.web.app import create_app
from cds_hooks.config import Config
from cds_hooks.engine.bridge import CqlEngine
from cds_hooks.engine.compiled import CompiledEngine
from conftest import REPO
from support.fhir_server import free_port
from support.hooks import SERVICE, call

FEEDBACK = "/cds-services/lumbar-fusion/feedback"


def samples(client) -> dict:
    """{(sample name, frozenset(labels)): value} from /metrics."""
    r = client.get("/metrics")
    assert r.status_code == 200 and r.content_type.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.get_data(as_text=True)):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(metrics: dict, name: str, **labels) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


def growth(before: dict, after: dict):
    """grew(name, **labels): how much one sample grew between two scrapes."""
    return lambda name, **labels: value(after, name, **labels) - value(before, name, **labels)


def test_healthz_says_the_process_is_alive(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.get_json() == {"status": "alive"}


def test_readyz_is_200_when_the_engine_and_the_database_answer(audit_client):
    r = audit_client.get("/readyz")
    assert r.status_code == 200
    assert r.get_json() == {"status": "ready", "checks": {"engine": "ok", "database": "ok"}}


def test_readyz_is_503_when_the_database_is_unreachable(engine, tmp_path):
    dead = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/audit?connect_timeout=2"
    app = create_app(
        Config.development(var_dir=tmp_path, database_url=dead, database_migrate_on_start=False), engine=engine
    )
    r = app.test_client().get("/readyz")
    assert r.status_code == 503
    assert r.get_json()["checks"] == {"engine": "ok", "database": "failing"}


@pytest.mark.parametrize("engine_class", [CompiledEngine, CqlEngine])
def test_readyz_is_503_when_the_cql_engine_does_not_answer(tmp_path, engine_class):
    closed = engine_class()
    closed.close()
    app = create_app(Config.development(var_dir=tmp_path), engine=closed)
    r = app.test_client().get("/readyz")
    assert r.status_code == 503 and r.get_json()["checks"]["engine"] == "failing"


def test_a_call_is_counted_in_the_request_and_stage_histograms(audit_client, seed_request):
    before = samples(audit_client)
    call(audit_client, seed_request)
    grew = growth(before, samples(audit_client))

    assert grew("cds_hook_request_duration_seconds_count", service="lumbar-fusion", status="200") == 1
    for stage in ("orders", "fetch", "engine", "cards", "audit"):
        assert grew("cds_hook_stage_duration_seconds_count", service="lumbar-fusion", stage=stage) == 1, stage
    assert grew("cds_hook_stage_duration_seconds_sum", service="lumbar-fusion", stage="engine") > 0


def test_cards_are_counted_by_indicator_and_criteria_by_status(audit_client, seed_request):
    before = samples(audit_client)
    call(audit_client, seed_request)
    grew = growth(before, samples(audit_client))

    assert grew("cds_cards_total", service="lumbar-fusion", indicator="warning") == 1
    assert (
        grew("cds_criteria_outcomes_total", service="lumbar-fusion", criterion="imaging-severity", status="not-met")
        == 1
    )
    assert grew("cds_criteria_outcomes_total", service="lumbar-fusion", criterion="injection-trial", status="met") == 1


def test_failed_data_sources_are_counted_as_fhir_errors_by_resource_type(audit_client, seed_request):
    seed_request["prefetch"]["procedures"] = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "timeout"}],
    }
    before = samples(audit_client)
    call(audit_client, seed_request)
    grew = growth(before, samples(audit_client))
    assert grew("cds_fhir_errors_total", service="lumbar-fusion", resource_type="Procedure") == 1


def test_rejected_calls_are_counted_with_their_status(audit_client, seed_request):
    seed_request.pop("hookInstance")
    before = samples(audit_client)
    assert audit_client.post(SERVICE, json=seed_request).status_code == 400
    audit_client.post("/cds-services/nope", json=seed_request)
    grew = growth(before, samples(audit_client))
    assert grew("cds_hook_request_duration_seconds_count", service="lumbar-fusion", status="400") == 1
    # Unknown service ids share one label value: a caller cannot create new time series.
    assert grew("cds_hook_request_duration_seconds_count", service="unknown", status="404") == 1


def test_feedback_is_counted_by_outcome_and_known_reason(audit_client, seed_request):
    card = call(audit_client, seed_request)["cards"][0]
    before = samples(audit_client)
    entries = [
        {
            "card": card["uuid"],
            "outcome": "overridden",
            "outcomeTimestamp": "2026-09-10T10:00:00Z",
            "overrideReason": {"reason": {"code": "payer-approved"}},
        },
        {
            "card": card["uuid"],
            "outcome": "overridden",
            "outcomeTimestamp": "2026-09-10T10:01:00Z",
            "overrideReason": {"reason": {"code": "made-up-by-the-client"}},
        },
        {
            "card": card["uuid"],
            "outcome": "accepted",
            "outcomeTimestamp": "2026-09-10T10:02:00Z",
            "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
        },
    ]
    assert audit_client.post(FEEDBACK, json={"feedback": entries}).status_code == 200
    grew = growth(before, samples(audit_client))
    for outcome, reason in (("overridden", "payer-approved"), ("overridden", "other"), ("accepted", "none")):
        assert grew("cds_feedback_total", service="lumbar-fusion", outcome=outcome, reason=reason) == 1


MULTIPROCESS_WORKER = """
import json, sys
from cds_hooks.web.app import create_app
from cds_hooks.config import Config
app = create_app(Config.development(var_dir=sys.argv[1]))
body = json.load(open(sys.argv[2]))
order = body["context"]["draftOrders"]["entry"][0]["resource"]
order["code"] = {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "72148"}]}  # not a fusion
assert app.test_client().post("/cds-services/lumbar-fusion", json=body).status_code == 200
if len(sys.argv) > 3:
    sys.stdout.write(app.test_client().get("/metrics").get_data(as_text=True))
app.extensions["cds_hooks"].engine.close()
"""


def test_with_a_multiprocess_folder_metrics_add_up_every_process(tmp_path):
    """gunicorn workers: PROMETHEUS_MULTIPROC_DIR makes /metrics report the sum over processes."""
    folder = tmp_path / "prometheus"
    folder.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    request_file = REPO / "fhir_fixtures" / "requests" / "seed-prefetch.json"
    for _ in range(2):
        subprocess.run(
            [sys.executable, "-c", MULTIPROCESS_WORKER, str(tmp_path / "var"), str(request_file)],
            env=env,
            cwd=REPO,
            check=True,
            capture_output=True,
            timeout=120,
        )
    out = subprocess.run(
        [sys.executable, "-c", MULTIPROCESS_WORKER, str(tmp_path / "var"), str(request_file), "metrics"],
        env=env,
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    counts = [
        s.value
        for f in text_string_to_metric_families(out.stdout)
        for s in f.samples
        if s.name == "cds_hook_request_duration_seconds_count" and s.labels.get("status") == "200"
    ]
    assert counts == [3.0]


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_operations_endpoints_answer_on_the_embedded_defaults(path, client):
    assert client.get(path).status_code == 200
