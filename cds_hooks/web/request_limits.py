"""What a request body must be before the service reads it: JSON, not too large, not too deep, and
with the identifiers the service uses shaped like identifiers.

CDS Hooks 2.0, "Calling a CDS Service": requests are `POST` with a JSON body. Bodies that declare
another media type answer 415; bodies over the configured size answer 413 (before they are read
when the length is declared); malformed or too deeply nested JSON answers 400. The checks run when a
view first reads its body (`json_body()`), so they happen inside the view and a call refused for its
body is still recorded in the audit trail. `application/json`
and `application/fhir+json` (or any `application/*+json`) are accepted, with `charset=utf-8` or none.
"""
from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

from flask import Flask, current_app, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from cds_hooks.errors import InvalidRequest, RequestTooLarge, UnsupportedMediaType

BODY_METHODS = ("POST", "PUT", "PATCH")
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_ID_CHARS = 256
MAX_URL_CHARS = 2048
MAX_TOKEN_CHARS = 16384


def _json_media_type(mimetype: str, charset: str | None) -> bool:
    if charset and charset.lower().replace("-", "") != "utf8":
        return False
    if mimetype == "application/json":
        return True
    return mimetype.startswith("application/") and mimetype.endswith("+json")


def depth_of(value) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def parse_body(data: bytes, max_depth: int):
    try:
        body = json.loads(data)
    except RecursionError:
        raise InvalidRequest(f"the JSON body nests deeper than {max_depth} levels", code="too-deep") from None
    except ValueError:
        raise InvalidRequest("the request body is not valid JSON", code="malformed-json") from None
    if depth_of(body) > max_depth:
        raise InvalidRequest(f"the JSON body nests deeper than {max_depth} levels", code="too-deep")
    return body


def json_body():
    """The request's JSON body, read and checked once per request (413, 415, 400)."""
    if "json_body" in g:
        return g.json_body
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None and request.content_length > limit:
        raise RequestTooLarge(f"the request body is larger than {limit} bytes")
    if not _json_media_type(request.mimetype, request.mimetype_params.get("charset")):
        raise UnsupportedMediaType("the request body must be JSON (Content-Type: application/json)")
    try:
        data = request.get_data(cache=True)
    except RequestEntityTooLarge:  # no declared length, but more bytes than allowed
        raise RequestTooLarge(f"the request body is larger than {limit} bytes") from None
    g.json_body = parse_body(data, current_app.config["CDS_MAX_JSON_DEPTH"])
    return g.json_body


def init_app(app: Flask, config) -> None:
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.config["CDS_MAX_JSON_DEPTH"] = config.max_json_depth


def _check_string(obj: dict, key: str, where: str, limit: int = MAX_ID_CHARS) -> None:
    value = obj.get(key)
    if isinstance(value, str) and (len(value) > limit or _CONTROL.search(value)):
        raise InvalidRequest(f"{where}{key} is too long or holds control characters")


def check_hook_fields(body) -> None:
    """Sanity of the fields the service uses as identifiers, URLs and credentials (values are never
    echoed). Shape and presence are hook_request's job; this only refuses the absurd."""
    if not isinstance(body, dict):
        return
    for key in ("hook", "hookInstance"):
        _check_string(body, key, "")
    context = body.get("context")
    if isinstance(context, dict):
        _check_string(context, "userId", "context.")
        for key in ("patientId", "encounterId"):
            value = context.get(key)
            # FHIR R4 "id" datatype: [A-Za-z0-9\-\.]{1,64}; dots alone would be a path segment.
            if isinstance(value, str) and value.strip() and (
                    not _FHIR_ID.fullmatch(value.strip()) or not value.strip("." + " ")):
                raise InvalidRequest(f"context.{key} must be a FHIR resource id")
    server = body.get("fhirServer")
    if isinstance(server, str) and server.strip():
        parts = urlsplit(server.strip())
        if (len(server) > MAX_URL_CHARS or _CONTROL.search(server) or parts.scheme not in ("http", "https")
                or not parts.hostname or parts.username or parts.password or parts.fragment):
            raise InvalidRequest("fhirServer must be an absolute http(s) URL")
    auth = body.get("fhirAuthorization")
    if isinstance(auth, dict):
        _check_string(auth, "access_token", "fhirAuthorization.", MAX_TOKEN_CHARS)
