"""Prometheus metrics of one application (every metric is listed in docs/operations.md).

Each application owns its registry (no process-wide state), except in multi-process mode: when
`PROMETHEUS_MULTIPROC_DIR` is set before the service starts (gunicorn with several workers), the
client library keeps every value in files in that folder and `/metrics` adds up all processes'.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess

from cds_hooks.hooks.prefetch import FAILED
from cds_hooks.pipeline.patient_data import PatientData

# Pipeline stages as the evaluation times them -> the stage label.
STAGES = {
    "orders": "orders",
    "data": "fetch",
    "report_text": "report_text",
    "note_text": "note_text",
    "engine": "engine",
    "cards": "cards",
}
UNKNOWN = "unknown"


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Histogram(
            "cds_hook_request_duration_seconds",
            "Time to answer a hook call (audit write included), by service and HTTP status",
            ["service", "status"],
            registry=r,
        )
        self.stages = Histogram(
            "cds_hook_stage_duration_seconds",
            "Time of one stage of a hook call: orders, fetch (prefetch "
            "reading and FHIR queries), report_text (findings read from report text), note_text (facts read "
            "from clinical notes, attachments by URL included), engine (CQL), cards, "
            "audit (the audit write)",
            ["service", "stage"],
            registry=r,
        )
        self.fhir_errors = Counter(
            "cds_fhir_errors",
            "Patient data sources that failed (a FHIR query error, or an OperationOutcome "
            "sent as prefetch), by resource type",
            ["service", "resource_type"],
            registry=r,
        )
        self.cards = Counter("cds_cards", "Cards returned, by indicator", ["service", "indicator"], registry=r)
        self.criteria = Counter(
            "cds_criteria_outcomes",
            "Criterion results on returned cards, by criterion and status",
            ["service", "criterion", "status"],
            registry=r,
        )
        self.feedback = Counter(
            "cds_feedback",
            "Feedback entries stored, by outcome and override reason code "
            "(codes the service offers; other codes count as 'other')",
            ["service", "outcome", "reason"],
            registry=r,
        )
        self.calls_by_mode = Counter(
            "cds_calls_by_mode",
            "Hook calls by go-live mode: live, shadow (evaluated, no cards returned) or off (not evaluated)",
            ["service", "mode"],
            registry=r,
        )
        self.audit_failures = Counter(
            "cds_audit_write_failures", "Audit rows that could not be written (call or feedback)", ["kind"], registry=r
        )

    def observe_call(
        self,
        service: str,
        status: int,
        seconds: float,
        timings: dict[str, float] | None,
        data: PatientData | None,
        cards: list[dict],
        results,
    ) -> None:
        self.requests.labels(service, str(status)).observe(seconds)
        for key, value in (timings or {}).items():
            if key in STAGES:
                self.stages.labels(service, STAGES[key]).observe(value)
        if data is not None:
            for source in data.sources.values():
                if source.status == FAILED:
                    self.fhir_errors.labels(service, source.resource_type).inc()
        for card in cards:
            self.cards.labels(service, str(card.get("indicator"))).inc()
        for r in results:
            self.criteria.labels(service, r.id, r.status).inc()

    def observe_audit_write(self, service: str, seconds: float) -> None:
        self.stages.labels(service, "audit").observe(seconds)

    def observe_feedback(self, service: str, outcome: str, reason_code: str | None, known_codes) -> None:
        reason = "none" if not reason_code else (reason_code if reason_code in known_codes else "other")
        self.feedback.labels(service, outcome, reason).inc()

    def exposition(self) -> tuple[bytes, str]:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
