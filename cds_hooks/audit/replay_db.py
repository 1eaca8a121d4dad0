"""Replay protection for caller JWTs shared by every process and replica: a table in the audit database.

CDS Hooks 2.0, "Trusting CDS Clients": a `jti` seen before it expired is a replay. `first_use` is
one INSERT into a table whose primary key is the hashed key; the database's uniqueness check makes
it atomic across processes, so of two concurrent uses exactly one wins. A key whose row has expired
may be used again (an UPDATE guarded by the expiry, equally atomic). Expired rows are purged now and
then by the store itself and by `cds-hooks audit purge`.
"""

from __future__ import annotations

import hashlib
import threading
import time

from sqlalchemy import delete, insert, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from cds_hooks.audit.schema import replay_jti


class DatabaseReplayStore:
    """The `ReplayStore` protocol (auth/replay.py) on the audit database."""

    def __init__(self, engine: Engine, clock=time.time, purge_interval: float = 300.0):
        self.engine = engine
        self._clock = clock
        self._purge_interval = purge_interval
        self._next_purge = clock() + purge_interval
        self._lock = threading.Lock()

    @staticmethod
    def _hash(key: str) -> str:
        # Fixed length for the key column, and the raw key (issuer, jti) never lands in the table.
        return hashlib.sha256(key.encode("utf-8")).hexdigest()

    def first_use(self, key: str, expires_at: float) -> bool:
        """Record `key` until `expires_at` (epoch seconds); True the first time, False on a replay."""
        digest = self._hash(key)
        now = self._clock()
        self._maybe_purge(now)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(replay_jti).values(key_hash=digest, expires_at=float(expires_at)))
            return True
        except IntegrityError:
            pass
        with self.engine.begin() as conn:
            taken = conn.execute(
                update(replay_jti)
                .where(replay_jti.c.key_hash == digest, replay_jti.c.expires_at <= now)
                .values(expires_at=float(expires_at))
            )
        return taken.rowcount == 1

    def purge(self, now: float | None = None) -> int:
        """Delete the rows of keys that have expired; returns how many."""
        now = self._clock() if now is None else now
        with self.engine.begin() as conn:
            return conn.execute(delete(replay_jti).where(replay_jti.c.expires_at <= now)).rowcount

    def _maybe_purge(self, now: float) -> None:
        with self._lock:
            if now < self._next_purge:
                return
            self._next_purge = now + self._purge_interval
        self.purge(now)
