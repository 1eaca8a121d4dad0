"""Every hook call is recorded: its audit row, committed before the response is sent, and its metrics.

Da Vinci CRD ("Auditing"): the record of a call is evidence, so a successful response is only sent
once its row is committed; when the row cannot be written the caller gets 503 instead of cards that
were never recorded. Failed calls are recorded too (status, error code and class), best effort.
"""

from __future__ import annotations

import functools
import logging
import time

from flask import Flask, current_app, g

from cds_hooks.audit.call_record import CallRecord
from cds_hooks.audit.database import open_database
from cds_hooks.audit.replay_db import DatabaseReplayStore
from cds_hooks.audit.sealing import Sealer
from cds_hooks.audit.store import AuditStore
from cds_hooks.config import Config
from cds_hooks.errors import AuditUnavailable
from cds_hooks.ops.metrics import UNKNOWN, Metrics
from cds_hooks.web.extensions import registry_of
from cds_hooks.web.http_errors import describe

log = logging.getLogger("cds_hooks.recording")

EXTENSION = "cds_hooks.recorder"


class Recorder:
    def __init__(self, store: AuditStore | None, metrics: Metrics):
        self.store = store
        self.metrics = metrics

    def finish(self, call: CallRecord, service_label: str, must_persist: bool) -> None:
        """Write the call's audit row (when auditing) and observe its metrics.

        The row is committed before the response either way; only a response that gives advice (a card
        or a system action) also waits for the commit to reach the disk. A call that answered nothing
        (no fusion order, shadow mode, an error) has nothing a user saw to defend, so its commit is not
        flushed before the answer (docs/operations.md, "Durability")."""
        call.finish()
        if self.store is not None:
            t0 = time.perf_counter()
            try:
                self.store.record_call(call, durable=must_persist and gives_advice(call))
            except Exception as exc:  # noqa: BLE001 - whatever the database says, the caller gets 503
                self.metrics.audit_failures.labels("call").inc()
                log.error(
                    "audit write failed: %s (%s)",
                    type(exc).__name__,
                    "answered 503 audit-unavailable" if must_persist else f"the caller got {call.status}",
                )
                if must_persist:
                    self._observe(call, service_label, 503)
                    raise AuditUnavailable(
                        "The call could not be recorded in the audit trail, so no cards are returned; retry later."
                    ) from exc
            else:
                self.metrics.observe_audit_write(service_label, time.perf_counter() - t0)
        self._observe(call, service_label, call.status)

    def _observe(self, call: CallRecord, service_label: str, status: int) -> None:
        # Cards and criteria count only when they were shown (not in shadow mode, not off).
        ok = status == 200 and call.outcome is not None and call.mode == "live"
        self.metrics.calls_by_mode.labels(service_label, call.mode).inc()
        self.metrics.observe_call(
            service_label,
            status,
            time.perf_counter() - call.started,
            call.outcome.timings if call.outcome else None,
            call.patient_data,
            call.outcome.response.get("cards", []) if ok else [],
            [r for case in call.cases for r in case.results] if ok else [],
        )


def gives_advice(call: CallRecord) -> bool:
    """Whether the caller received a card or a system action (CDS Hooks 2.0, "CDS Service Response")."""
    response = call.response_sent()
    return bool(response.get("cards") or response.get("systemActions"))


def audit_parts(config: Config) -> tuple[Recorder, DatabaseReplayStore | None]:
    """The recorder and the shared JWT replay store, built from the configuration: the database
    (migrated when configured), the store with its keys; without `audit_enabled`, neither database
    nor replay store (metrics only)."""
    if not config.audit_enabled:
        return Recorder(None, Metrics()), None
    sealer = Sealer.from_config(config)  # before the database: a key problem should not leave a new file
    engine = open_database(config, serving=True)
    return Recorder(AuditStore(engine, sealer), Metrics()), DatabaseReplayStore(engine)


def recorder_of(app: Flask) -> Recorder:
    return app.extensions[EXTENSION]


def _json_body():
    """The body as far as it was read and accepted; nothing for a body refused as too large or not JSON."""
    return g.get("json_body")


def recorded(view):
    """Decorate the service view: it gets a `call` to fill in; the call is recorded however it ends."""

    @functools.wraps(view)
    def wrapper(service_id: str, **kwargs):
        recorder = recorder_of(current_app)
        label = service_id if registry_of(current_app).get(service_id) is not None else UNKNOWN
        call = CallRecord(service_id=service_id)
        try:
            response = view(service_id, call=call, **kwargs)
        except Exception as exc:
            call.fail(exc, describe(exc))
            if call.request is None:
                call.body = _json_body()
            recorder.finish(call, label, must_persist=False)
            raise
        recorder.finish(call, label, must_persist=True)
        return response

    return wrapper
