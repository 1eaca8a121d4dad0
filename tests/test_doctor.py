"""`cds-hooks doctor`: a passing configuration and, one fault at a time, failing ones, against the real
FHIR server, a JWK Set served on 127.0.0.1, real databases and the real CQL engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cds_hooks.config import Config
from cds_hooks.audit.database import create_db_engine, head_revision, upgrade
from cds_hooks.ops.doctor import FAIL, PASS, SKIP, WARN, run_checks
from conftest import REPO
from support.audit_db import KEYS, PSEUDONYM_KEY
from support.fhir_server import free_port
from support.postgres import create_database

CLI = os.path.join(os.path.dirname(sys.executable), "cds-hooks")
BASE = "http://127.0.0.1:8080"

pytestmark = pytest.mark.fhir_server


@pytest.fixture(scope="module")
def migrated_database(postgres_url):
    url = create_database(postgres_url)
    upgrade(create_db_engine(url))
    return url


@pytest.fixture()
def settings(issuer, fhir_server, migrated_database, tmp_path):
    """A configuration that passes every check."""
    return {
        "public_base_url": BASE,
        "allow_http_loopback": True,
        "trusted_issuers": [issuer.issuer_config()],
        "fhir_servers": [fhir_server.base_url],
        "database_url": migrated_database,
        "database_migrate_on_start": False,
        "audit_keys": KEYS,
        "audit_key_id": next(iter(KEYS)),
        "audit_pseudonym_key": PSEUDONYM_KEY,
        "var_dir": tmp_path,
    }


def checks(settings, **options) -> dict[str, tuple[str, str]]:
    result = run_checks(Config(**settings), engine=options.pop("engine", False), **options)
    return {c.name: (c.status, c.detail) for c in result}


def as_env(settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    for key, value in settings.items():
        env[f"CDS_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value, default=str)
    return env


# ------------------------------------------------------------------ the command, end to end


def test_a_good_configuration_passes_every_check_and_exits_0(settings):
    out = subprocess.run([CLI, "doctor"], env=as_env(settings), capture_output=True, text=True, timeout=180, cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    column = lines[0].index("result")
    results = [line[column : column + 6].strip() for line in lines[2 : lines.index("")]]
    assert len(results) >= 7 and set(results) == {"PASS"}, out.stdout
    assert "CQL engine" in out.stdout and "seed fixture -> 1 card(s)" in out.stdout
    assert lines[-1].endswith("all passed")


def test_a_failing_configuration_prints_the_failure_and_exits_1(settings, fhir_server):
    settings["fhir_servers"] = [f"http://127.0.0.1:{free_port()}/fhir"]  # nothing listens there
    out = subprocess.run(
        [CLI, "doctor", "--no-engine"], env=as_env(settings), capture_output=True, text=True, timeout=180, cwd=REPO
    )
    assert out.returncode == 1
    assert "FAIL" in out.stdout and "cannot connect" in out.stdout


def test_the_checks_can_be_printed_as_json(settings):
    out = subprocess.run(
        [CLI, "doctor", "--no-engine", "--json"],
        env=as_env(settings),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )
    assert out.returncode == 0
    assert {c["status"] for c in json.loads(out.stdout)} == {PASS}


def test_invalid_settings_are_a_failed_check_not_a_crash(settings):
    env = as_env(settings)
    env["CDS_SERVER_WORKERS"] = "0"
    out = subprocess.run([CLI, "doctor"], env=env, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 1
    assert "settings" in out.stdout and "server_workers" in out.stdout and "Traceback" not in out.stderr


def test_no_secret_is_printed(settings):
    out = subprocess.run(
        [CLI, "doctor", "--no-engine", "--json"],
        env=as_env(settings),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )
    password = settings["database_url"].split("://", 1)[1].split("@", 1)[0].partition(":")[2]
    for secret in [*KEYS.values(), PSEUDONYM_KEY] + ([password] if password else []):
        assert secret not in out.stdout


# ------------------------------------------------------------------ each check


@pytest.mark.parametrize("cql_engine", ["compiled", "reference"])
def test_the_engine_check_evaluates_the_seed_fixture(settings, cql_engine):
    settings["cql_engine"] = cql_engine
    status, detail = checks(settings, engine=True)["CQL engine"]
    assert status == PASS and "seed fixture -> 1 card(s)" in detail


def test_the_engine_check_names_the_engine_it_ran(settings):
    assert checks(settings, engine=True)["CQL engine"][1].startswith("compiled, in process")


def test_a_library_the_compiled_engine_cannot_compile_fails_the_check(settings, tmp_path):
    import shutil

    packs = tmp_path / "cql"
    shutil.copytree(REPO / "cql", packs)
    elm_file = next((packs / "lumbar-fusion" / "elm").glob("*.json"))
    elm = json.loads(elm_file.read_text(encoding="utf-8"))
    elm["library"]["statements"]["def"].append(
        {"name": "Unsupported", "context": "Patient", "expression": {"type": "Unknown Construct"}}
    )
    elm_file.write_text(json.dumps(elm), encoding="utf-8")
    settings["cql_root"] = str(packs)
    status, detail = checks(settings, engine=True)["CQL engine"]
    assert status == FAIL and "UnsupportedElm" in detail and "Unknown Construct" in detail


def test_a_reference_engine_that_cannot_start_fails(settings):
    settings["cql_engine"] = "reference"
    settings["node_executable"] = "/bin/false"
    status, detail = checks(settings, engine=True)["CQL engine"]
    assert status == FAIL and "EngineError" in detail


def test_the_fhir_server_check_reads_the_capability_statement(settings, fhir_server):
    status, detail = checks(settings)[f"FHIR {fhir_server.base_url}"]
    assert status == PASS and "CapabilityStatement, FHIR 4.0" in detail


def test_a_fhir_base_that_is_not_a_fhir_server_fails(settings, issuer):
    settings["fhir_servers"] = [issuer.server.url + "/not-fhir"]
    status, detail = checks(settings)[f"FHIR {issuer.server.url}/not-fhir"]
    assert status == FAIL and "HTTP 404" in detail


def test_a_fhir_base_named_on_the_command_line_must_be_allowlisted(settings):
    status, detail = checks(settings, fhir_servers=["https://elsewhere.example.org/fhir"])[
        "FHIR https://elsewhere.example.org/fhir"
    ]
    assert status == FAIL and "not allowed" in detail


def test_a_wildcard_entry_is_not_checked_but_said_so(settings, fhir_server):
    settings["fhir_servers"] = ["https://fhir.example.org/tenants/*"]
    assert checks(settings)["FHIR https://fhir.example.org/tenants/*"][0] == SKIP


def test_an_issuer_whose_jwks_is_missing_fails(settings, issuer):
    settings["trusted_issuers"] = [{"iss": issuer.iss, "jwks_url": issuer.server.url + "/missing.json"}]
    status, detail = checks(settings)[f"JWK Set of {issuer.iss}"]
    assert status == FAIL and "HTTP 404" in detail


def test_an_issuer_whose_keys_fit_none_of_its_algorithms_fails(settings, issuer):
    settings["trusted_issuers"] = [{"iss": issuer.iss, "jwks_url": issuer.jwks_url, "algorithms": ["ES512"]}]
    status, detail = checks(settings)[f"JWK Set of {issuer.iss}"]
    assert status == FAIL and "none usable with ES512" in detail


def test_an_issuer_names_its_usable_keys(settings, issuer):
    status, detail = checks(settings)[f"JWK Set of {issuer.iss}"]
    assert status == PASS and "ec-1 (ES384)" in detail and "rsa-1 (RS384)" in detail


def test_every_jku_on_the_allowlist_is_checked_too(settings, issuer):
    result = run_checks(Config(**settings), engine=False)
    checked = [c.detail.rsplit(": ", 1)[0] for c in result if c.name.startswith("JWK Set")]
    assert checked == [issuer.jwks_url, issuer.jku_url]


def test_an_unmigrated_database_fails_when_the_service_would_not_migrate_it(settings, postgres_url):
    settings["database_url"] = create_database(postgres_url)
    status, detail = checks(settings)["audit database"]
    assert status == FAIL and "cds-hooks db upgrade" in detail and f"needs {head_revision()}" in detail


def test_an_unmigrated_database_is_a_warning_when_the_service_migrates_at_start(settings, postgres_url):
    settings["database_url"] = create_database(postgres_url)
    settings["database_migrate_on_start"] = True
    assert checks(settings)["audit database"][0] == WARN


def test_an_unreachable_database_fails(settings):
    settings["database_url"] = f"postgresql+psycopg://nobody:pw@127.0.0.1:{free_port()}/none?connect_timeout=2"
    status, detail = checks(settings)["audit database"]
    assert status == FAIL and "not reachable" in detail and "pw@" not in detail


def test_the_migrated_database_passes_on_sqlite_too(settings, tmp_path):
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    upgrade(create_db_engine(url))
    settings["database_url"] = url
    assert checks(settings)["audit database"][0] == PASS


def test_development_audit_keys_are_a_warning(settings):
    for key in ("audit_keys", "audit_key_id", "audit_pseudonym_key"):
        settings.pop(key)
    assert checks(settings)["audit keys"][0] == WARN


def test_a_public_base_url_over_plain_http_to_another_host_fails(settings):
    settings["public_base_url"] = "http://cds.example.org"
    status, detail = checks(settings)["public base URL"]
    assert status == FAIL and "must be https" in detail


def test_the_public_base_url_check_lists_the_audiences_tokens_need(settings):
    status, detail = checks(settings)["public base URL"]
    assert status == PASS
    assert f"{BASE}/cds-services (discovery)" in detail and f"{BASE}/cds-services/lumbar-fusion (service" in detail


def test_a_registered_url_that_is_not_this_services_fails(settings):
    status, detail = checks(settings, registered_url="https://cds.example.org/cds-services")["public base URL"]
    assert status == FAIL and f"expected {BASE}/cds-services" in detail


def test_a_registered_url_that_is_this_services_discovery_passes(settings):
    assert checks(settings, registered_url=f"{BASE}/cds-services/")["public base URL"][0] == PASS


def test_authentication_on_without_issuers_fails(settings):
    settings["trusted_issuers"] = []
    result = checks(settings)
    assert result["settings"][0] == FAIL and result["trusted issuers"][0] == FAIL
