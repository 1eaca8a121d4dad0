"""The audit store for the command line, from the configuration (the service builds its own in
web/recording.py: `audit_parts`)."""

from __future__ import annotations

from cds_hooks.audit.database import open_database
from cds_hooks.audit.sealing import Sealer
from cds_hooks.audit.store import AuditStore
from cds_hooks.config import Config


def open_store(config: Config) -> AuditStore:
    """The audit store for the command line (no engine, no metrics)."""
    return AuditStore(open_database(config), Sealer.from_config(config))
