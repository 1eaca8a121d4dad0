"""Derived Observations: facts read from clinical notes, added to the data the CQL sees.

Which notes (FHIR R4 DocumentReference, 4.0.1): `status` current, `docStatus` absent, final or amended
(preliminary gives preliminary Observations, which count for nothing), a clinical note by category
(US Core `clinical-note`) or by type (the US Core clinical note types: discharge summary, consult,
history and physical, progress and procedure notes, or a type whose name says note, letter, summary
or therapy), dated within NOTE_LOOKBACK_DAYS before the orders' planned date (the call's date when they have none). At most MAX_NOTES notes and
MAX_CHARS_PER_CALL characters are read, the newest first. Which text: each `content.attachment` that is text/plain or text/html (HTML through
the standard library's `html.parser`), inline as base64 `data`, or by `url`, fetched by the
pipeline from the same FHIR server (pipeline/note_sources.py) and handed in as `fetched`.

Each fact of `note_text` becomes one Observation: `code` from the project CodeSystem `note-finding`
(pt-attendance, conservative-care, nicotine-status, medication-trial, symptom-duration, red-flag),
`method` `note-finding#note-text-extraction`, `derivedFrom` the DocumentReference, the fact's fields
as value and components, its `assertion` as a component (only `present` may count: docs/note-text.md),
and the sentence with its offsets in `note` and in the extension `note-text-source`.

These Observations live only for one evaluation: nothing here writes to the EHR.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import logging
import re

from cds_hooks.spine.note_text import NoteFact, extract_note

log = logging.getLogger("cds_hooks.note_text")

NOTE_FINDING = "http://fusion-cds.example.org/fhir/CodeSystem/note-finding"
SOURCE_EXTENSION = "http://fusion-cds.example.org/fhir/StructureDefinition/note-text-source"
METHOD_CODE = "note-text-extraction"
ID_PREFIX = "derived-note-"
LOINC = "http://loinc.org"
US_CORE_CATEGORY = "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
UCUM = "http://unitsofmeasure.org"

# US Core Clinical Note Type (LOINC): discharge summary, consult, H&P, progress, procedure notes.
CLINICAL_NOTE_TYPES = {"18842-5", "11488-4", "34117-2", "11506-3", "28570-0"}
TEXT_TYPES = ("text/plain", "text/html", "application/xhtml+xml")
NOTE_LOOKBACK_DAYS = 3 * 365
MAX_NOTES = 50
# Attachments larger than this are not read (a clinical note is a few kB of text).
MAX_ATTACHMENT_BYTES = 1_000_000
# Characters of note text read per call, newest notes first: bounds the reading time of one call.
MAX_CHARS_PER_CALL = 100_000

CODES = {
    "pt-attendance": ("pt-attendance", "Physical therapy attended", "therapy"),
    "conservative-care": ("conservative-care", "Conservative care other than physical therapy", "therapy"),
    "nicotine": ("nicotine-status", "Nicotine use status", "social-history"),
    "medication-trial": ("medication-trial", "Medication trial for the spine complaint", "therapy"),
    "symptom-duration": ("symptom-duration", "Symptom onset or duration", "exam"),
    "red-flag": ("red-flag", "Red-flag sign or condition", "exam"),
}
# DocumentReference.docStatus -> the derived Observation's status; absent is read as final.
DOC_STATUS = {None: "final", "final": "final", "amended": "amended", "preliminary": "preliminary"}


def _codings(concept) -> list[dict]:
    if not isinstance(concept, dict):
        return []
    return [c for c in concept.get("coding") or [] if isinstance(c, dict)]


def _concept_text(concept) -> str:
    if not isinstance(concept, dict):
        return ""
    return " ".join(
        p for p in [concept.get("text")] + [c.get("display") for c in _codings(concept)] if isinstance(p, str)
    )


def is_clinical_note(doc: dict) -> bool:
    """US Core category clinical-note, a US Core clinical note type, or a type named like a note."""
    for cat in doc.get("category") or []:
        if any(c.get("code") == "clinical-note" for c in _codings(cat)):
            return True
    if {c.get("code") for c in _codings(doc.get("type"))} & CLINICAL_NOTE_TYPES:
        return True
    return bool(re.search(r"\b(?:note|letter|summary|therapy|history)\b", _concept_text(doc.get("type")), re.I))


def note_date(doc: dict) -> dt.date | None:
    """When the note was written: `date`, else the clinical context's period start."""
    candidates = [doc.get("date")]
    context = doc.get("context") if isinstance(doc.get("context"), dict) else {}
    period = context.get("period") if isinstance(context.get("period"), dict) else {}
    candidates.append(period.get("start"))
    for value in candidates:
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value[:10])
            except ValueError:
                continue
    return None


