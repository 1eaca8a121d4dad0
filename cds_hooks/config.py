"""Service settings: one object, explicit, passed to the application factory.

Sources, highest priority first: keyword arguments; `CDS_*` environment variables (JSON for maps
and lists); files in the secrets directory (`CDS_SECRETS_DIR`, default `/run/secrets`, one file per
setting named like the variable, for mounted Kubernetes/Docker secrets); an optional settings file
(`CDS_CONFIG_FILE`, JSON or TOML); the defaults below. Every field is documented in
docs/configuration.md, and a test keeps that table complete.
"""
from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


def _secrets_dir() -> str | None:
    """Mounted secrets (one file per setting), read when the folder exists at import time."""
    folder = os.environ.get("CDS_SECRETS_DIR", "/run/secrets")
    return folder if Path(folder).is_dir() else None


class _FileSource(PydanticBaseSettingsSource):
    """Settings from the file named by CDS_CONFIG_FILE (JSON or TOML); keys are field names."""

    def __init__(self, settings_cls):
        super().__init__(settings_cls)
        path = os.environ.get("CDS_CONFIG_FILE")
        self._data: dict[str, Any] = {}
        if path:
            text = Path(path).read_text(encoding="utf-8")
            self._data = tomllib.loads(text) if path.endswith(".toml") else json.loads(text)

    def get_field_value(self, field, field_name):  # required by the base class; unused
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


class Config(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CDS_",
        secrets_dir=_secrets_dir(),
        extra="forbid",
        validate_assignment=True,
    )

    # Rule packs: the folder holding them (folders with a pack.json) and which to serve (all when empty).
    cql_root: Path = Field(REPO_ROOT / "cql", description="Folder of rule packs")
    rule_packs: list[str] = Field(default_factory=list, description="Rule pack folder names to serve; all when empty")
    # CQL engine.
    node_executable: str | None = Field(None, description="Node.js executable; auto-detected when empty")
    engine_workers: int = Field(2, ge=1, description="Node.js engine workers per service process")
    engine_timeout: float = Field(10.0, gt=0, description="Seconds one CQL evaluation may take")
    engine_heap_mb: int | None = Field(
        192, ge=64, description="V8 old-space limit of each engine worker, in MB (bounds its memory; none when empty)")
    engine_cache_dir: str | None = Field(
        None, description="Folder for the engine's parsed FHIR model cache ('off': none); node_modules/.cache/fusion-cds when empty")
    # Caller authentication. Only explicit configuration turns it off, and the service says so loudly.
    auth_disabled: bool = Field(False, description="Turn caller authentication off (development only)")
    # FHIR access for the keys the client did not prefetch.
    fhir_timeout: float = Field(3.0, gt=0, description="Seconds per FHIR request")
    fhir_deadline: float = Field(4.0, gt=0, description="Seconds for all FHIR access of one hook call")
    fhir_max_pages: int = Field(20, ge=1, description="Most pages followed per search")
    fhir_max_bytes: int = Field(20_000_000, ge=1, description="Largest FHIR response body accepted, in bytes")
    fhir_page_size: int | None = Field(200, description="_count added to searches that set none")
    # Site maps.
    local_order_codes: dict[str, str] = Field(
        default_factory=dict, description='Local order codes -> rule pack order code, {"system|code": "22558"}')
    payer_profiles: dict[str, str] = Field(
        default_factory=dict, description="Payer identifier or name -> policy profile name")
    order_codes: dict[str, dict] = Field(
        default_factory=dict, description="Overrides of the codes used in suggested orders (name -> Coding)")
    # Public base URL of the service (links in cards; the JWT audience). The request's host when empty.
    public_base_url: str | None = Field(None, description="Public base URL of the service")
    max_body_bytes: int = Field(2_000_000, ge=1024, description="Largest request body accepted, in bytes")
    # Production server (`cds-hooks serve --production`: gunicorn, cds_hooks/gunicorn_conf.py).
    server_bind: str = Field("127.0.0.1:8080", description="Address the production server listens on (host:port)")
    server_workers: int = Field(2, ge=1, description="Production server worker processes (each with its own engine pool)")
    server_threads: int = Field(4, ge=1, description="Request threads per production server worker (gthread)")
    server_timeout: float = Field(30.0, gt=0, description="Seconds a silent worker lives before the server restarts it")
    server_graceful_timeout: float = Field(20.0, gt=0, description="Seconds workers get to finish requests on shutdown")
    server_keepalive: float = Field(5.0, ge=0, description="Seconds an idle keep-alive connection stays open")

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return init_settings, env_settings, file_secret_settings, _FileSource(settings_cls)

    @classmethod
    def development(cls, **overrides) -> "Config":
        """Local development: caller authentication off (the service logs a warning at start-up)."""
        return cls(**{"auth_disabled": True, **overrides})

    @classmethod
    def from_env(cls, **overrides) -> "Config":
        """Settings from the environment, the secrets directory and the settings file."""
        return cls(**overrides)
