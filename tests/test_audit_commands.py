"""`cds-hooks report`, `audit show|export|purge|rekey|access-log` as an operator runs them, against the
audit trail the service wrote. Runs on SQLite and PostgreSQL."""

import base64
import csv
import io
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import update

from cds_hooks.audit.schema import audit_call, audit_card, audit_criterion, audit_suggestion, feedback
from cds_hooks.audit.sealing import new_key
from conftest import REPO, request_fixture
from support.audit_db import KEYS, audit_env, rows
from support.hooks import call

CLI = str(os.path.join(os.path.dirname(sys.executable), "cds-hooks"))
WHEN = "2026-09-10T14:03:00Z"


@pytest.fixture()
def env(audit_app, audit_store, tmp_path):
    return {**os.environ, **audit_env(audit_app.config["AUDIT_DATABASE_URL"], tmp_path)}


def cli(env, *args, ok=True):
    out = subprocess.run([CLI, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    if ok:
        assert out.returncode == 0, out.stderr
    return out


@pytest.fixture()
def cards(audit_client):
    made = []
    for i in range(2):
        request = request_fixture("seed")
        request["hookInstance"] = f"cli-{i}"
        made.append(call(audit_client, request)["cards"][0])
    entries = [
        {
            "card": c["uuid"],
            "outcome": "overridden",
            "outcomeTimestamp": WHEN,
            "overrideReason": {"reason": {"code": "urgent-indication"}, "userComment": "soon"},
        }
        for c in made
    ]
    assert audit_client.post("/cds-services/lumbar-fusion/feedback", json={"feedback": entries}).status_code == 200
    return made


def test_report_prints_csv_for_the_period(env, cards):
    out = cli(env, "report", "--days", "7", "--format", "csv", "--actor", "analyst")
    lines = {(r["section"], r["key"], r["measure"]): r["value"] for r in csv.DictReader(io.StringIO(out.stdout))}
    assert lines[("overrides", "urgent-indication", "overrides")] == "2"
    assert lines[("volume", "all / all", "calls")] == "2"


def test_report_prints_terminal_tables_by_default(env, cards):
    out = cli(env, "report")
    assert "Overrides by reason" in out.stdout and "urgent-indication" in out.stdout


def test_show_response_prints_exactly_the_response_the_user_saw(env, audit_client):
    request = request_fixture("seed")
    body = call(audit_client, request)
    out = cli(env, "audit", "show", body["cards"][0]["uuid"], "--response", "--purpose", "payer dispute")
    assert json.loads(out.stdout) == body


def test_show_prints_the_decrypted_record_with_its_feedback(env, cards):
    out = cli(env, "audit", "show", "cli-1")
    document = json.loads(out.stdout)
    assert document["call"]["hook_instance"] == "cli-1"
    assert document["feedback"][0]["entry"]["overrideReason"]["userComment"] == "soon"


def test_show_of_something_unknown_exits_1(env, cards):
    out = cli(env, "audit", "show", "no-such-thing", ok=False)
    assert out.returncode == 1 and "no call" in out.stderr


def test_export_writes_one_json_line_per_call_and_logs_the_read(env, cards, tmp_path, audit_store):
    target = tmp_path / "export.jsonl"
    cli(env, "audit", "export", "--days", "1", "--output", str(target), "--actor", "records-office")
    documents = [json.loads(line) for line in target.read_text().splitlines()]
    assert sorted(d["call"]["hook_instance"] for d in documents) == ["cli-0", "cli-1"]
    assert all(d["response"]["cards"] for d in documents)
    entry = audit_store.access_entries(1)[0]
    assert (entry["actor"], entry["command"], entry["records"]) == ("records-office", "export", 2)


def test_purge_deletes_what_is_older_than_the_retention_period_and_keeps_the_rest(env, cards, audit_store):
    engine = audit_store.engine
    old_time = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(days=400)
    with engine.begin() as conn:
        conn.execute(update(audit_call).where(audit_call.c.hook_instance == "cli-0").values(received_at=old_time))
        conn.execute(update(feedback).where(feedback.c.card_uuid == cards[0]["uuid"]).values(received_at=old_time))
    before = {t.name: len(rows(engine, t)) for t in (audit_call, audit_card, audit_suggestion, audit_criterion)}

    dry = cli({**env, "CDS_AUDIT_RETENTION_DAYS": "365"}, "audit", "purge", "--dry-run")
    assert "would delete" in dry.stdout and "1 calls" in dry.stdout
    assert len(rows(engine, audit_call)) == before["audit_call"]

    out = cli({**env, "CDS_AUDIT_RETENTION_DAYS": "365"}, "audit", "purge")
    assert "deleted" in out.stdout and "1 calls" in out.stdout and "1 cards" in out.stdout
    assert [r["hook_instance"] for r in rows(engine, audit_call)] == ["cli-1"]
    assert {c["uuid"] for c in rows(engine, audit_card)} == {cards[1]["uuid"]}
    assert len(rows(engine, audit_criterion)) == before["audit_criterion"] // 2
    assert len(rows(engine, audit_suggestion)) == before["audit_suggestion"] // 2
    assert [f["card_uuid"] for f in rows(engine, feedback)] == [cards[1]["uuid"]]
    assert audit_store.access_entries(1)[0]["command"] == "purge"


def test_rekey_moves_every_row_to_the_new_key_so_the_old_one_can_go(env, cards, audit_store):
    new = new_key()
    rotated = {**env, "CDS_AUDIT_KEYS": json.dumps({**KEYS, "test-k2": new}), "CDS_AUDIT_KEY_ID": "test-k2"}
    out = cli(rotated, "audit", "rekey")
    assert "re-encrypted 2 calls and 2 feedback entries" in out.stdout
    assert {r["key_id"] for r in rows(audit_store.engine, audit_call)} == {"test-k2"}
    only_new = {**env, "CDS_AUDIT_KEYS": json.dumps({"test-k2": new}), "CDS_AUDIT_KEY_ID": "test-k2"}
    document = json.loads(cli(only_new, "audit", "show", "cli-0").stdout)
    assert document["response"]["cards"][0]["uuid"] == cards[0]["uuid"]


def test_access_log_lists_who_read_what(env, cards):
    cli(env, "audit", "show", "cli-0", "--actor", "dr-review", "--purpose", "appeal")
    out = cli(env, "audit", "access-log")
    assert "dr-review" in out.stdout and "appeal" in out.stdout and "show" in out.stdout


def test_new_key_prints_32_random_bytes_in_base64(env):
    first, second = cli(env, "audit", "new-key").stdout.strip(), cli(env, "audit", "new-key").stdout.strip()
    assert len(base64.b64decode(first)) == 32 and first != second


def test_evaluate_is_an_offline_look_and_records_nothing(tmp_path):
    env = {**os.environ, "CDS_VAR_DIR": str(tmp_path)}
    out = subprocess.run(
        [CLI, "evaluate", str(REPO / "fhir_fixtures" / "requests" / "seed-prefetch.json")],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "audit.db").exists()
