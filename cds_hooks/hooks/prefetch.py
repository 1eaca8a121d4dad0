"""Prefetch templates: render them, and read what the CDS client sent for them.

CDS Hooks 2.0, "Prefetch Template" and "Prefetch tokens": a template is a FHIR read or search
relative to `fhirServer`, with `{{context.*}}` and `{{userPractitionerId}}`-style tokens. What the
client sends under each key means (CDS Hooks 2.0, "Prefetch Data"):

- key absent: the client did not prefetch it; the service fetches it itself;
- `null`: the client found no data;
- an OperationOutcome: the client failed to prefetch it;
- a Bundle (any type, even without one) or a single resource: the data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote

from cds_hooks.errors import CdsError

_TOKEN = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")

PREFETCH = "prefetch"
FETCHED = "fetched"
FAILED = "failed"
NO_DATA = "no-data"


class TemplateError(CdsError, ValueError):
    """A template names a token the request cannot fill."""

    code = "prefetch-template"


@dataclass
class SourceResult:
    """The outcome for one prefetch key, whether it came from the client or from a fetch."""

    key: str
    resource_type: str
    status: str  # PREFETCH | FETCHED | FAILED | NO_DATA
    resources: list[dict] = field(default_factory=list)
    reason: str | None = None
    # The client or the server said the resource does not exist (OperationOutcome not-found, HTTP 404/410).
    not_found: bool = False

    @property
    def ok(self) -> bool:
        return self.status != FAILED


def resource_type_of(template: str) -> str:
    """`Condition?patient=..` -> `Condition`; `Patient/{{context.patientId}}` -> `Patient`."""
    return re.split(r"[/?]", template, maxsplit=1)[0]


def render(template: str, context: dict, user_id: str | None = None) -> str:
    """Fill a template's tokens from the hook context (values are URL-encoded)."""
    user_tokens = {}
    if user_id and "/" in user_id:
        kind, _, ident = user_id.partition("/")
        user_tokens[f"user{kind}Id"] = ident

    def fill(match: re.Match) -> str:
        name = match.group(1)
        if name.startswith("context."):
            value = context.get(name[len("context.") :])
        else:
            value = user_tokens.get(name)
        if not isinstance(value, str) or not value:
            raise TemplateError(f"prefetch token {{{{{name}}}}} has no value in this request")
        return quote(value, safe="")

    return _TOKEN.sub(fill, template)


def resources_of(value) -> list[dict]:
    """The resources a prefetch value or search result holds, lenient about Bundle shape."""
    if not isinstance(value, dict):
        return []
    if value.get("resourceType") == "Bundle":
        out = []
        entries = value.get("entry") if isinstance(value.get("entry"), list) else []
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            resource = entry.get("resource")
            search = entry.get("search") if isinstance(entry.get("search"), dict) else {}
            if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
                continue
            # Search-time warnings travel as OperationOutcome entries with mode "outcome".
            if resource["resourceType"] == "OperationOutcome" or search.get("mode") == "outcome":
                continue
            out.append(resource)
        return out
    if isinstance(value.get("resourceType"), str) and value["resourceType"] != "OperationOutcome":
        return [value]
    return []


def _outcome_text(outcome: dict) -> str:
    issues = outcome.get("issue") if isinstance(outcome.get("issue"), list) else []
    for issue in issues:
        if isinstance(issue, dict):
            details = issue.get("details") if isinstance(issue.get("details"), dict) else {}
            text = issue.get("diagnostics") or details.get("text") or issue.get("code")
            if isinstance(text, str):
                return text[:200]
    return "the client reported an error"


def _says_not_found(outcome: dict) -> bool:
    """An OperationOutcome whose issue code is `not-found` or `deleted` (FHIR R4 IssueType)."""
    issues = outcome.get("issue") if isinstance(outcome.get("issue"), list) else []
    return any(isinstance(i, dict) and i.get("code") in ("not-found", "deleted") for i in issues)


def read_prefetch(prefetch: dict | None, templates: dict[str, str]) -> tuple[dict[str, SourceResult], list[str]]:
    """Split the client's prefetch into results per key, and the keys the service must fetch.

    Keys the client sent that the service did not ask for are ignored.
    """
    results: dict[str, SourceResult] = {}
    missing: list[str] = []
    prefetch = prefetch if isinstance(prefetch, dict) else {}
    for key, template in templates.items():
        rtype = resource_type_of(template)
        if key not in prefetch:
            missing.append(key)
            continue
        value = prefetch[key]
        if value is None:
            results[key] = SourceResult(key, rtype, NO_DATA)
        elif isinstance(value, dict) and value.get("resourceType") == "OperationOutcome":
            results[key] = SourceResult(
                key, rtype, FAILED, reason=_outcome_text(value), not_found=_says_not_found(value)
            )
        elif isinstance(value, dict) and isinstance(value.get("resourceType"), str):
            results[key] = SourceResult(key, rtype, PREFETCH, resources_of(value))
        else:
            results[key] = SourceResult(key, rtype, FAILED, reason="prefetch value is not a FHIR resource")
    return results, missing
