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
# How much of a refused oversized body is read and dropped before the 413 is sent (see _discard).
DISCARD_BYTES = 16_000_000
_FIELD_NAME = re.compile(r"[A-Za-z0-9_$-]{1,64}")
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


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


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """RFC 8259 section 4: names "SHOULD be unique"; two different values under one name (two
    patientIds) would leave the choice to the parser, so a body that repeats one is refused."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


def _no_constant(name: str):
    # NaN, Infinity and -Infinity are not JSON (RFC 8259 section 6); Python's parser accepts them.
    raise ValueError(f"{name} is not a JSON number")


def _field_name(key: str) -> str:
    """A key as it may appear in an error message: plain field names only, never arbitrary text."""
    return key if _FIELD_NAME.fullmatch(key) else "a key"


def bad_text_at(value) -> str | None:
    """The path of the first string (value or key) holding a NUL or an unpaired UTF-16 surrogate.

    JSON escapes can spell both (`\\u0000`, a lone `\\ud800`); neither is text that can be stored
    (PostgreSQL refuses NUL, UTF-8 cannot encode a lone surrogate) or shown, so the body is refused
    at the edge rather than failing in the audit write or the engine."""
    stack: list[tuple[object, str]] = [(value, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            if _BAD_TEXT.search(node):
                return path or "the body"
        elif isinstance(node, dict):
            for key, child in node.items():
                where = f"{path}.{_field_name(key)}" if path else _field_name(key)
                if _BAD_TEXT.search(key):
                    return where
                stack.append((child, where))
        elif isinstance(node, list):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(node))
    return None


def parse_body(data: bytes, max_depth: int):
    """The body as JSON (RFC 8259): UTF-8 only (section 8.1; Python would otherwise guess UTF-16 or
    UTF-32 from the first bytes), no NaN or Infinity, no repeated key, no NUL or lone surrogate in
    any string, and no deeper than `max_depth`."""
    try:
        # A raw NUL byte is never in UTF-8 JSON text (inside strings it must be escaped), but is in
        # every UTF-16 or UTF-32 encoding of it.
        if b"\x00" in data:
            raise UnicodeDecodeError("utf-8", data, 0, 1, "NUL byte")
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("the request body is not UTF-8 text", code="malformed-json") from None
    try:
        body = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except RecursionError:
        raise InvalidRequest(f"the JSON body nests deeper than {max_depth} levels", code="too-deep") from None
    except _DuplicateKey as exc:
        raise InvalidRequest(
            f"the JSON body repeats the key {_field_name(exc.key)} in one object", code="malformed-json"
        ) from None
    except ValueError:
        raise InvalidRequest("the request body is not valid JSON", code="malformed-json") from None
    if depth_of(body) > max_depth:
        raise InvalidRequest(f"the JSON body nests deeper than {max_depth} levels", code="too-deep")
    where = bad_text_at(body)
    if where is not None:
        raise InvalidRequest(f"{where} holds a NUL character or an unpaired surrogate", code="invalid-text")
    return body


def _discard(stream, budget: int) -> None:
    """Read and drop up to `budget` more bytes of a refused body, so the client, still sending, gets
    to read the 413 rather than a connection reset (RFC 9110 section 15.5.14: the server may close
    the connection; reading what is in flight first lets the answer arrive)."""
    while budget > 0:
        chunk = stream.read(min(65536, budget))
        if not chunk:
            return
        budget -= len(chunk)


def _too_large(limit: int, stream) -> RequestTooLarge:
    _discard(stream, DISCARD_BYTES)
    return RequestTooLarge(f"the request body is larger than {limit} bytes")


def _read_body(limit: int) -> bytes:
    """At most `limit` bytes of body, whether its length is declared or it arrives chunked."""
    stream = request.environ["wsgi.input"]
    if request.content_length is not None:
        if request.content_length > limit:
            raise _too_large(limit, stream)
        return request.get_data(cache=True)
    if not request.environ.get("wsgi.input_terminated"):
        return b""  # no declared length and no end marker from the server: no body (PEP 3333)
    # Chunked: the server ends the stream at the last chunk; one byte past the limit is enough to know.
    data = bytearray()
    while len(data) <= limit:
        chunk = stream.read(min(65536, limit + 1 - len(data)))
        if not chunk:
            return bytes(data)
        data.extend(chunk)
    raise _too_large(limit, stream)


def json_body():
    """The request's JSON body, read and checked once per request (413, 415, 400)."""
    if "json_body" in g:
        return g.json_body
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if not _json_media_type(request.mimetype, request.mimetype_params.get("charset")):
        if request.content_length is not None and request.content_length > limit:
            raise _too_large(limit, request.environ["wsgi.input"])
        raise UnsupportedMediaType("the request body must be JSON (Content-Type: application/json)")
    try:
        data = _read_body(limit)
    except RequestEntityTooLarge:
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
            if (
                isinstance(value, str)
                and value.strip()
                and (not _FHIR_ID.fullmatch(value.strip()) or not value.strip("." + " "))
            ):
                raise InvalidRequest(f"context.{key} must be a FHIR resource id")
    server = body.get("fhirServer")
    if isinstance(server, str) and server.strip():
        parts = urlsplit(server.strip())
        if (
            len(server) > MAX_URL_CHARS
            or _CONTROL.search(server)
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.username
            or parts.password
            or parts.fragment
        ):
            raise InvalidRequest("fhirServer must be an absolute http(s) URL")
    auth = body.get("fhirAuthorization")
    if isinstance(auth, dict):
        _check_string(auth, "access_token", "fhirAuthorization.", MAX_TOKEN_CHARS)
