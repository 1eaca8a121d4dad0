"""A small FHIR R4 REST client for the searches the prefetch templates name.

FHIR R4 "RESTful API" (search, paging through `Bundle.link[relation=next]`). The bearer token from
`fhirAuthorization` (CDS Hooks 2.0, "Passing the Access Token to the CDS Service") is sent only to
the server the request named, and never to a `next` link that points anywhere else.
"""
from __future__ import annotations

import json
import time
from urllib.parse import urljoin, urlsplit

import requests

from .prefetch import resources_of

FHIR_JSON = "application/fhir+json"


class FhirError(Exception):
    """A search failed; `kind` says how (timeout, http, malformed, too-large, paging, network)."""

    def __init__(self, kind: str, message: str, status: int | None = None):
        super().__init__(message)
        self.kind = kind
        self.status = status


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


class FhirClient:
    """Reads and searches on one FHIR server, within a deadline shared by every call."""

    def __init__(
        self,
        base_url: str,
        access_token: str | None = None,
        *,
        timeout: float = 3.0,
        deadline: float | None = None,
        max_pages: int = 20,
        max_bytes: int = 20_000_000,
        page_size: int | None = None,
        session: requests.Session | None = None,
    ):
        self.base_url = base_url.rstrip("/") + "/"
        self._token = access_token
        self.timeout = timeout
        self.deadline = deadline
        self.max_pages = max_pages
        self.max_bytes = max_bytes
        self.page_size = page_size
        self._session = session or requests.Session()

    def _remaining(self) -> float:
        if self.deadline is None:
            return self.timeout
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise FhirError("timeout", "the deadline for FHIR access passed")
        return min(self.timeout, left)

    def _get(self, url: str) -> dict:
        headers = {"Accept": FHIR_JSON}
        if self._token and _origin(url) == _origin(self.base_url):
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            with self._session.get(url, headers=headers, timeout=self._remaining(), stream=True,
                                   allow_redirects=False) as response:
                if response.status_code != 200:
                    raise FhirError("http", f"FHIR server answered HTTP {response.status_code}",
                                    response.status_code)
                body = bytearray()
                for chunk in response.iter_content(65536):
                    body.extend(chunk)
                    if len(body) > self.max_bytes:
                        raise FhirError("too-large", "FHIR response larger than the configured limit")
                    self._remaining()
        except requests.Timeout as exc:
            raise FhirError("timeout", "FHIR server did not answer in time") from exc
        except requests.RequestException as exc:
            raise FhirError("network", f"FHIR server unreachable ({type(exc).__name__})") from exc
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise FhirError("malformed", "FHIR server returned malformed JSON") from exc
        if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
            raise FhirError("malformed", "FHIR server returned something that is not a FHIR resource")
        if data["resourceType"] == "OperationOutcome":
            raise FhirError("http", "FHIR server returned an OperationOutcome")
        return data

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
            if _origin(nxt) != _origin(self.base_url):
                raise FhirError("paging", "a next link pointed to another server; not followed")
            url = nxt
        raise FhirError("paging", f"more than {self.max_pages} pages of results")

    def get(self, query: str) -> list[dict]:
        """A read (`Type/id`) or a search (`Type?...`), as a list of resources."""
        if "?" in query or "/" not in query:
            return self.search(query)
        return [self.read(query)]

    def close(self) -> None:
        self._session.close()
