"""Go-live controls: shadow mode (evaluate and audit, answer no cards) and the per-site switch.

The services here record into real audit databases (SQLite, and PostgreSQL where replicas share the
switch); the switch is changed through the `cds-hooks site` command as an operator would.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time

import pytest
from sqlalchemy import select

from cds_hooks.web.app import create_app
from cds_hooks.audit.schema import audit_call, audit_card
from cds_hooks.config import Config
from cds_hooks.audit.go_live import EXTENSION, LIVE, OFF, SHADOW, decide_mode
from cds_hooks.web.recording import recorder_of
from conftest import REPO, request_fixture
from support.audit_db import audit_env, audit_settings
from support.hooks import SERVICE, statuses
from support.servers import Recorder
from test_cli import SEED_STATUSES

CLI = os.path.join(os.path.dirname(sys.executable), "cds-hooks")
BASE = "https://cds.example.org"


def make_app(engine, url, var_dir, **settings):
    app = create_app(Config.development(**audit_settings(url, var_dir), **settings), engine=engine)
    app.testing = True
    return app


def calls(app) -> list[dict]:
    with recorder_of(app).store.reading() as conn:
        return [dict(r) for r in conn.execute(select(audit_call).order_by(audit_call.c.received_at)).mappings()]


def site_command(url, var_dir, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, **audit_env(url, var_dir)}
    return subprocess.run([CLI, "site", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)


@pytest.fixture()
def sqlite_url(new_database_url):
    return new_database_url("sqlite")


# ------------------------------------------------------------------ shadow mode


def test_shadow_mode_answers_no_cards(engine, sqlite_url, tmp_path):
    app = make_app(engine, sqlite_url, tmp_path, shadow_mode=True)
    r = app.test_client().post(SERVICE, json=request_fixture("seed"))
    assert r.status_code == 200
    assert r.get_json() == {"cards": []}


def test_shadow_mode_records_what_would_have_been_shown(engine, sqlite_url, tmp_path):
    app = make_app(engine, sqlite_url, tmp_path, shadow_mode=True)
    app.test_client().post(SERVICE, json=request_fixture("seed"))
    [row] = calls(app)
    assert (row["mode"], row["status"], row["card_count"]) == (SHADOW, 200, 0)
    store = recorder_of(app).store
    [document] = store.show(row["id"], "test", "shadow review")
    assert document["response"] == {"cards": []}
    [card] = document["shadowResponse"]["cards"]
    assert statuses(card) == SEED_STATUSES
    with store.reading() as conn:
        assert conn.scalar(select(audit_card.c.uuid).where(audit_card.c.call_id == row["id"])) == card["uuid"]


def test_shadow_cards_are_reported_apart_from_live_ones(engine, sqlite_url, tmp_path):
    from cds_hooks.audit.usage_report import build_report

    live = make_app(engine, sqlite_url, tmp_path)
    live.test_client().post(SERVICE, json=request_fixture("seed"))
    shadow = make_app(engine, sqlite_url, tmp_path, shadow_mode=True)
    shadow.test_client().post(SERVICE, json=request_fixture("seed"))
    shadow.test_client().post(SERVICE, json=request_fixture("meets-all"))
    store = recorder_of(live).store

    def total(mode):
        volume = next(t for t in build_report(store, None, None, None, "test", mode).tables if t.name == "volume")
        return volume.rows[-1][2:]  # calls, 200, 4xx, 5xx, cards

    assert total(LIVE) == [1, 1, 0, 0, 1]
    assert total(SHADOW) == [2, 2, 0, 0, 0]  # answered without cards
    criteria = next(t for t in build_report(store, None, None, None, "test", SHADOW).tables if t.name == "criteria")
    assert criteria.rows  # what the cards would have said is reported


def test_shadow_calls_are_counted_by_mode_in_the_metrics(engine, sqlite_url, tmp_path):
    app = make_app(engine, sqlite_url, tmp_path, shadow_mode=True)
    client = app.test_client()
    client.post(SERVICE, json=request_fixture("seed"))
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'cds_calls_by_mode_total{mode="shadow",service="lumbar-fusion"} 1.0' in metrics
    assert 'cds_cards_total{indicator="warning"' not in metrics  # nothing was shown


# ------------------------------------------------------------------ the per-site switch (sites by fhirServer)


def no_prefetch_request(fhir_server: str) -> dict:
    body = copy.deepcopy(request_fixture("seed", prefetch=False))
    body["fhirServer"] = fhir_server
    return body


def test_a_site_switched_off_gets_no_cards_and_no_data_is_read(engine, sqlite_url, tmp_path):
    with Recorder() as ehr:
        app = make_app(engine, sqlite_url, tmp_path, site_by="fhir_server")
        out = site_command(sqlite_url, tmp_path, "disable", ehr.url + "/fhir", "--reason", "go-live rollback")
        assert out.returncode == 0, out.stderr
        r = app.test_client().post(SERVICE, json=no_prefetch_request(ehr.url + "/fhir/"))
        assert r.status_code == 200 and r.get_json() == {"cards": []}
        assert ehr.seen() == []  # not one FHIR request
    [row] = calls(app)
    assert (row["mode"], row["site"], row["card_count"]) == (OFF, ehr.url + "/fhir", 0)


def test_other_sites_stay_live_when_one_is_switched_off(engine, sqlite_url, tmp_path):
    app = make_app(engine, sqlite_url, tmp_path, site_by="fhir_server")
    assert site_command(sqlite_url, tmp_path, "disable", "https://other-ehr.example.org/fhir").returncode == 0
    r = app.test_client().post(SERVICE, json=request_fixture("seed"))
    assert statuses(r.get_json()["cards"][0]) == SEED_STATUSES


def test_a_site_can_be_put_in_shadow_mode_alone(engine, sqlite_url, tmp_path):
    app = make_app(engine, sqlite_url, tmp_path, site_by="fhir_server")
    site = request_fixture("seed")["fhirServer"].rstrip("/")
    assert site_command(sqlite_url, tmp_path, "shadow", site).returncode == 0
    r = app.test_client().post(SERVICE, json=request_fixture("seed"))
    assert r.get_json() == {"cards": []}
    assert calls(app)[0]["mode"] == SHADOW


def test_enabling_a_site_takes_it_live_while_the_deployment_stays_in_shadow_mode(engine, sqlite_url, tmp_path):
    app = make_app(engine, sqlite_url, tmp_path, site_by="fhir_server", shadow_mode=True)
    site = request_fixture("seed")["fhirServer"].rstrip("/")
    assert site_command(sqlite_url, tmp_path, "enable", site).returncode == 0
    r = app.test_client().post(SERVICE, json=request_fixture("seed"))
    assert statuses(r.get_json()["cards"][0]) == SEED_STATUSES


def test_disabling_every_site_overrides_each_sites_own_switch(engine, sqlite_url, tmp_path):
    app = make_app(engine, sqlite_url, tmp_path, site_by="fhir_server")
    site = request_fixture("seed")["fhirServer"].rstrip("/")
    assert site_command(sqlite_url, tmp_path, "enable", site).returncode == 0
    assert site_command(sqlite_url, tmp_path, "disable", "*").returncode == 0
    assert app.test_client().post(SERVICE, json=request_fixture("seed")).get_json() == {"cards": []}


def test_clearing_a_site_returns_it_to_the_default(engine, sqlite_url, tmp_path):
    app = make_app(engine, sqlite_url, tmp_path, site_by="fhir_server")
    site = request_fixture("seed")["fhirServer"].rstrip("/")
    assert site_command(sqlite_url, tmp_path, "disable", site).returncode == 0
    assert site_command(sqlite_url, tmp_path, "clear", site).returncode == 0
    assert app.test_client().post(SERVICE, json=request_fixture("seed")).get_json()["cards"]


def test_the_site_command_lists_switches_and_logs_each_change(engine, sqlite_url, tmp_path):
    make_app(engine, sqlite_url, tmp_path)  # migrates the database
    site_command(sqlite_url, tmp_path, "disable", "hospital-a", "--reason", "downtime", "--actor", "it-oncall")
    out = site_command(sqlite_url, tmp_path, "list")
    assert out.returncode == 0
    assert "sites are named by: tenant; without a row of their own: live" in out.stdout
    line = next(l for l in out.stdout.splitlines() if l.startswith("hospital-a\t"))
    assert line.split("\t")[1] == OFF and line.split("\t")[3:] == ["it-oncall", "downtime"]
    log = subprocess.run(
        [CLI, "audit", "access-log"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env={**os.environ, **audit_env(sqlite_url, tmp_path)},
    )
    assert "site disable" in log.stdout and "hospital-a" in log.stdout


def test_the_site_command_refuses_a_mode_change_without_a_site(sqlite_url, tmp_path):
    out = site_command(sqlite_url, tmp_path, "disable")
    assert out.returncode == 2 and "name a site" in out.stderr


def test_every_replica_sees_a_switch_within_the_cache_time(engine, new_database_url, tmp_path):
    """Two services on one PostgreSQL database, as two replicas; the switch is set by the command."""
    url = new_database_url("postgresql")
    replicas = [make_app(engine, url, tmp_path, site_by="fhir_server", site_switch_cache_seconds=1.0) for _ in range(2)]
    for app in replicas:  # both have read the (empty) switch table and cached it
        assert app.test_client().post(SERVICE, json=request_fixture("seed")).get_json()["cards"]
    site = request_fixture("seed")["fhirServer"].rstrip("/")
    assert site_command(url, tmp_path, "disable", site).returncode == 0
    switched_at = time.monotonic()
    for app in replicas:
        while app.test_client().post(SERVICE, json=request_fixture("seed")).get_json() != {"cards": []}:
            assert time.monotonic() - switched_at < 1.0 + 2.0, "the switch did not reach a replica in time"
            time.sleep(0.05)


# ------------------------------------------------------------------ sites by the caller JWT's tenant


def test_a_tenant_switched_off_gets_no_cards_while_another_tenant_gets_its_card(engine, issuer, sqlite_url, tmp_path):
    settings = {
        **audit_settings(sqlite_url, tmp_path),
        "public_base_url": BASE,
        "allow_http_loopback": True,
        "trusted_issuers": [issuer.issuer_config()],
    }
    app = create_app(Config(**settings), engine=engine)
    assert site_command(sqlite_url, tmp_path, "disable", "hospital-a").returncode == 0

    def call(tenant):
        token = issuer.token(BASE + SERVICE, tenant=tenant)
        return (
            app.test_client()
            .post(SERVICE, json=request_fixture("seed"), headers={"Authorization": f"Bearer {token}"})
            .get_json()
        )

    assert call("hospital-a") == {"cards": []}
    assert statuses(call("hospital-b")["cards"][0]) == SEED_STATUSES
    assert [(c["site"], c["mode"]) for c in calls(app)] == [("hospital-a", OFF), ("hospital-b", LIVE)]


def test_a_token_without_a_tenant_names_its_issuer_as_the_site(engine, issuer, sqlite_url, tmp_path):
    settings = {
        **audit_settings(sqlite_url, tmp_path),
        "public_base_url": BASE,
        "allow_http_loopback": True,
        "trusted_issuers": [issuer.issuer_config()],
    }
    app = create_app(Config(**settings), engine=engine)
    assert site_command(sqlite_url, tmp_path, "shadow", issuer.iss).returncode == 0
    token = issuer.token(BASE + SERVICE)
    r = app.test_client().post(SERVICE, json=request_fixture("seed"), headers={"Authorization": f"Bearer {token}"})
    assert r.get_json() == {"cards": []}
    assert calls(app)[0]["site"] == issuer.iss


# ------------------------------------------------------------------ the precedence, case by case


@pytest.mark.parametrize(
    "modes, site, default, expected",
    [
        ({}, "a", LIVE, LIVE),
        ({}, "a", SHADOW, SHADOW),
        ({"a": OFF}, "a", LIVE, OFF),
        ({"a": LIVE}, "a", SHADOW, LIVE),
        ({"*": SHADOW}, "a", LIVE, SHADOW),
        ({"*": SHADOW, "a": LIVE}, "a", LIVE, LIVE),
        ({"*": OFF, "a": LIVE}, "a", LIVE, OFF),
        ({"a": OFF}, None, LIVE, LIVE),
        ({"*": OFF}, None, LIVE, OFF),
    ],
)
def test_the_mode_of_a_call_follows_the_documented_precedence(modes, site, default, expected):
    assert decide_mode(modes, site, default) == expected


def test_without_an_audit_database_only_the_shadow_setting_applies(engine, tmp_path):
    app = create_app(Config.development(var_dir=tmp_path, audit_enabled=False, shadow_mode=True), engine=engine)
    assert app.extensions[EXTENSION].switch is None
    assert app.test_client().post(SERVICE, json=request_fixture("seed")).get_json() == {"cards": []}
