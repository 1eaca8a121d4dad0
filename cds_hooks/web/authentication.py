"""Every route under /cds-services requires a verified caller: the request hook around auth/caller_jwt.py.

A refused call answers 401 with a short reason and `WWW-Authenticate: Bearer error="invalid_token"`;
neither the reason nor the logs ever contain the token. When the database-backed replay check cannot
reach the audit database the call answers 503 `audit-unavailable` with `Retry-After`.
"""

from __future__ import annotations

import logging

from flask import Flask, current_app, g, request

from cds_hooks.auth.caller_jwt import AuthError, CallerVerifier, JwksCache, check_settings, endpoint_urls
from cds_hooks.auth.replay import ReplayStore
from cds_hooks.config import Config
from cds_hooks.errors import AuditUnavailable
from cds_hooks.web.http_errors import error_response

log = logging.getLogger("cds_hooks.security")

PROTECTED_PREFIX = "/cds-services"
EXTENSION = "cds_hooks.security"


def is_protected(path: str) -> bool:
    return path == PROTECTED_PREFIX or path.startswith(PROTECTED_PREFIX + "/")


def init_app(app: Flask, config: Config, replay_store: ReplayStore, jwks: JwksCache | None = None) -> None:
    """Require a verified caller on every route under /cds-services (present and future ones).

    With `auth_disabled`, nothing is checked (the application factory logs the warning).
    """
    if config.auth_disabled:
        return
    check_settings(config)
    verifier = CallerVerifier(config, replay_store, jwks)
    app.extensions[EXTENSION] = verifier

    @app.before_request
    def _authenticate():
        # CORS preflights carry no credentials (Fetch standard); the CORS hook answers them.
        if request.method == "OPTIONS" or not is_protected(request.path):
            return None
        try:
            g.caller = verifier.verify(request.headers.get("Authorization"), endpoint_urls(config, request.path))
        except AuditUnavailable as exc:
            # 503 with Retry-After by the error handlers; the log says why, never the token.
            log.error("caller check failed: audit database unavailable (%s)", type(exc.__cause__).__name__)
            raise
        except AuthError as exc:
            log.info("caller refused", extra={"fields": {"reason": exc.code}})
            response = error_response(401, "unauthorized", exc.reason)
            response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
            return response
        return None


def verifier_of(app: Flask | None = None) -> CallerVerifier | None:
    return (app or current_app).extensions.get(EXTENSION)
