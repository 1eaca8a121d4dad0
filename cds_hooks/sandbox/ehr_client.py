"""The EHR's side of a CDS Hooks call: discovery, prefetch, the order-sign request, the call itself.

CDS Hooks 2.0:
- "Discovery": `GET {base}/cds-services` lists the services, their hooks and prefetch templates.
- "Prefetch Template": the client fills the tokens from the context and runs each read or search
  against its FHIR server. A read that finds nothing is `null`; a search is a searchset Bundle (all
  pages, merged here); a FHIR server error is sent as the server's OperationOutcome; a key the
  client cannot satisfy (a token it cannot fill, a server it cannot reach) is left out.
- "Calling a CDS Service": `POST {base}/cds-services/{id}` with `hook`, `hookInstance`,
  `fhirServer`, `fhirAuthorization`, `context`, `prefetch`.
- "Trusting CDS Clients": every call carries a JWT whose `aud` is the URL called (sandbox/client_jwt.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
import requests

from cds_hooks.errors import CdsError
from cds_hooks.hooks.prefetch import TemplateError, render
from cds_hooks.pipeline.fhir_client import FhirClient, FhirError
from cds_hooks.sandbox.client_jwt import TokenIssuer

JSON = "application/json"


class ClientError(CdsError):
    """Something the client could not do (unreachable service, bad discovery document)."""

    code = "client-error"


@dataclass
class Exchange:
    """One HTTP call to the service, as the client saw it."""

    url: str
    status: int
    body: object  # parsed JSON, or the text when it is not JSON

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def outcome(self) -> str:
        """ "HTTP 401: <the service's reason>" (its `message`, else the start of a text body)."""
        reason = self.body.get("message") or self.body.get("error") if isinstance(self.body, dict) else self.body
        reason = " ".join(str(reason or "").split())[:300]
        return f"HTTP {self.status}" + (f": {reason}" if reason else "")


@dataclass
class PrefetchOutcome:
    prefetch: dict = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # key -> what happened, for the user


def services_base(url: str) -> str:
    """`http://host:8080`, `http://host:8080/`, `http://host:8080/cds-services` -> the discovery URL."""
    url = url.rstrip("/")
    return url if url.endswith("/cds-services") else f"{url}/cds-services"


class CdsClient:
    """Calls one CDS service provider the way an EHR does, signing every call when given an issuer."""

    def __init__(
        self,
        base_url: str,
        issuer: TokenIssuer | None = None,
        *,
        timeout: float = 30.0,
        session: requests.Session | None = None,
    ):
        self.discovery_url = services_base(base_url)
        self.issuer = issuer
        self.timeout = timeout
        self._session = session or requests.Session()

    def service_url(self, service_id: str) -> str:
        return f"{self.discovery_url}/{service_id}"

    def _headers(self, url: str) -> dict[str, str]:
        headers = {"Accept": JSON}
        if self.issuer is not None:
            headers.update(self.issuer.headers_for(url))  # a fresh JWT per call, aud = this URL
        return headers

    def _call(self, method: str, url: str, body: dict | None = None) -> Exchange:
        try:
            response = self._session.request(method, url, json=body, headers=self._headers(url), timeout=self.timeout)
        except requests.RequestException as exc:
            raise ClientError(f"cannot reach {url} ({type(exc).__name__})") from exc
        try:
            parsed = response.json()
        except ValueError:
            parsed = response.text
        return Exchange(url, response.status_code, parsed)

    def discover(self) -> dict:
        exchange = self._call("GET", self.discovery_url)
        body = exchange.body
        if not exchange.ok or not isinstance(body, dict) or not isinstance(body.get("services"), list):
            raise ClientError(
                f"discovery at {self.discovery_url} answered {exchange.outcome()} without a services list"
                if exchange.ok
                else f"discovery at {self.discovery_url} answered {exchange.outcome()}"
            )
        return body

    def call(self, service_id: str, request: dict) -> Exchange:
        return self._call("POST", self.service_url(service_id), request)


def pick_service(discovery: dict, service_id: str | None = None, hook: str = "order-sign") -> dict:
    """The discovery entry to call: the one named, or the only one answering `hook`."""
    services = [s for s in discovery.get("services", []) if isinstance(s, dict)]
    if service_id:
        for s in services:
            if s.get("id") == service_id:
                return s
        raise ClientError(
            f"discovery lists no service {service_id!r} "
            f"(it lists {', '.join(str(s.get('id')) for s in services) or 'none'})"
        )
    matching = [s for s in services if s.get("hook") == hook]
    if len(matching) != 1:
        names = ", ".join(str(s.get("id")) for s in matching) or "none"
        raise ClientError(f"{len(matching)} services answer {hook} ({names}); name one with --service")
    return matching[0]


def _searchset(resources: list[dict]) -> dict:
    bundle: dict = {"resourceType": "Bundle", "type": "searchset", "total": len(resources)}
    if resources:  # FHIR forbids empty arrays
        bundle["entry"] = [{"resource": r, "search": {"mode": "match"}} for r in resources]
    return bundle


def _outcome(message: str) -> dict:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "exception", "diagnostics": message}],
    }


def resolve_prefetch(
    templates: dict[str, str],
    context: dict,
    fhir_server: str,
    *,
    access_token: str | None = None,
    user_id: str | None = None,
    timeout: float = 10.0,
    max_pages: int = 50,
) -> PrefetchOutcome:
    """Run every prefetch template against `fhir_server` as the CDS client."""
    out = PrefetchOutcome()
    client = FhirClient(fhir_server, access_token, timeout=timeout, max_pages=max_pages, page_size=None)
    try:
        for key, template in templates.items():
            try:
                query = render(template, context, user_id)
            except TemplateError as exc:
                out.notes[key] = f"left out: {exc}"
                continue
            is_read = "?" not in query and "/" in query
            try:
                if is_read:
                    out.prefetch[key] = client.read(query)
                    out.notes[key] = "read"
                else:
                    found = client.search(query)
                    out.prefetch[key] = _searchset(found)
                    out.notes[key] = f"{len(found)} found"
            except FhirError as exc:
                if is_read and exc.status in (404, 410):
                    out.prefetch[key] = None  # CDS Hooks 2.0: no data for a read is null
                    out.notes[key] = "not found (null)"
                elif exc.kind in ("http", "malformed", "too-large", "paging"):
                    out.prefetch[key] = _outcome(f"prefetch failed: {exc}")
                    out.notes[key] = f"failed: {exc} (sent as OperationOutcome)"
                else:  # timeout or network: the spec says leave the key out
                    out.notes[key] = f"left out: {exc}"
    finally:
        client.close()
    return out


def order_sign_request(
    *,
    patient_id: str,
    user_id: str,
    draft_orders: dict,
    fhir_server: str | None = None,
    access_token: str | None = None,
    service_id: str | None = None,
    encounter_id: str | None = None,
    prefetch: dict | None = None,
    hook_instance: str | None = None,
) -> dict:
    """An `order-sign` request body (CDS Hooks 2.0 "HTTP Request"; hook order-sign v1.x context)."""
    context: dict = {"userId": user_id, "patientId": patient_id}
    if encounter_id:
        context["encounterId"] = encounter_id
    context["draftOrders"] = draft_orders
    request: dict = {"hook": "order-sign", "hookInstance": hook_instance or str(uuid.uuid4())}
    if fhir_server:
        request["fhirServer"] = fhir_server
    if fhir_server and access_token:
        auth = {"access_token": access_token, "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read"}
        if service_id:
            auth["subject"] = service_id
        request["fhirAuthorization"] = auth
    request["context"] = context
    if prefetch is not None:
        request["prefetch"] = prefetch
    return request
