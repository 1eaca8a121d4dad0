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
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent

# Asymmetric JWS algorithms a CDS client may sign with (CDS Hooks 2.0, "Trusting CDS Clients":
# ES384 and RS384 are required of services; others only when an issuer is configured for them).
ASYMMETRIC_ALGORITHMS = ("ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512")

# Development defaults (Config.development()); a CDS_* variable of the same name still wins.
DEVELOPMENT_DEFAULTS: dict[str, Any] = {
    "fhir_allow_loopback": True,
    "allow_http_loopback": True,
    "cors_origins": ["https://sandbox.cds-hooks.org"],
    "tryit_enabled": True,
}


class TrustedIssuer(BaseModel):
    """A CDS client allowed to call the service, and where its signing keys are published."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    iss: str = Field(min_length=1, description="The client's `iss` claim, compared exactly")
    jwks_url: str | None = Field(None, description="JWK Set URL used when the token has no `jku` header")
    jku_allowlist: list[str] = Field(default_factory=list, description="`jku` header values accepted, compared exactly")
    algorithms: list[str] = Field(default_factory=lambda: ["ES384", "RS384"], description="Accepted `alg` values")
    tenant: str | None = Field(None, description="When set, the token's `tenant` claim must equal it")
    max_lifetime: float | None = Field(
        None,
        gt=0,
        le=3600,
        description="Longest JWT lifetime (exp - iat) accepted from this issuer, in seconds (default: jwt_max_lifetime)",
    )
    pin_jwks_url: bool = Field(
        False, description="Verify with jwks_url whatever `jku` a token names (the jku allowlist is then not used)"
    )

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        bad = [a for a in value if a not in ASYMMETRIC_ALGORITHMS]
        if bad or not value:
            raise ValueError(
                f"algorithms must be a non-empty subset of {', '.join(ASYMMETRIC_ALGORITHMS)}; "
                f"refused: {', '.join(bad) or 'empty list'}"
            )
        return value

    @model_validator(mode="after")
    def _has_a_key_source(self) -> "TrustedIssuer":
        if not self.jwks_url and not self.jku_allowlist:
            raise ValueError(f"trusted issuer {self.iss!r} needs a jwks_url or a jku_allowlist")
        if self.pin_jwks_url and not self.jwks_url:
            raise ValueError(f"trusted issuer {self.iss!r}: pin_jwks_url needs a jwks_url")
        return self


def _secrets_dir() -> str | None:
    """Mounted secrets (one file per setting), read when the folder exists at import time."""
    folder = os.environ.get("CDS_SECRETS_DIR", "/run/secrets")
    return folder if Path(folder).is_dir() else None


def secret_fields(settings_cls) -> set[str]:
    """Settings holding secrets (SecretStr, alone or inside a list or map)."""
    return {name for name, f in settings_cls.model_fields.items() if "SecretStr" in str(f.annotation)}


class _FileSource(PydanticBaseSettingsSource):
    """Settings from the file named by CDS_CONFIG_FILE (JSON or TOML); keys are field names."""

    def __init__(self, settings_cls):
        super().__init__(settings_cls)
        path = os.environ.get("CDS_CONFIG_FILE")
        self._data: dict[str, Any] = {}
        if path:
            text = Path(path).read_text(encoding="utf-8")
            self._data = tomllib.loads(text) if path.endswith(".toml") else json.loads(text)
        # A settings file is often kept in version control or a ConfigMap: secrets never belong there.
        secrets = sorted(k for k in self._data if k in secret_fields(settings_cls))
        if secrets:
            raise ValueError(
                f"{path} sets {', '.join(secrets)}: secrets are read only from CDS_* environment "
                "variables or files in the secrets directory (docs/configuration.md)"
            )

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
    cql_engine: Literal["compiled", "reference"] = Field(
        "compiled",
        description="CQL engine: 'compiled' (the packs' ELM compiled to Python at load, run in the "
        "service process) or 'reference' (cql-execution in Node.js workers)",
    )
    node_executable: str | None = Field(None, description="Node.js executable; auto-detected when empty")
    engine_workers: int = Field(2, ge=1, description="Node.js engine workers per service process")
    engine_timeout: float = Field(10.0, gt=0, description="Seconds one CQL evaluation may take")
    engine_heap_mb: int | None = Field(
        192, ge=64, description="V8 old-space limit of each engine worker, in MB (bounds its memory; none when empty)"
    )
    engine_cache_dir: str | None = Field(
        None,
        description="Folder for the engine's parsed FHIR model cache ('off': none); node_modules/.cache/fusion-cds when empty",
    )
    # Caller authentication. Only explicit configuration turns it off, and the service says so loudly.
    auth_disabled: bool = Field(False, description="Turn caller authentication off (development only)")
    trusted_issuers: list[TrustedIssuer] = Field(
        default_factory=list,
        description='CDS clients allowed to call: [{"iss", "jwks_url", "jku_allowlist", "algorithms", "tenant"}]',
    )
    jwt_clock_skew: float = Field(60.0, ge=0, le=300, description="Seconds of clock skew allowed on exp, nbf and iat")
    jwt_max_lifetime: float = Field(
        300.0, gt=0, le=3600, description="Longest accepted JWT lifetime (exp - iat), in seconds"
    )
    jwks_timeout: float = Field(2.0, gt=0, le=10, description="Seconds one JWK Set download may take")
    jwks_cache_seconds: float = Field(
        3600.0, ge=0, description="Seconds a downloaded JWK Set is used before refreshing"
    )
    jwks_min_refresh_interval: float = Field(
        30.0, ge=0, description="Fewest seconds between two downloads of one JWK Set (unknown kid, failures)"
    )
    # Browsers: which web origins may call the CDS endpoints (CORS). Empty: none.
    cors_origins: list[str] = Field(
        default_factory=list, description='Origins allowed by CORS on the CDS endpoints ("*" for any)'
    )
    # Outbound requests (FHIR servers, JWK Sets).
    fhir_servers: list[str] = Field(
        default_factory=list,
        description="FHIR base URLs the service may query (exact, or ending in /* for any base below a path)",
    )
    fhir_allow_loopback: bool = Field(
        False, description="Also allow any FHIR server on a loopback address (development and tests only)"
    )
    allow_http_loopback: bool = Field(
        False, description="Allow plain http to loopback hosts for FHIR servers and JWK Sets (local testing only)"
    )
    # FHIR access for the keys the client did not prefetch.
    fhir_timeout: float = Field(3.0, gt=0, description="Seconds per FHIR request")
    fhir_deadline: float = Field(
        3.5, gt=0, description="Seconds from the start of a hook call by which all FHIR access has ended"
    )
    fhir_retries: int = Field(2, ge=0, le=5, description="Retries of one FHIR request answered 429, 502, 503 or 504")
    fhir_retry_backoff: float = Field(0.2, ge=0, description="First retry delay in seconds; doubles on each retry")
    fhir_max_pages: int = Field(20, ge=1, description="Most pages followed per search")
    fhir_max_bytes: int = Field(20_000_000, ge=1, description="Largest FHIR response body accepted, in bytes")
    fhir_max_total_bytes: int = Field(
        60_000_000, ge=1, description="Most FHIR response bytes read for one hook call, all requests together"
    )
    fhir_page_size: int | None = Field(200, description="_count added to searches that set none")
    # Imaging findings read from radiology report text (docs/report-text.md).
    report_text: bool = Field(
        True, description="Read stenosis grades, slips and flexion-extension measurements from imaging report text"
    )
    # Facts read from clinical notes (docs/note-text.md).
    note_text: bool = Field(
        True,
        description="Read physical therapy, nicotine, medication trials, symptoms and red flags from clinical notes",
    )
    # Site maps.
    local_order_codes: dict[str, str] = Field(
        default_factory=dict, description='Local order codes -> rule pack order code, {"system|code": "22558"}'
    )
    local_valueset_codes: dict[str, list[str]] = Field(
        default_factory=dict,
        description='Site codes added to rule pack value sets (value set id or url -> ["system|code"]), e.g. local PT visit types',
    )
    payer_profiles: dict[str, str] = Field(
        default_factory=dict, description="Payer identifier or name -> policy profile name"
    )
    order_codes: dict[str, dict] = Field(
        default_factory=dict, description="Overrides of the codes used in suggested orders (name -> Coding)"
    )
    # Public base URL of the service (links in cards; the JWT audience). The request's host when empty.
    public_base_url: str | None = Field(None, description="Public base URL of the service")
    max_body_bytes: int = Field(2_000_000, ge=1024, description="Largest request body accepted, in bytes")
    max_json_depth: int = Field(
        64, ge=8, le=512, description="Deepest nesting of objects and arrays accepted in a body"
    )
    # Work one hook call may ask for; over a limit the call answers 400 too-much-work before evaluating.
    max_orders_per_call: int = Field(
        20, ge=1, description="Most orders one hook call may carry that the rule pack checks"
    )
    max_cases_per_call: int = Field(10, ge=1, description="Most surgical cases (cards) one hook call may ask for")
    max_response_bytes: int = Field(2_000_000, ge=10_000, description="Largest hook response body, in bytes")
    # Logs: patient ids appear only as keyed hashes. Without a key, a random one per process.
    log_pseudonym_key: SecretStr | None = Field(
        None, description="Key for the keyed hash that stands in for patient ids in logs"
    )
    # The try-it page (an EHR simulator at /try): on in development, off unless configured otherwise.
    tryit_enabled: bool = Field(False, description="Serve the try-it page at /try (on in development)")
    tryit_fhir_server: str | None = Field(
        None, description="FHIR base URL whose patients the try-it page offers besides the bundled fixtures"
    )
    fixtures_root: Path = Field(
        REPO_ROOT / "fhir_fixtures", description="Folder of the fixture patients and orders the try-it page offers"
    )
    # Audit trail (docs/operations.md): every hook call, card and feedback, in a database.
    var_dir: Path = Field(
        REPO_ROOT / "var",
        description="Folder for the service's own files: the embedded "
        "SQLite audit database and the development audit key file",
    )
    audit_enabled: bool = Field(
        True, description="Record every hook call and accept feedback (off only for offline tools)"
    )
    database_url: SecretStr | None = Field(
        None,
        description="SQLAlchemy URL of the audit database, e.g. postgresql+psycopg://user:pw@host/db; "
        "a SQLite file var_dir/audit.db when empty",
    )
    database_migrate_on_start: bool = Field(True, description="Apply schema migrations when the service starts")
    database_busy_timeout: float = Field(
        10.0, gt=0, description="Seconds commands and the migration at start wait for a SQLite lock"
    )
    # The service's own waits on the audit database, bounded so that none outlasts a call's deadline.
    database_lock_timeout: float = Field(
        1.0,
        gt=0,
        le=30,
        description="Seconds a call waits for a database lock (PostgreSQL lock_timeout, "
        "SQLite busy timeout) before answering 503 audit-unavailable",
    )
    database_statement_timeout: float = Field(
        2.0, gt=0, le=30, description="Seconds one database statement of a call may run (PostgreSQL statement_timeout)"
    )
    database_connect_timeout: float = Field(
        2.0, gt=0, le=30, description="Seconds a call waits for a database connection (new or from the pool)"
    )
    audit_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='Audit encryption keys, {"key id": "base64 of 32 bytes"}; '
        "a development key file in var_dir when empty",
    )
    audit_key_id: str | None = Field(
        None, description="Id of the key that encrypts new audit rows; required when audit_keys holds more than one"
    )
    audit_pseudonym_key: SecretStr | None = Field(
        None, description="Base64 key (at least 32 bytes) of the keyed hash that pseudonymises patient ids"
    )
    audit_retention_days: int = Field(
        2190, ge=1, description="Days audit rows are kept; `cds-hooks audit purge` deletes older ones"
    )

    # Case view links (docs/security.md, "Case view links"): a card's signed link to its whole evaluation.
    case_view_key: SecretStr | None = Field(
        None,
        description="Base64 key (at least 32 bytes) signing case-view links (HMAC-SHA-256); a random "
        "key per process when empty (links then open only on the process that issued them)",
    )
    case_view_ttl_seconds: float = Field(
        1800.0, ge=60, le=86400, description="Seconds a card's case-view link opens the case view and the brief"
    )

    # Production server (`cds-hooks serve --production`: gunicorn, cds_hooks/ops/gunicorn_conf.py).
    server_bind: str = Field("127.0.0.1:8080", description="Address the production server listens on (host:port)")
    server_workers: int = Field(
        2, ge=1, description="Production server worker processes (each with its own engine pool)"
    )
    server_threads: int = Field(4, ge=1, description="Request threads per production server worker (gthread)")
    server_timeout: float = Field(30.0, gt=0, description="Seconds a silent worker lives before the server restarts it")
    server_graceful_timeout: float = Field(20.0, gt=0, description="Seconds workers get to finish requests on shutdown")
    server_keepalive: float = Field(5.0, ge=0, description="Seconds an idle keep-alive connection stays open")

    @field_validator("fhir_servers")
    @classmethod
    def _absolute_urls(cls, value: list[str]) -> list[str]:
        from urllib.parse import urlsplit

        for url in value:
            parts = urlsplit(url)
            if (
                parts.scheme not in ("https", "http")
                or not parts.hostname
                or parts.query
                or parts.fragment
                or parts.username
                or parts.password
            ):
                raise ValueError(
                    f"fhir_servers entry {url!r} must be an absolute http(s) URL without query or user info"
                )
        return value

    # Go-live controls (docs/deployment.md): shadow mode and the per-site switch in the audit database.
    shadow_mode: bool = Field(
        False,
        description="Evaluate and audit every call but answer with no cards "
        "(a site's own switch, `cds-hooks site`, overrides it)",
    )
    site_by: Literal["tenant", "issuer", "fhir_server"] = Field(
        "tenant",
        description="What names a site for the per-site switch: the caller JWT's `tenant` claim "
        "(its `iss` when it has none), its `iss`, or the request's `fhirServer`",
    )
    site_switch_cache_seconds: float = Field(
        5.0,
        ge=0,
        le=300,
        description="Seconds a process uses the per-site switches it read before reading "
        "them again (how soon every replica sees `cds-hooks site` changes)",
    )

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        return init_settings, env_settings, file_secret_settings, _FileSource(settings_cls)

    @classmethod
    def development(cls, **overrides) -> "Config":
        """Local development: caller authentication off (the service logs a warning at start-up),
        loopback FHIR servers over http allowed, the public CDS Hooks sandbox allowed by CORS, the
        try-it page on.

        Environment variables still override the development defaults, except `auth_disabled`.
        """
        defaults = {k: v for k, v in DEVELOPMENT_DEFAULTS.items() if f"CDS_{k.upper()}" not in os.environ}
        return cls(**{**defaults, "auth_disabled": True, **overrides})

    @classmethod
    def from_env(cls, **overrides) -> "Config":
        """Settings from the environment, the secrets directory and the settings file."""
        return cls(**overrides)


def setting_default(name: str) -> Any:
    """A setting's default, for code that also runs without a Config (one definition: the field's)."""
    return Config.model_fields[name].get_default(call_default_factory=True)
