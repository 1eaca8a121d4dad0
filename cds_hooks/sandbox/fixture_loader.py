"""Put the fixture patients on a FHIR R4 server, or take them off again, idempotently.

FHIR R4 "RESTful API": every fixture resource has a stable id, so `PUT Type/id` (update as create,
http.html#upsert) creates it the first time and updates it after that; nothing is ever duplicated.
The fixture Bundles are transactions (http.html#transaction) and are sent as they are. A server that
refuses transactions (some public and read-mostly servers answer 400, 404, 405, 415, 422 or 501)
gets one PUT per resource instead, referenced resources first; a server that checks references on
write gets a second pass for anything the first pass could not write. Removal is the mirror image:
a transaction of DELETEs, or one DELETE per resource, referencing resources first. Resources shared
with fixtures that stay (the ordering surgeon) are kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import requests

from cds_hooks.errors import CdsError
from cds_hooks.sandbox.fixtures import FixturePatient

FHIR_JSON = "application/fhir+json"
MODES = ("auto", "transaction", "put")
# What a server that does not do transactions answers to a POST on its base.
_NO_TRANSACTION = {400, 404, 405, 415, 422, 501}


@dataclass
class Written:
    """What happened to one resource."""

    fixture: str
    method: str
    url: str
    status: int | None
    outcome: str  # created | updated | deleted | not-found | failed | planned
    detail: str | None = None


@dataclass
class Report:
    fixture: str
    how: str  # transaction | per-resource | dry-run
    rows: list[Written] = field(default_factory=list)
    note: str | None = None

    @property
    def ok(self) -> bool:
        return all(r.outcome not in ("failed",) for r in self.rows)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.outcome] = out.get(r.outcome, 0) + 1
        return out


class LoadError(CdsError):
    """The server could not be used at all (unreachable, or refused our credentials)."""

    code = "fixture-load"


def _key(resource: dict) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def _references(value, found: set[str]) -> set[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "reference" and isinstance(v, str):
                found.add(v)
            else:
                _references(v, found)
    elif isinstance(value, list):
        for item in value:
            _references(item, found)
    return found


def dependency_order(resources: list[dict]) -> list[dict]:
    """Referenced resources before the resources that reference them (Kahn's algorithm).

    Resources caught in a reference cycle keep their Bundle order at the end.
    """
    by_key = {_key(r): r for r in resources}
    needs = {k: {ref for ref in _references(r, set()) if ref in by_key and ref != k} for k, r in by_key.items()}
    ordered: list[str] = []
    done: set[str] = set()
    progress = True
    while progress:
        progress = False
        for k in by_key:
            if k not in done and needs[k] <= done:
                ordered.append(k)
                done.add(k)
                progress = True
    ordered.extend(k for k in by_key if k not in done)
    return [by_key[k] for k in ordered]


def _status_code(text: str | None) -> int | None:
    try:
        return int(str(text).split()[0])
    except (ValueError, IndexError):
        return None


def _outcome_text(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return (response.text or "").strip()[:200] or f"HTTP {response.status_code}"
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        for issue in body.get("issue") or []:
            text = issue.get("diagnostics") or (issue.get("details") or {}).get("text")
            if text:
                return str(text)[:200]
    return f"HTTP {response.status_code}"


class FixtureLoader:
    """Writes and removes fixture patients on one FHIR server."""

    def __init__(
        self, base_url: str, token: str | None = None, *, timeout: float = 60.0, session: requests.Session | None = None
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = session or requests.Session()
        self._headers = {"Accept": FHIR_JSON, "Content-Type": FHIR_JSON}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    # -------------------------------------------------------------- HTTP

    def _send(self, method: str, url: str, body: dict | None = None) -> requests.Response:
        try:
            response = self._session.request(
                method,
                url,
                headers=self._headers,
                timeout=self.timeout,
                data=json.dumps(body) if body is not None else None,
            )
        except requests.RequestException as exc:
            raise LoadError(f"cannot reach {self.base_url} ({type(exc).__name__})") from exc
        if response.status_code in (401, 403):
            raise LoadError(f"{self.base_url} refused the request (HTTP {response.status_code}): check --token")
        return response

    def _transaction(
        self, fixture: str, bundle: dict, method: str, resources: list[dict], outcome_2xx
    ) -> Report | None:
        """Send one transaction; None when the server does not do transactions."""
        response = self._send("POST", self.base_url, bundle)
        try:
            body = response.json()
        except ValueError:
            body = None
        answered = (
            isinstance(body, dict)
            and body.get("resourceType") == "Bundle"
            and body.get("type") == "transaction-response"
        )
        if response.status_code in _NO_TRANSACTION or (response.ok and not answered):
            return None
        report = Report(fixture, "transaction")
        if not response.ok:
            report.note = f"the server rejected the transaction: {_outcome_text(response)}"
            report.rows = [Written(fixture, method, _key(r), response.status_code, "failed") for r in resources]
            return report
        entries = body.get("entry") or []
        for resource, entry in zip(resources, entries):  # FHIR: responses in request order
            status = _status_code((entry.get("response") or {}).get("status"))
            report.rows.append(Written(fixture, method, _key(resource), status, outcome_2xx(status)))
        return report

    def _one_by_one(self, fixture: str, method: str, resources: list[dict], outcome_2xx) -> Report:
        report = Report(fixture, "per-resource")
        pending = list(resources)
        results: dict[str, Written] = {}
        for _ in range(2):  # a second pass for servers that check references on write
            failed = []
            for resource in pending:
                url = f"{self.base_url}/{_key(resource)}"
                response = self._send(method, url, resource if method == "PUT" else None)
                if response.ok or (method == "DELETE" and response.status_code in (404, 410)):
                    status = response.status_code
                    results[_key(resource)] = Written(fixture, method, _key(resource), status, outcome_2xx(status))
                else:
                    results[_key(resource)] = Written(
                        fixture, method, _key(resource), response.status_code, "failed", _outcome_text(response)
                    )
                    failed.append(resource)
            if not failed or len(failed) == len(pending):
                break
            pending = failed
        report.rows = [results[_key(r)] for r in resources]
        return report

    # -------------------------------------------------------------- load / remove

    def load(self, fixture: FixturePatient, mode: str = "auto", dry_run: bool = False) -> Report:
        """PUT every resource of one fixture patient."""
        resources = dependency_order(fixture.resources)
        if dry_run:
            return Report(
                fixture.name, "dry-run", [Written(fixture.name, "PUT", _key(r), None, "planned") for r in resources]
            )

        def outcome(status):
            return {201: "created", 200: "updated"}.get(status, "updated" if status and status < 300 else "failed")

        return self._write(
            fixture.name,
            "PUT",
            fixture.bundle,
            fixture.resources,
            resources,
            outcome,
            mode,
            "the server refused the transaction; wrote one resource at a time",
        )

    def remove(
        self, fixture: FixturePatient, keep: set[str] | None = None, mode: str = "auto", dry_run: bool = False
    ) -> Report:
        """DELETE every resource of one fixture patient except those in `keep` (`Type/id`)."""
        keep = keep or set()
        resources = [r for r in reversed(dependency_order(fixture.resources)) if _key(r) not in keep]
        if dry_run:
            return Report(
                fixture.name, "dry-run", [Written(fixture.name, "DELETE", _key(r), None, "planned") for r in resources]
            )

        def outcome(status):
            if status in (404, 410):
                return "not-found"
            return "deleted" if status and status < 300 else "failed"

        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"request": {"method": "DELETE", "url": _key(r)}} for r in resources],
        }
        return self._write(
            fixture.name,
            "DELETE",
            bundle,
            resources,
            resources,
            outcome,
            mode,
            "the server refused the transaction; deleted one resource at a time",
        )

    def _write(
        self,
        name: str,
        method: str,
        bundle: dict,
        in_bundle: list[dict],
        in_order: list[dict],
        outcome,
        mode: str,
        fallback_note: str,
    ) -> Report:
        """The transaction `bundle` (modes auto and transaction), else one request per resource of
        `in_order` (mode put, or auto when the server refuses the transaction)."""
        if mode in ("auto", "transaction"):
            report = self._transaction(name, bundle, method, in_bundle, outcome)
            if report is not None:
                return report
            if mode == "transaction":
                return Report(
                    name,
                    "transaction",
                    [Written(name, method, _key(r), None, "failed") for r in in_order],
                    note="the server does not accept transactions; try --mode put",
                )
        report = self._one_by_one(name, method, in_order, outcome)
        if mode == "auto":
            report.note = fallback_note
        return report


def shared_keys(removing: list[FixturePatient], staying: list[FixturePatient]) -> set[str]:
    """Resources of the fixtures being removed that fixtures which stay also hold."""
    stay = {_key(r) for f in staying for r in f.resources}
    return {_key(r) for f in removing for r in f.resources if _key(r) in stay}
