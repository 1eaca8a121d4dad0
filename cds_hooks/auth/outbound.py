"""Where the service may send a request, and how it reads an answer without trusting it.

Two kinds of outbound request exist: FHIR searches on the client's `fhirServer` (CDS Hooks 2.0,
"FHIR Resource Access") and downloads of a trusted issuer's JWK Set ("Trusting CDS Clients").
Both go only to configured places, over https (plain http only to a loopback host, and only when
configured for local testing), never follow redirects, and read at most a fixed number of bytes
before a deadline, however slowly the other side sends them.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from cds_hooks.errors import CdsError


class OutboundError(CdsError):
    """A request that was refused before sending, or whose answer could not be read."""

    code = "outbound-refused"

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the default port filled in: the unit a token is bound to."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    port = port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 or `localhost`: literal names only (no DNS lookup, so no rebinding)."""
    host = host.lower().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def transport_allowed(url: str, allow_http_loopback: bool) -> bool:
    """https anywhere; http only to a loopback host and only when configured."""
    parts = urlsplit(url)
    if parts.username or parts.password or not parts.hostname:
        return False
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and allow_http_loopback and is_loopback_host(parts.hostname)


def normalise_base(url: str) -> str:
    """A FHIR base URL compared by scheme, host, port and path (no trailing slash)."""
    scheme, host, port = origin(url)
    path = urlsplit(url).path.rstrip("/")
    return f"{scheme}://{host}:{port}{path}"


def _has_dot_segments(path: str) -> bool:
    segments = path.lower().replace("%2e", ".").split("/")
    return "." in segments or ".." in segments or "%2f" in path.lower()


def under_base(url: str, base_url: str) -> bool:
    """`url` is on the origin of `base_url` and its path is the base path or below it: where a FHIR
    server's `next` link may lead with the token (FHIR R4 "Paging": the server chooses the link, the
    client decides whether to follow it). A link elsewhere on the same host (another tenant's base,
    an admin path) or with dot segments is not followed."""
    if origin(url) != origin(base_url):
        return False
    path = urlsplit(url).path
    if _has_dot_segments(path):
        return False
    base = urlsplit(base_url).path.rstrip("/")
    return path.rstrip("/") == base or path.startswith(base + "/")


@dataclass(frozen=True)
class FhirServerPolicy:
    """The allowlist of FHIR base URLs (CDS Hooks 2.0 leaves `fhirServer` to the client; the service
    decides which servers it will send a patient's access token to)."""

    servers: tuple[str, ...] = ()
    allow_loopback: bool = False
    allow_http_loopback: bool = False

    @classmethod
    def from_config(cls, config) -> "FhirServerPolicy":
        return cls(tuple(config.fhir_servers), config.fhir_allow_loopback, config.allow_http_loopback)

    def allows(self, base_url: str) -> bool:
        parts = urlsplit(base_url)
        if parts.query or parts.fragment or not transport_allowed(base_url, self.allow_http_loopback):
            return False
        if _has_dot_segments(parts.path):
            return False  # dot segments would walk out of an allowlisted base path
        if self.allow_loopback and is_loopback_host(parts.hostname or ""):
            return True
        candidate = normalise_base(base_url)
        for entry in self.servers:
            if entry.endswith("/*"):
                prefix = normalise_base(entry[:-2])
                if candidate == prefix or candidate.startswith(prefix + "/"):
                    return True
            elif candidate == normalise_base(entry):
                return True
        return False


def new_session() -> requests.Session:
    """A session that ignores proxy variables and .netrc: credentials never leave by a side door."""
    session = requests.Session()
    session.trust_env = False
    return session


def read_capped(response: requests.Response, max_bytes: int, remaining) -> bytes:
    """The body of a streamed response, at most `max_bytes`, read before `remaining()` hits zero.

    `remaining()` raises when the deadline has passed; reading in small pieces with `read1` lets a
    server that drips bytes be cut off at the deadline rather than at the end of a large read.
    """
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise OutboundError("too-large", "response larger than the configured limit")
    raw = response.raw
    body = bytearray()
    while True:
        remaining()
        # One socket read at most (each bounded by the request's read timeout, itself within the deadline).
        chunk = raw.read1(16384, decode_content=True)
        if not chunk:
            break
        body.extend(chunk)
        if len(body) > max_bytes:
            raise OutboundError("too-large", "response larger than the configured limit")
    return bytes(body)


def deadline_clock(deadline: float | None, per_request: float):
    """A `remaining()` for one request: seconds left of `per_request`, never past `deadline`."""
    start = time.monotonic()

    def remaining() -> float:
        now = time.monotonic()
        left = per_request - (now - start)
        if deadline is not None:
            left = min(left, deadline - now)
        if left <= 0:
            raise OutboundError("timeout", "the time allowed for the request passed")
        return left

    return remaining
