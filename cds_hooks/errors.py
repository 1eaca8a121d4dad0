"""The service's domain errors: one base class, each error with a stable machine `code` and a `message`.

Nothing here knows HTTP. The web edge (web/http_errors.py) is the one place that maps an error to a
status and renders `{"error": code, "message": message}`; the errors listed there are the ones a
caller can act on, every other error answers 500 "internal-error" without its message. Errors of the
other parts (EngineError, FhirError, RulePackError, ...) derive from `CdsError` where they are defined.
"""

from __future__ import annotations


class CdsError(Exception):
    """Base of the service's errors. `code` is short and stable (logs, metrics, response bodies);
    `message` is one sentence without tokens or patient identifiers."""

    code: str = "error"

    def __init__(self, message: str = "", code: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidRequest(CdsError):
    """The request (hook call, feedback, try-it call) cannot be used as sent."""

    code = "invalid-request"


class RequestTooLarge(CdsError):
    code = "too-large"


class UnsupportedMediaType(CdsError):
    code = "unsupported-media-type"


class UnknownService(CdsError):
    code = "unknown-service"

    def __init__(self, service_id: str):
        super().__init__(f"no CDS service with id {service_id!r}")


class FhirServerNotAllowed(CdsError):
    """The service would have to fetch from a FHIR server that is not on its allowlist."""

    code = "fhir-server-not-allowed"


class PrefetchIncomplete(CdsError):
    """Every source of patient data failed (prefetch and FHIR server); keeps what was tried for the audit
    trail. CDS Hooks 2.0 ("HTTP Response") answers this with 412."""

    code = "no-data"

    def __init__(self, data, message: str):
        super().__init__(message)
        self.data = data


class ServiceUnavailable(CdsError):
    """A part the call needs is down (engine, audit trail, feedback store); the caller may retry."""

    code = "unavailable"


class AuditUnavailable(ServiceUnavailable):
    """The audit database cannot be reached or did not answer in time: a call that needs it (the
    audit write, feedback, the database-backed JWT replay check) is refused and may be retried."""

    code = "audit-unavailable"


class RulePackMalfunction(CdsError):
    """The rule pack's CQL returned results the service cannot read."""

    code = "rule-pack-error"
