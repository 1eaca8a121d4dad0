"""JSON errors for every route: a status, a short machine code and one human sentence.

CDS Hooks 2.0 ("HTTP Response") leaves error bodies to the service; ours are always JSON and never
carry a stack trace, a token or a patient identifier.
"""
from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger("cds_hooks.errors")


class ServiceError(Exception):
    """An error the caller can act on; rendered as `{"error": code, "message": message}`."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str):
    response = jsonify({"error": code, "message": message})
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError):
        return error_response(exc.status, exc.code, exc.message)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "-")
        return error_response(exc.code or 500, code, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        # The class name is enough to find the cause in the logs; the message may hold patient data.
        log.error("unhandled error: %s", type(exc).__name__, exc_info=app.debug)
        return error_response(500, "internal-error", "The service failed to process the request.")