def readable_notes(resources: list[dict], today: dt.date | str | None = None) -> list[dict]:
    """The DocumentReferences the service reads, newest first (see the module docstring). `today` anchors
    the look-back: the planned date of the orders (ISO date), else the current date."""
    if isinstance(today, str):
        try:
            today = dt.date.fromisoformat(today[:10])
        except ValueError:
            today = None
    today = today or dt.date.today()
    notes = []
    for doc in resources:
        if not isinstance(doc, dict) or doc.get("resourceType") != "DocumentReference" or not doc.get("id"):
            continue
        if doc.get("status") != "current" or doc.get("docStatus") not in DOC_STATUS or not is_clinical_note(doc):
            continue
        written = note_date(doc)
        if written is None or (today - written).days > NOTE_LOOKBACK_DAYS or written > today + dt.timedelta(days=1):
            continue  # an undated note cannot resolve "3 weeks ago"; an old one is outside the look-back
        notes.append((written, doc))
    notes.sort(key=lambda x: x[0], reverse=True)
    return [doc for _, doc in notes[:MAX_NOTES]]


def _text_attachments(doc: dict):
    for i, content in enumerate(doc.get("content") or []):
        attachment = content.get("attachment") if isinstance(content, dict) else None
        if not isinstance(attachment, dict):
            continue
        kind = (attachment.get("contentType") or "text/plain").split(";")[0].strip().lower()
        if kind in TEXT_TYPES:
            yield i, attachment


def attachment_urls(docs: list[dict]) -> list[tuple[str, int, str]]:
    """(DocumentReference id, content index, url) of every text attachment given by URL only."""
    out = []
    for doc in docs:
        for i, attachment in _text_attachments(doc):
            if not isinstance(attachment.get("data"), str) and isinstance(attachment.get("url"), str):
                out.append((doc["id"], i, attachment["url"]))
    return out


def decode(raw: bytes, content_type: str | None) -> str:
    charset = re.search(r"charset=([\w-]+)", content_type or "", re.I)
    try:
        return raw.decode(charset.group(1) if charset else "utf-8", errors="replace")
    except LookupError:
        return raw.decode("utf-8", errors="replace")


def decode_base64(data: str, content_type: str | None) -> str | None:
    try:
        raw = base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        log.warning("a note attachment is not valid base64; skipped")
        return None
    if len(raw) > MAX_ATTACHMENT_BYTES:
        log.warning("a note attachment is larger than %d bytes; skipped", MAX_ATTACHMENT_BYTES)
        return None
    return decode(raw, content_type)


def note_parts(doc: dict, fetched: dict[tuple[str, int], tuple[str, str]] | None = None) -> list[tuple[str, str, str]]:
    """(source, text, content type) of each readable attachment: inline data, or fetched by URL."""
    parts = []
    for i, attachment in _text_attachments(doc):
        content_type = attachment.get("contentType") or "text/plain"
        text = None
        if isinstance(attachment.get("data"), str):
            text = decode_base64(attachment["data"], content_type)
        elif fetched and (doc["id"], i) in fetched:
            text, content_type = fetched[(doc["id"], i)]
        if text and text.strip():
            parts.append((f"content[{i}]", text, content_type))
    return parts


