"""JSON errors for every route: a status, a short machine code and one human sentence.

The one place that maps errors to HTTP: the domain errors of cds_hooks/errors.py a caller can act on
(STATUS below), Flask's own HTTP errors (404 for an unknown route, 405, ...), and everything else as 500
"internal-error". The Flask error handlers and the audit trail (audit/call_record.py records what the
caller got) both go through `describe`.

CDS Hooks 2.0 ("HTTP Response") leaves error bodies to the service; ours are always JSON and never
carry a stack trace, a token or a patient identifier.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from cds_hooks.auth.case_links import LinkRefused
from cds_hooks.errors import (
    CdsError,
    FhirServerNotAllowed,
    InvalidRequest,
    PrefetchIncomplete,
    RequestTooLarge,
    RulePackMalfunction,
    ServiceUnavailable,
    UnknownService,
    UnsupportedMediaType,
)

log = logging.getLogger("cds_hooks.errors")

STATUS: dict[type[CdsError], int] = {
    InvalidRequest: 400,
    FhirServerNotAllowed: 403,
    LinkRefused: 403,  # a case-view link expired, altered or signed for another card
    UnknownService: 404,
    PrefetchIncomplete: 412,  # CDS Hooks 2.0: the service could not obtain the data it needs
    RequestTooLarge: 413,
    UnsupportedMediaType: 415,
    RulePackMalfunction: 500,
    ServiceUnavailable: 503,
}
INTERNAL_MESSAGE = "The service failed to process the request."
RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class Failure:
    """What the caller gets for an error, and the class the audit trail names as its cause."""

    status: int
    code: str
    message: str
    error_class: str


def status_of(exc: BaseException) -> int | None:
    """The status of a domain error the caller can act on; None for any other error."""
    return next((status for cls, status in STATUS.items() if isinstance(exc, cls)), None)


def describe(exc: BaseException) -> Failure:
    status = status_of(exc)
    if status is not None:
        cause = exc.__cause__
        return Failure(status, exc.code, exc.message, type(cause if cause is not None else exc).__name__)
    if isinstance(exc, HTTPException):
        code = (exc.name or "error").lower().replace(" ", "-")
        return Failure(exc.code or 500, code, exc.description or exc.name, type(exc).__name__)
    return Failure(500, "internal-error", INTERNAL_MESSAGE, type(exc).__name__)


def error_response(status: int, code: str, message: str):
    response = jsonify({"error": code, "message": message})
    response.status_code = status
    if status == 503:
        # RFC 9110 section 10.2.3: when to try again; every 503 here is a part that may come back.
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(Exception)
    def _error(exc: Exception):
        failure = describe(exc)
        if failure.code == "internal-error":
            # The class name is enough to find the cause in the logs; the message may hold patient data.
            log.error("unhandled error: %s", type(exc).__name__, exc_info=app.debug)
        return error_response(failure.status, failure.code, failure.message)
