"""Explicit service configuration: one object, passed to the application factory.

Values come from keyword arguments, or from `CDS_*` environment variables via `Config.from_env()`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Config:
    # Where the rule packs live (folders with a pack.json) and which ones to serve (all when empty).
    cql_root: Path = REPO_ROOT / "cql"
    rule_packs: list[str] = field(default_factory=list)
    # CQL engine: Node executable (auto-detected when empty), pool size, per-evaluation timeout.
    node_executable: str | None = None
    engine_workers: int = 2
    engine_timeout: float = 10.0
    # Caller authentication. Only the development profile turns it off, loudly.
    auth_disabled: bool = False
    # FHIR access for keys the client did not prefetch.
    fhir_timeout: float = 3.0
    fhir_deadline: float = 4.0
    fhir_max_pages: int = 20
    fhir_max_bytes: int = 20_000_000
    fhir_page_size: int | None = 200
    # Site maps: local order codes -> pack order code ("system|code": "22558"), payer -> profile,
    # and overrides of the codes used in suggested orders (name -> Coding).
    local_order_codes: dict[str, str] = field(default_factory=dict)
    payer_profiles: dict[str, str] = field(default_factory=dict)
    order_codes: dict[str, dict] = field(default_factory=dict)
    # Public base URL of the service (links in cards, JWT audience); request host when empty.
    public_base_url: str | None = None
    max_body_bytes: int = 2_000_000

    @classmethod
    def development(cls, **overrides) -> "Config":
        """Local development: authentication off (with a warning at start-up)."""
        return cls(auth_disabled=True, **overrides)

    @classmethod
    def from_env(cls, environ: dict | None = None, **overrides) -> "Config":
        """Read `CDS_<FIELD>` variables (JSON for maps and lists, plain text otherwise)."""
        env = os.environ if environ is None else environ
        values: dict = {}
        for f in fields(cls):
            raw = env.get(f"CDS_{f.name.upper()}")
            if raw is None:
                continue
            default = getattr(cls(), f.name)
            if isinstance(default, bool):
                values[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
            elif isinstance(default, (dict, list)):
                values[f.name] = json.loads(raw)
            elif isinstance(default, int) and not isinstance(default, bool):
                values[f.name] = int(raw)
            elif isinstance(default, float):
                values[f.name] = float(raw)
            elif isinstance(default, Path):
                values[f.name] = Path(raw)
            else:
                values[f.name] = raw or None
        values.update(overrides)
        return cls(**values)
