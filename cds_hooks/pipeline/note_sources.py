"""Clinical-note attachments given by URL, fetched from the call's own FHIR server.

FHIR R4 Attachment.url: a note's text may sit in a Binary resource the DocumentReference points at.
CDS Hooks 2.0 ("Passing the Access Token to the CDS Service"): the `fhirAuthorization` token is for
`fhirServer` only. So an attachment is fetched only when

- `fhirServer` is on the service's allowlist (auth/outbound.py's FhirServerPolicy),
- its URL, resolved against `fhirServer`, is on the same origin and names a FHIR read of a Binary
  under that base (`Binary/<id>`): never another origin, never another kind of URL,
- and it is read through pipeline/fhir_client.py (no redirects, bytes capped, the call's FHIR deadline,
  counted from the start of the call like every other fetch).

At most MAX_FETCHES attachments are fetched per call, one after the other; what is not fetched by the
deadline is not read. Nothing is logged that names the patient, the note or the URL.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import time
from urllib.parse import urljoin

from cds_hooks.auth.outbound import origin
from cds_hooks.hooks.hook_request import HookRequest
from cds_hooks.pipeline.fhir_client import FhirClient, FhirError
from cds_hooks.pipeline.patient_data import FetchSettings
from cds_hooks.spine.note_findings import MAX_ATTACHMENT_BYTES, attachment_urls, decode

log = logging.getLogger("cds_hooks.data")

MAX_FETCHES = 20
_BINARY_READ = re.compile(r"^Binary/[A-Za-z0-9\-.]{1,64}$")


def binary_path(base_url: str, url: str) -> str | None:
    """`Binary/<id>` when `url` (absolute or relative) is a Binary read on `base_url`'s server, else None."""
    base = base_url.rstrip("/") + "/"
    resolved = urljoin(base, url)
    if origin(resolved) != origin(base) or not resolved.startswith(base) or "?" in resolved or "#" in resolved:
        return None
    rest = resolved[len(base) :]
    return rest if _BINARY_READ.match(rest) else None


def fetch_note_attachments(
    request: HookRequest, docs: list[dict], settings: FetchSettings, started: float, client: FhirClient | None = None
) -> dict[tuple[str, int], tuple[str, str]]:
    """(DocumentReference id, content index) -> (text, content type) for the URL attachments fetched."""
    wanted = attachment_urls(docs)
    if not wanted:
        return {}
    if not request.fhir_server or (client is None and not settings.policy.allows(request.fhir_server)):
        log.warning("%d note attachments given by URL not read: no allowed fhirServer", len(wanted))
        return {}
    deadline = started + settings.deadline
    own_client = client is None
    if client is None:
        token = request.fhir_authorization.access_token if request.fhir_authorization else None
        client = FhirClient(
            request.fhir_server,
            token,
            timeout=settings.timeout,
            deadline=deadline,
            max_pages=1,
            max_bytes=min(settings.max_bytes, 2 * MAX_ATTACHMENT_BYTES),
            max_total_bytes=settings.max_total_bytes,
            retries=settings.retries,
            backoff=settings.backoff,
        )
    out: dict[tuple[str, int], tuple[str, str]] = {}
    skipped = 0
    try:
        for doc_id, index, url in wanted[:MAX_FETCHES]:
            path = binary_path(request.fhir_server, url)
            if path is None or time.monotonic() >= deadline:
                skipped += 1
                continue
            try:
                binary = client.read(path)
            except FhirError as exc:
                log.warning("a note attachment was not fetched: %s", exc.kind)
                continue
            text = _binary_text(binary)
            if text is not None:
                out[(doc_id, index)] = text
    finally:
        if own_client:
            client.close()
    skipped += max(0, len(wanted) - MAX_FETCHES)
    if skipped:
        log.warning(
            "%d note attachments not fetched (another server, not a Binary read, over the count or the deadline)",
            skipped,
        )
    return out


def _binary_text(binary: dict) -> tuple[str, str] | None:
    """The text of a FHIR R4 Binary (base64 `data`, `contentType`) when it is text."""
    if binary.get("resourceType") != "Binary" or not isinstance(binary.get("data"), str):
        return None
    content_type = binary.get("contentType") if isinstance(binary.get("contentType"), str) else "text/plain"
    if content_type.split(";")[0].strip().lower() not in ("text/plain", "text/html", "application/xhtml+xml"):
        return None
    try:
        raw = base64.b64decode(binary["data"], validate=False)
    except (binascii.Error, ValueError):
        return None
    if len(raw) > MAX_ATTACHMENT_BYTES:
        return None
    return decode(raw, content_type), content_type
