"""docs/configuration.md documents every setting of `Config` exactly, and secrets come only from the
environment or mounted files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cds_hooks.config import Config, secret_fields
from conftest import REPO

DOC = REPO / "docs" / "configuration.md"


def table_rows(heading: str) -> list[list[str]]:
    """The cells of the first table after `heading` (pipes escaped as \\| stay inside a cell)."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split(heading, 1)[1]
    rows = []
    for line in section.splitlines():
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if set("".join(cells)) <= set("-: "):
            continue
        rows.append(cells)
    return rows[1:]  # without the header


def settings_table() -> dict[str, list[str]]:
    return {row[0].strip("`"): row for row in table_rows("## Every setting")}


def test_every_setting_is_in_the_table():
    missing = set(Config.model_fields) - set(settings_table())
    assert not missing, f"settings missing from docs/configuration.md: {sorted(missing)}"


def test_the_table_names_only_settings_that_exist():
    unknown = set(settings_table()) - set(Config.model_fields)
    assert not unknown, f"docs/configuration.md names settings Config does not have: {sorted(unknown)}"


def test_each_row_names_the_environment_variable_of_its_setting():
    for name, row in settings_table().items():
        assert row[1] == f"`CDS_{name.upper()}`", name


def documented_default(cell: str):
    cell = cell.strip()
    if cell == "none":
        return None
    if cell.startswith("`") and cell.endswith("`"):
        value = cell.strip("`")
        try:
            return json.loads(value)
        except ValueError:
            return value
    return cell  # words: a path relative to the checkout


@pytest.mark.parametrize("name", sorted(Config.model_fields))
def test_the_documented_default_is_the_codes_default(name):
    field = Config.model_fields[name]
    actual = field.default_factory() if field.default_factory else field.default
    documented = documented_default(settings_table()[name][2])
    if isinstance(actual, Path):
        assert documented == f"`{actual.relative_to(REPO)}/` of the checkout"
    elif isinstance(actual, (int, float)) and not isinstance(actual, bool):
        assert float(documented) == actual
    else:
        assert documented == actual


def test_secrets_are_marked_as_secrets_and_listed_with_how_to_mount_them():
    table = settings_table()
    marked = {name for name, row in table.items() if "**Secret.**" in row[4]}
    assert marked == secret_fields(Config)
    listed = {row[0].strip("`") for row in table_rows("## Secrets")}
    assert listed == secret_fields(Config)


def test_every_environment_variable_the_code_reads_is_documented():
    fields = {f"CDS_{name.upper()}" for name in Config.model_fields}
    outside = {row[0].strip("`") for row in table_rows("## Environment outside the settings")}
    used = set()
    for path in (REPO / "cds_hooks").rglob("*"):
        if path.suffix in (".py", ".mjs"):
            used |= set(re.findall(r"\b(CDS_[A-Z0-9_]*[A-Z0-9])\b(?!_?\*)", path.read_text(encoding="utf-8")))
    undocumented = used - fields - outside
    assert not undocumented, f"environment variables read but not in docs/configuration.md: {sorted(undocumented)}"
    assert "PROMETHEUS_MULTIPROC_DIR" in outside


# ------------------------------------------------------------------ where secrets may come from


def load_in_subprocess(env: dict, code: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60, env={**clean, **env}
    )


def test_a_secret_is_read_from_a_file_in_the_secrets_directory(tmp_path):
    (tmp_path / "CDS_DATABASE_URL").write_text("postgresql+psycopg://u:pw@db/fusion")
    (tmp_path / "CDS_AUDIT_KEYS").write_text('{"k1": "a2V5"}')
    out = load_in_subprocess(
        {"CDS_SECRETS_DIR": str(tmp_path)},
        "from cds_hooks.config import Config; c = Config.from_env(); "
        "print(c.database_url.get_secret_value(), c.audit_keys['k1'].get_secret_value())",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["postgresql+psycopg://u:pw@db/fusion", "a2V5"]


def test_the_environment_wins_over_the_secrets_directory(tmp_path):
    (tmp_path / "CDS_DATABASE_URL").write_text("sqlite:///from-file.db")
    out = load_in_subprocess(
        {"CDS_SECRETS_DIR": str(tmp_path), "CDS_DATABASE_URL": "sqlite:///from-env.db"},
        "from cds_hooks.config import Config; print(Config.from_env().database_url.get_secret_value())",
    )
    assert out.stdout.strip() == "sqlite:///from-env.db"


def test_a_settings_file_that_holds_a_secret_is_refused(tmp_path):
    settings = tmp_path / "settings.toml"
    settings.write_text(
        'fhir_servers = ["https://fhir.example.org/R4"]\ndatabase_url = "postgresql+psycopg://u:pw@db/x"\n'
    )
    out = load_in_subprocess(
        {"CDS_CONFIG_FILE": str(settings)}, "from cds_hooks.config import Config; Config.from_env()"
    )
    assert out.returncode != 0
    assert "database_url" in out.stderr and "secrets are read only from" in out.stderr
    assert "pw@db" not in out.stderr


def test_a_settings_file_without_secrets_is_read(tmp_path):
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"fhir_servers": ["https://fhir.example.org/R4"], "shadow_mode": True}))
    out = load_in_subprocess(
        {"CDS_CONFIG_FILE": str(settings)},
        "from cds_hooks.config import Config; c = Config.from_env(); print(c.fhir_servers, c.shadow_mode)",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['https://fhir.example.org/R4'] True"
