"""Replay protection for caller JWTs: has this `jti` been seen before it expired?

CDS Hooks 2.0, "Trusting CDS Clients": the service should reject a JWT whose `jti` it has already
seen. Several replicas must share the answer, so the store is pluggable: an in-process store for a
single process, and a database-backed store (see the audit database) for scale-out.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class ReplayStore(Protocol):
    def first_use(self, key: str, expires_at: float) -> bool:
        """Record `key` until `expires_at` (epoch seconds); True the first time, False on a replay."""


class MemoryReplayStore:
    """Replay protection inside one process only (development, tests, a single replica)."""

    def __init__(self, clock=time.time):
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def first_use(self, key: str, expires_at: float) -> bool:
        now = self._clock()
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen = {k: exp for k, exp in self._seen.items() if exp > now}
            if self._seen.get(key, 0) > now:
                return False
            self._seen[key] = expires_at
            return True
