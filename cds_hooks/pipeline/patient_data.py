"""The patient's record for one hook call: prefetch first, then parallel fetches for the rest.

CDS Hooks 2.0, "Providing FHIR Resources to a CDS Service": prefetch when the client sent it,
otherwise the service queries `fhirServer` with `fhirAuthorization`. A key that fails makes the
criteria depending on its resource type `unavailable`; when every key fails the call answers 412.
A Patient read that comes back `null` (CDS Hooks 2.0, "Prefetch Data": no data), not found
(OperationOutcome `not-found`, HTTP 404 or 410) or with another patient means the patient is
unknown: the record cannot be read at all (`PatientData.patient_unknown`).

The service fetches only from a `fhirServer` on its allowlist (outbound.FhirServerPolicy); a call
that would need to fetch from any other server is refused with 403 before anything is sent. A call
whose prefetch covers every key never fetches, so its `fhirServer` is not checked. All fetches end
by one deadline: sources still running then are `unavailable`, and the answer does not wait.
"""

from __future__ import annotations

import contextvars
import logging
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from cds_hooks.auth.outbound import FhirServerPolicy
from cds_hooks.config import Config
from cds_hooks.errors import FhirServerNotAllowed
from cds_hooks.hooks.hook_request import HookRequest
from cds_hooks.hooks.prefetch import (
    FAILED,
    FETCHED,
    NO_DATA,
    SourceResult,
    TemplateError,
    read_prefetch,
    render,
    resource_type_of,
    resources_of,
)
from cds_hooks.pipeline.fhir_client import FhirClient, FhirError

log = logging.getLogger("cds_hooks.data")

_SUBJECT_FIELDS = ("subject", "patient", "beneficiary")


@dataclass
class FetchSettings:
    """How the service reads the EHR's FHIR server: Config's `fhir_*` settings (defined there, once)."""

    timeout: float
    deadline: float
    max_pages: int
    max_bytes: int
    max_total_bytes: int | None
    page_size: int | None
    retries: int
    backoff: float
    policy: FhirServerPolicy

    @classmethod
    def from_config(cls, config: Config) -> "FetchSettings":
        return cls(
            timeout=config.fhir_timeout,
            deadline=config.fhir_deadline,
            max_pages=config.fhir_max_pages,
            max_bytes=config.fhir_max_bytes,
            max_total_bytes=config.fhir_max_total_bytes,
            page_size=config.fhir_page_size,
            retries=config.fhir_retries,
            backoff=config.fhir_retry_backoff,
            policy=FhirServerPolicy.from_config(config),
        )


@dataclass
class PatientData:
    patient_id: str
    sources: dict[str, SourceResult]
    resources: list[dict] = field(default_factory=list)
    dropped_foreign: int = 0
    # Resources the service derived (e.g. findings read from report text); also in `resources`.
    derived: list[dict] = field(default_factory=list)
    optional: frozenset[str] = frozenset()  # keys of supplementary evidence (see gather)

    def mark_unread(self, key: str, resource_type: str, reason: str) -> None:
        """Record a part of the record that was found but could not be read (e.g. a note's attachment):
        it counts as a failed source, so no verdict rests on it having said nothing."""
        self.sources[key] = SourceResult(key, resource_type, FAILED, reason=reason)

    def add_derived(self, items: list[dict]) -> None:
        """Add derived resources to what the criteria see; they are never sent to the EHR."""
        self.derived.extend(items)
        self.resources.extend(items)

    @property
    def failed_types(self) -> list[str]:
        return sorted({s.resource_type for s in self.sources.values() if s.status == FAILED})

    @property
    def failed_reasons(self) -> dict[str, str]:
        """Why each failed resource type could not be read (the first reason given for it)."""
        out: dict[str, str] = {}
        for s in self.failed_sources:
            out.setdefault(s.resource_type, s.reason or "no answer")
        return out

    @property
    def failed_sources(self) -> list[SourceResult]:
        return [s for s in self.sources.values() if s.status == FAILED]

    @property
    def patient_unknown(self) -> str | None:
        """Why the patient's own record does not exist here, or None when it does (or is not asked for).

        `no-data`: the Patient read came back null or empty; `not-found`: the client or the server
        said there is no such patient; `other-patient`: the Patient returned is someone else.
        A Patient read that failed for another reason (timeout, 503, forbidden) is a failed source.
        """
        for s in self.sources.values():
            if s.resource_type != "Patient":
                continue
            if s.status == FAILED:
                if s.not_found:
                    return "not-found"
                continue
            # Lenient about shape, as prefetch is: a read answered with a Bundle still holds the Patient.
            found = [x for r in s.resources for x in (resources_of(r) if r.get("resourceType") == "Bundle" else [r])]
            patients = [r for r in found if r.get("resourceType") == "Patient"]
            if not patients:
                return "no-data"
            if not any(r.get("id") in (None, self.patient_id) for r in patients):
                return "other-patient"
        return None

    @property
    def nothing_obtained(self) -> bool:
        needed = [s for k, s in self.sources.items() if k not in self.optional]
        return bool(needed) and all(s.status == FAILED for s in needed)

    @property
    def origin(self) -> str:
        """`prefetch`, `fetched` or `mixed`: where the data came from, for the audit trail."""
        kinds = {s.status for s in self.sources.values() if s.status != FAILED and s.status != NO_DATA}
        if kinds == {FETCHED}:
            return "fetched"
        if FETCHED in kinds:
            return "mixed"
        return "prefetch"

    def of_type(self, resource_type: str) -> list[dict]:
        return [r for r in self.resources if r.get("resourceType") == resource_type]

    def index(self) -> dict[str, dict]:
        return {f"{r['resourceType']}/{r.get('id')}": r for r in self.resources}


