"""CORS on the CDS endpoints, for CDS clients that call from a browser (such as the public CDS Hooks
sandbox). CDS Hooks 2.0, "CDS Services": services should support CORS for browser-based clients.

Only configured origins are answered. A preflight (`OPTIONS` with `Access-Control-Request-Method`)
for an allowed origin and a method the route has answers 204 and allows the `Authorization`,
`Content-Type` and `X-Request-Id` request headers; any other preflight answers 403 without CORS headers. Actual
responses to an allowed origin carry `Access-Control-Allow-Origin` with that origin (never `*` with
credentials; the JWT travels in a header, so no cookies are involved). Every response on these
routes carries `Vary: Origin`, so a cache never serves one origin's answer to another.
"""

from __future__ import annotations

from flask import Flask, request
from werkzeug.exceptions import MethodNotAllowed, NotFound

from cds_hooks.web.authentication import is_protected
from cds_hooks.web.http_errors import error_response

# What CDS clients send from a browser: the JWT, the body type, and a request id to correlate logs.
ALLOWED_REQUEST_HEADERS = ("authorization", "content-type", "x-request-id")
EXPOSED_HEADERS = "X-Request-Id"
PREFLIGHT_MAX_AGE = "600"
CORS_PATHS = ("/openapi.json",)


def _applies(path: str) -> bool:
    return is_protected(path) or path in CORS_PATHS


def _origin_allowed(origins: tuple[str, ...], origin: str | None) -> bool:
    return bool(origin) and ("*" in origins or origin in origins)


def _route_methods(app: Flask, path: str) -> set[str]:
    adapter = app.url_map.bind("localhost")
    try:
        methods = set(adapter.allowed_methods(path))
    except (NotFound, MethodNotAllowed):
        return set()
    return methods - {"OPTIONS", "HEAD"}


def init_app(app: Flask, config) -> None:
    origins = tuple(o.rstrip("/") for o in config.cors_origins)

    @app.before_request
    def _preflight():
        if request.method != "OPTIONS" or not _applies(request.path):
            return None
        origin = request.headers.get("Origin")
        wanted_method = request.headers.get("Access-Control-Request-Method")
        if not origin or not wanted_method:
            return None  # a plain OPTIONS: Flask answers with the Allow header
        methods = _route_methods(app, request.path)
        if not methods:
            return error_response(404, "not-found", "no such endpoint")
        wanted_headers = {
            h.strip().lower() for h in request.headers.get("Access-Control-Request-Headers", "").split(",") if h.strip()
        }
        if (
            not _origin_allowed(origins, origin)
            or wanted_method.upper() not in methods
            or not wanted_headers <= set(ALLOWED_REQUEST_HEADERS)
        ):
            response = error_response(403, "cors-refused", "this origin, method or header is not allowed")
            response.headers["Vary"] = "Origin"
            return response
        response = app.response_class(status=204)
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = ", ".join(sorted(methods))
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, X-Request-Id"
        response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        response.headers["Vary"] = "Origin"
        return response

    @app.after_request
    def _actual(response):
        if not _applies(request.path):
            return response
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            return response  # a preflight: answered (or refused) in full above
        response.vary.add("Origin")
        origin = request.headers.get("Origin")
        if _origin_allowed(origins, origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return response
