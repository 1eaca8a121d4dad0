"""Builds the audit trail's parts from the configuration: the database (migrated when configured),
the store with its keys, the shared JWT replay store, and the recorder with its metrics."""
from __future__ import annotations

from .audit import AuditStore
from .config import Config
from .database import open_database
from .metrics import Metrics
from .recording import Recorder
from .replay_db import DatabaseReplayStore
from .sealing import Sealer


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