def _concept(system: str, code: str, display: str, text: str | None = None) -> dict:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": text or display}


def _own(code: str, display: str | None = None) -> dict:
    return _concept(NOTE_FINDING, code, display or code.replace("-", " ").capitalize())


def _component(code: str, **value) -> dict:
    return {"code": _own(code), **value}


def _observation_id(doc_ref: str, source: str, f: NoteFact) -> str:
    key = "|".join(str(x) for x in (doc_ref, source, f.type, f.assertion, f.start, f.end))
    return ID_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


def describe_fact(f: NoteFact) -> str:
    """Short words for a fact, as the card and the note say them."""
    g = f.get
    if f.type == "pt-attendance":
        bits = [
            f"{g('sessions_attended')} visits" if g("sessions_attended") is not None else "physical therapy",
            f"for the {g('region')} region" if g("region") else None,
            g("status"),
        ]
        return " ".join(b for b in bits if b)
    if f.type == "conservative-care":
        return str(g("modality"))
    if f.type == "nicotine":
        quit_ = f", quit {g('quit_date')}" if g("quit_date") else ""
        return f"{g('status')} {g('product')}{quit_}"
    if f.type == "medication-trial":
        return " ".join(str(b) for b in (g("drug"), g("dose"), g("outcome")) if b)
    if f.type == "symptom-duration":
        when = (
            f"for {g('duration_months')} months"
            if g("duration_months") is not None
            else (f"since {g('onset')}" if g("onset") else "")
        )
        return f"{g('symptom')} {when}".strip()
    return str(g("kind"))


def _period(start: str | None, end: str | None) -> dict:
    out = {}
    if start:
        out["start"] = start
    if end:
        out["end"] = end
    return out


def _span_weeks(start: str | None, end: str | None) -> int | None:
    """Whole weeks from the first to the last visit, when both are full dates."""
    if not start or not end or len(start) != 10 or len(end) != 10:
        return None
    days = (dt.date.fromisoformat(end) - dt.date.fromisoformat(start)).days
    return days // 7 if days >= 0 else None


