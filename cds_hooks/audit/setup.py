"""Builds the audit trail's parts from the configuration: the database (migrated when configured),
the store with its keys, the shared JWT replay store, and the recorder with its metrics."""
from __future__ import annotations

from cds_hooks.audit.store import AuditStore
from cds_hooks.config import Config
from cds_hooks.audit.database import open_database
from cds_hooks.ops.metrics import Metrics
from cds_hooks.web.recording import Recorder
from cds_hooks.audit.replay_db import DatabaseReplayStore
from cds_hooks.audit.sealing import Sealer


def audit_parts(config: Config) -> tuple[Recorder, DatabaseReplayStore | None]:
    """(recorder, replay store); without `audit_enabled`, no database and no replay store."""
    if not config.audit_enabled:
        return Recorder(None, Metrics()), None
    sealer = Sealer.from_config(config)  # before the database: a key problem should not leave a new file
    engine = open_database(config)
    return Recorder(AuditStore(engine, sealer), Metrics()), DatabaseReplayStore(engine)


def open_store(config: Config) -> AuditStore:
    """The audit store for the command line (no engine, no metrics)."""
    return AuditStore(open_database(config), Sealer.from_config(config))
