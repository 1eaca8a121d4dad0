"""A small FHIR R4 REST client for the searches the prefetch templates name.

FHIR R4 "RESTful API" (search, paging through `Bundle.link[relation=next]`). The bearer token from
`fhirAuthorization` (CDS Hooks 2.0, "Passing the Access Token to the CDS Service") is sent only to
the server the request named: no request goes to any other origin (a `next` link elsewhere is not
followed, redirects are not followed). Every request shares one deadline; 429/502/503/504 are
retried a bounded number of times with backoff inside it; pages and bytes are capped.
"""

from __future__ import annotations

import email.utils
import json
import random
import threading
import time
from urllib.parse import urljoin

import requests

from cds_hooks.auth.outbound import OutboundError, deadline_clock, new_session, origin, read_capped, under_base
from cds_hooks.config import setting_default
from cds_hooks.errors import CdsError
from cds_hooks.hooks.prefetch import resources_of

FHIR_JSON = "application/fhir+json"
RETRY_STATUSES = {429, 502, 503, 504}
REDIRECTS = range(300, 400)


class FhirError(CdsError):
    """A search failed; `kind` says how (timeout, http, redirect, malformed, too-large, paging,
    network, foreign)."""

    code = "fhir-error"

    def __init__(self, kind: str, message: str, status: int | None = None):
        super().__init__(message)
        self.kind = kind
        self.status = status


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class FhirClient:
    """Reads and searches on one FHIR server, within a deadline shared by every call."""

    def __init__(
        self,
        base_url: str,
        access_token: str | None = None,
        *,
        timeout: float = setting_default("fhir_timeout"),
        deadline: float | None = None,
        max_pages: int = setting_default("fhir_max_pages"),
        max_bytes: int = setting_default("fhir_max_bytes"),
        max_total_bytes: int | None = None,
        page_size: int | None = None,
        retries: int = setting_default("fhir_retries"),
        backoff: float = setting_default("fhir_retry_backoff"),
        session: requests.Session | None = None,
    ):
        self.base_url = base_url.rstrip("/") + "/"
        self._origin = origin(self.base_url)
        self._token = access_token
        self.timeout = timeout
        self.deadline = deadline
        self.max_pages = max_pages
        self.max_bytes = max_bytes
        self.max_total_bytes = max_total_bytes
        self.page_size = page_size
        self.retries = retries
        self.backoff = backoff
        self._session = session or new_session()
        self._bytes_read = 0
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:  # never print the token
        return f"FhirClient({self.base_url!r})"

    def _left(self) -> float:
        if self.deadline is None:
            return float("inf")
        return self.deadline - time.monotonic()

    def _count_bytes(self, n: int) -> None:
        with self._lock:
            self._bytes_read += n
            if self.max_total_bytes is not None and self._bytes_read > self.max_total_bytes:
                raise FhirError("too-large", "FHIR responses for this call exceeded the configured total")

    def _get(self, url: str) -> dict:
        if origin(url) != self._origin:
            # Defence in depth: nothing, with or without the token, goes to another origin.
            raise FhirError("foreign", "a FHIR URL pointed to another server; not requested")
        attempt = 0
        while True:
            status, retry_after, body = self._get_once(url)
            if status in RETRY_STATUSES and attempt < self.retries:
                delay = self.backoff * (2**attempt) * (1 + random.random() * 0.25)
                if retry_after is not None:
                    delay = max(delay, retry_after)
                if delay < self._left() - 0.05:
                    time.sleep(delay)
                    attempt += 1
                    continue
            break
        if status in REDIRECTS:
            raise FhirError("redirect", f"FHIR server answered HTTP {status} (redirects are not followed)", status)
        if status != 200:
            raise FhirError("http", f"FHIR server answered HTTP {status}", status)
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise FhirError("malformed", "FHIR server returned malformed JSON") from exc
        if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
            raise FhirError("malformed", "FHIR server returned something that is not a FHIR resource")
        if data["resourceType"] == "OperationOutcome":
            raise FhirError("http", "FHIR server returned an OperationOutcome")
        return data

    def _get_once(self, url: str) -> tuple[int, float | None, bytes]:
        if self._closed:
            raise FhirError("timeout", "the deadline for FHIR access passed")
        remaining = deadline_clock(self.deadline, self.timeout)
        headers = {"Accept": FHIR_JSON}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            budget = remaining()
            with self._session.get(
                url, headers=headers, timeout=(min(budget, self.timeout), budget), stream=True, allow_redirects=False
            ) as response:
                if response.status_code != 200:
                    return response.status_code, _retry_after(response.headers.get("Retry-After")), b""
                body = read_capped(response, self.max_bytes, remaining)
        except OutboundError as exc:
            kind = "timeout" if exc.kind == "timeout" else exc.kind
            raise FhirError(kind, f"FHIR response not read: {exc}") from None
        except requests.Timeout:
            raise FhirError("timeout", "FHIR server did not answer in time") from None
        except requests.RequestException as exc:
            raise FhirError("network", f"FHIR server unreachable ({type(exc).__name__})") from None
        except OSError as exc:  # a socket closed under us at the deadline
            raise FhirError("network", f"FHIR connection failed ({type(exc).__name__})") from None
        self._count_bytes(len(body))
        return 200, None, body

    def read(self, path: str) -> dict:
        """GET a relative path (a read such as `Patient/123`)."""
        return self._get(urljoin(self.base_url, path))

    def search(self, query: str) -> list[dict]:
        """Run a relative search and follow `next` links on the same server, up to `max_pages`."""
        url = urljoin(self.base_url, query)
        if self.page_size and "_count=" not in query:
            url += ("&" if "?" in url else "?") + f"_count={self.page_size}"
        resources: list[dict] = []
        for _ in range(self.max_pages):
            bundle = self._get(url)
            if bundle["resourceType"] != "Bundle":
                return [bundle]
            resources.extend(resources_of(bundle))
            links = bundle.get("link") if isinstance(bundle.get("link"), list) else []
            nxt = next((l.get("url") for l in links if isinstance(l, dict) and l.get("relation") == "next"), None)
            if not isinstance(nxt, str) or not nxt:
                return resources
            nxt = urljoin(url, nxt)
            if not under_base(nxt, self.base_url):
                raise FhirError("paging", "a next link pointed outside the FHIR server's base; not followed")
            url = nxt
        raise FhirError("paging", f"more than {self.max_pages} pages of results")

    def get(self, query: str) -> list[dict]:
        """A read (`Type/id`) or a search (`Type?...`), as a list of resources."""
        if "?" in query or "/" not in query:
            return self.search(query)
        return [self.read(query)]

    def close(self) -> None:
        self._closed = True
        self._session.close()