def to_observation(f: NoteFact, doc: dict, source: str, written: dt.date) -> dict:
    """One derived Observation for one fact of one note."""
    status = DOC_STATUS[doc.get("docStatus")]
    doc_ref = f"DocumentReference/{doc['id']}"
    code, display, category = CODES[f.type]
    obs: dict = {
        "resourceType": "Observation",
        "id": _observation_id(doc_ref, source, f),
        "extension": [
            {
                "url": SOURCE_EXTENSION,
                "extension": [
                    {"url": "source", "valueString": source},
                    {"url": "start", "valueInteger": f.start},
                    {"url": "end", "valueInteger": f.end},
                    {"url": "sentenceStart", "valueInteger": f.sentence_start},
                    {"url": "sentenceEnd", "valueInteger": f.sentence_end},
                    {"url": "quote", "valueString": f.quote},
                    # the note's own date: what a criterion compares with the coded data's dates
                    {"url": "noteDate", "valueDate": written.isoformat()},
                ],
            }
        ],
        "status": status,
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": category}]}],
        "code": _concept(NOTE_FINDING, code, display, f"{display} (from note text)"),
    }
    if isinstance(doc.get("subject"), dict):
        obs["subject"] = dict(doc["subject"])
    g = f.get
    components = [_component("assertion", valueCodeableConcept=_own(f.assertion))]
    effective = None
    if f.type == "pt-attendance":
        if g("sessions_attended") is not None:
            obs["valueInteger"] = g("sessions_attended")
        else:
            obs["dataAbsentReason"] = _concept(
                "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                "unknown",
                "Unknown",
                "number of visits not stated",
            )
        if g("sessions_planned") is not None:
            components.append(_component("sessions-planned", valueInteger=g("sessions_planned")))
        if g("weeks") is not None:
            components.append(
                _component("weeks", valueQuantity={"value": g("weeks"), "unit": "wk", "system": UCUM, "code": "wk"})
            )
        if g("status"):
            components.append(_component("course-status", valueCodeableConcept=_own(g("status"))))
        span = _span_weeks(g("start"), g("end"))
        if span is not None:
            components.append(_component("span-weeks", valueInteger=span))
        effective = _period(g("start"), g("end"))
    elif f.type == "conservative-care":
        obs["valueCodeableConcept"] = _own(g("modality"))
        effective = _period(g("start"), g("end"))
    elif f.type == "nicotine":
        obs["valueCodeableConcept"] = _own(g("status"))
        components.append(_component("product", valueCodeableConcept=_own(g("product"))))
        if g("quit_date"):
            components.append(_component("quit-date", valueDateTime=g("quit_date")))
        if g("amount"):
            components.append(_component("amount", valueString=g("amount")))
    elif f.type == "medication-trial":
        obs["valueCodeableConcept"] = _own(g("drug"), g("drug"))
        for name in ("dose", "side_effect"):
            if g(name):
                components.append(_component(name.replace("_", "-"), valueString=g(name)))
        if g("outcome"):
            components.append(_component("outcome", valueCodeableConcept=_own(g("outcome"))))
        if g("weeks") is not None:
            components.append(
                _component("weeks", valueQuantity={"value": g("weeks"), "unit": "wk", "system": UCUM, "code": "wk"})
            )
        effective = _period(g("start"), g("stop"))
    elif f.type == "symptom-duration":
        obs["valueCodeableConcept"] = _own(g("symptom"))
        if g("onset"):
            components.append(_component("onset", valueDateTime=g("onset")))
        if g("duration_months") is not None:
            components.append(
                _component(
                    "duration",
                    valueQuantity={"value": g("duration_months"), "unit": "mo", "system": UCUM, "code": "mo"},
                )
            )
    else:
        obs["valueCodeableConcept"] = _own(g("kind"))
    region = g("region")
    if region:
        obs["bodySite"] = _own(f"region-{region}", f"{region.capitalize()} region")
    if effective:
        obs["effectivePeriod"] = effective
    else:
        obs["effectiveDateTime"] = written.isoformat()
    obs["component"] = components
    obs["method"] = _concept(
        NOTE_FINDING, METHOD_CODE, "Extracted from note text", "Extracted from clinical note text by fusion-cds rules"
    )
    obs["derivedFrom"] = [{"reference": doc_ref}]
    obs["note"] = [{"text": f"{describe_fact(f)} ({f.assertion}), from the note of {written.isoformat()}: “{f.quote}”"}]
    return obs


def derive(
    resources: list[dict],
    fetched: dict[tuple[str, int], tuple[str, str]] | None = None,
    today: dt.date | str | None = None,
) -> list[dict]:
    """Derived Observations for every readable clinical note in `resources`."""
    out: list[dict] = []
    taken = {r.get("id") for r in resources if isinstance(r, dict) and r.get("resourceType") == "Observation"}
    budget = MAX_CHARS_PER_CALL
    for doc in readable_notes(resources, today):
        written = note_date(doc)
        try:
            for source, text, content_type in note_parts(doc, fetched):
                if budget <= 0:
                    log.warning("note text over %d characters in one call; older notes not read", MAX_CHARS_PER_CALL)
                    return out
                text = text[:budget]
                budget -= len(text)
                for f in extract_note(text, written, content_type):
                    obs = to_observation(f, doc, source, written)
                    if obs["id"] not in taken:
                        taken.add(obs["id"])
                        out.append(obs)
        except Exception as exc:  # noqa: BLE001 - one unreadable note must not fail the hook call
            log.error("note text extraction failed for one note: %s", type(exc).__name__)
    return out
