"""Structured logs: one JSON object per line, each with the request id of the call it belongs to.

What a log line may carry: the route (never the raw path or query string), status, timings, reason
codes, counts, the hook instance, and patient ids only as a keyed hash (`pseudonym()`). What it
never carries: access tokens, JWTs, patient identifiers, resource contents. Libraries that would
log full URLs (urllib3 at debug level: FHIR search URLs hold the patient id) are held at WARNING,
and the development server's access log is replaced by the application's own.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
import logging
import re
import secrets
import sys
import time
import traceback
import uuid
from datetime import datetime, timezone

from flask import Flask, g, request
from werkzeug.serving import WSGIRequestHandler

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("cds_request_id", default=None)
REQUEST_ID_HEADER = "X-Request-Id"
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# Loggers that print URLs or request lines at their chattier levels.
_QUIET_LOGGERS = ("urllib3", "requests", "werkzeug", "alembic")  # alembic: a line per plugin on every start
EXTENSION = "cds_hooks.logs"


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", "request_id", ...fields}`; exceptions as their type and
    stack frames only (an exception's message may quote data)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id:
            entry["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                entry.setdefault(key, value)
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
            entry["stack"] = [f"{f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_tb(record.exc_info[2])]
        return json.dumps(entry, ensure_ascii=False, default=str)


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record is emitted, not the one of the moment the
    handler was made: a test runner or a tool that swaps and closes stderr leaves no handler writing
    to a closed file ("Logging error ... I/O operation on closed file")."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass  # always the current sys.stderr


def configure(level: str | int = "INFO", stream=None) -> logging.Handler:
    """Send every log record to `stream` (the current stderr) as JSON lines; returns the handler."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream) if stream is not None else _CurrentStderr()
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    quiet_libraries()
    return handler


def quiet_libraries() -> None:
    for name in _QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:  # NOTSET included: it would inherit a debug root
            logger.setLevel(logging.WARNING)


class Pseudonymizer:
    """A keyed hash (HMAC-SHA-256, 16 hex characters) that stands in for an identifier in logs.

    The same id gives the same pseudonym under one key, so log lines can be correlated; without the
    key the id cannot be recovered or confirmed by guessing."""

    def __init__(self, key: bytes | None = None):
        self._key = key or secrets.token_bytes(32)

    def __call__(self, value: str | None) -> str | None:
        if value is None:
            return None
        return hmac.new(self._key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


def pseudonym(app: Flask, value: str | None) -> str | None:
    return app.extensions[EXTENSION](value)


def init_app(app: Flask, config) -> None:
    """Request ids (accepted from `X-Request-Id` when well-formed, otherwise new) on every response
    and log line, and one access log line per request."""
    key = config.log_pseudonym_key.get_secret_value().encode() if config.log_pseudonym_key else None
    app.extensions[EXTENSION] = Pseudonymizer(key)
    quiet_libraries()
    access = logging.getLogger("cds_hooks.access")

    @app.before_request
    def _start():
        supplied = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = supplied if _CLIENT_REQUEST_ID.fullmatch(supplied) else uuid.uuid4().hex
        g.request_started = time.perf_counter()
        g.request_id_token = REQUEST_ID.set(g.request_id)

    @app.after_request
    def _finish(response):
        request_id = g.get("request_id")
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        started = g.get("request_started")
        access.info(
            "request",
            extra={
                "fields": {
                    "method": request.method,
                    "route": request.url_rule.rule if request.url_rule is not None else "(no route)",
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1) if started else None,
                }
            },
        )
        return response

    @app.teardown_request
    def _reset(_exc=None):
        token = g.pop("request_id_token", None)
        if token is not None:
            REQUEST_ID.reset(token)


class QuietRequestHandler(WSGIRequestHandler):
    """The development server's request handler without its access log (which prints the raw
    request line, query string included) and without echoing malformed request lines."""

    def log_request(self, code="-", size="-") -> None:
        pass  # the application logs every request itself (route, status, time)

    def log_error(self, format: str, *args) -> None:
        self.log("error", "%s", "the development server refused a malformed request")