def _belongs_to_other_patient(resource: dict, patient_id: str) -> bool:
    if resource.get("resourceType") == "Patient":
        return resource.get("id") not in (None, patient_id)
    for name in _SUBJECT_FIELDS:
        ref = resource.get(name)
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            target = ref["reference"].rstrip("/")
            if "Patient/" in target:
                return target.rsplit("Patient/", 1)[1].split("/")[0] != patient_id
    return False


def _fetch_one(client: FhirClient, key: str, query: str, rtype: str) -> SourceResult:
    try:
        resources = client.get(query)
    except FhirError as exc:
        log.warning("fetch of %s failed: %s", key, exc.kind)
        return SourceResult(key, rtype, FAILED, reason=str(exc), not_found=exc.status in (404, 410))
    except Exception as exc:  # noqa: BLE001 - one broken source must not fail the call
        log.error("fetch of %s failed: %s", key, type(exc).__name__)
        return SourceResult(key, rtype, FAILED, reason="the FHIR response could not be processed")
    return SourceResult(key, rtype, FETCHED, resources)


def gather(
    request: HookRequest,
    templates: dict[str, str],
    settings: FetchSettings,
    client: FhirClient | None = None,
    started: float | None = None,
    optional=(),
) -> PatientData:
    """Collect every prefetch key's data: from the request, or fetched in parallel.

    `started` (time.monotonic() when the hook call began) anchors the deadline; now by default.
    `optional` keys hold supplementary evidence (completed questionnaires): one the client did not
    prefetch is fetched only when the service fetches anyway, and one that cannot be obtained is
    "no data", never a failed source (the criteria then read the coded record alone).
    """
    deadline = (started if started is not None else time.monotonic()) + settings.deadline
    results, missing = read_prefetch(request.prefetch, templates)
    optional = set(optional)
    if all(key in optional for key in missing):
        for key in missing:
            results[key] = SourceResult(key, resource_type_of(templates[key]), NO_DATA, reason="not prefetched")
        missing = []
    context = request.raw.get("context") if isinstance(request.raw.get("context"), dict) else {}
    queries: dict[str, str] = {}
    for key in missing:
        rtype = resource_type_of(templates[key])
        try:
            queries[key] = render(templates[key], context, request.user_id)
        except TemplateError as exc:
            results[key] = SourceResult(key, rtype, FAILED, reason=str(exc))
    if queries and not request.fhir_server:
        for key in queries:
            results[key] = SourceResult(
                key,
                resource_type_of(templates[key]),
                FAILED,
                reason="not prefetched and no fhirServer to fetch it from",
            )
        queries = {}
    if queries and client is None and not settings.policy.allows(request.fhir_server):
        raise FhirServerNotAllowed(
            "fhirServer is not on this service's list of allowed FHIR servers, and the "
            "request's prefetch does not cover everything the service needs; nothing was fetched"
        )
    if queries:
        own_client = client is None
        if client is None:
            token = request.fhir_authorization.access_token if request.fhir_authorization else None
            client = FhirClient(
                request.fhir_server,
                token,
                timeout=settings.timeout,
                deadline=deadline,
                max_pages=settings.max_pages,
                max_bytes=settings.max_bytes,
                max_total_bytes=settings.max_total_bytes,
                page_size=settings.page_size,
                retries=settings.retries,
                backoff=settings.backoff,
            )
        pool = ThreadPoolExecutor(max_workers=len(queries), thread_name_prefix="fhir-fetch")
        try:
            futures = {
                key: pool.submit(
                    contextvars.copy_context().run, _fetch_one, client, key, q, resource_type_of(templates[key])
                )
                for key, q in queries.items()
            }
            # The deadline is kept even if a socket misbehaves: whatever is unfinished then is given up.
            wait(futures.values(), timeout=max(0.0, deadline - time.monotonic()) + 0.05)
            for key, fut in futures.items():
                if fut.done():
                    results[key] = fut.result()
                else:
                    log.warning("fetch of %s failed: deadline", key)
                    results[key] = SourceResult(
                        key,
                        resource_type_of(templates[key]),
                        FAILED,
                        reason="the FHIR server did not answer before the deadline",
                    )
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            if own_client:
                client.close()

    for key in optional & set(results):
        if results[key].status == FAILED:
            log.warning("optional source %s not obtained", key)
            results[key] = SourceResult(key, results[key].resource_type, NO_DATA, reason=results[key].reason)
    seen: set[tuple[str, str]] = set()
    resources: list[dict] = []
    dropped = 0
    for key in templates:
        for r in results[key].resources:
            ident = (r.get("resourceType"), str(r.get("id")))
            if r.get("id") is not None and ident in seen:
                continue
            if _belongs_to_other_patient(r, request.patient_id):
                dropped += 1
                continue
            seen.add(ident)
            resources.append(r)
    if dropped:
        log.warning("dropped %d resources that belong to another patient", dropped)
    ordered = {k: results[k] for k in templates}
    return PatientData(request.patient_id, ordered, resources, dropped, optional=frozenset(optional))
