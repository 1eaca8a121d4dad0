"""Derived Observations: imaging findings read from report text, added to the data the CQL sees.

FHIR R4 Observation (4.0.1): each finding of `report_text` becomes one Observation with
`derivedFrom` the DiagnosticReport (and its ImagingStudy), `method` the project code
`spine-finding#report-text-extraction`, the report's date as `effectiveDateTime`, and the sentence
with its character offsets in `note` and in the extension `report-text-source`. The codes are those
the CQL library already reads (docs/criteria.md): `spinal-stenosis-grade`, `segmental-translation`,
`segmental-angulation`, `spondylolisthesis-grade`, and `spondylolisthesis` for a slip without a grade;
a presence finding (data/report_text.json, such as `spinal-cord-compression`) is its code with
valueBoolean true (the report affirms it) or false (the report denies it).

These Observations live only for one evaluation: nothing here writes to the EHR.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import threading
from collections import OrderedDict
from pathlib import Path

from cds_hooks.spine.levels import Region, interspace_coding
from cds_hooks.spine.report_text import PRESENCE_KINDS, VOCABULARY, Finding, extract_report

log = logging.getLogger("cds_hooks.report_text")

SPINE_FINDING = "http://fusion-cds.example.org/fhir/CodeSystem/spine-finding"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
SOURCE_EXTENSION = "http://fusion-cds.example.org/fhir/StructureDefinition/report-text-source"
SUPERSEDED_EXTENSION = "http://fusion-cds.example.org/fhir/StructureDefinition/report-text-superseded"
METHOD_CODE = "report-text-extraction"
ID_PREFIX = "derived-"

GRADE_CODES = {
    "none": ("260413007", "None"),
    "mild": ("255604002", "Mild"),
    "mild-moderate": ("371923003", "Mild to moderate"),
    "moderate": ("6736007", "Moderate"),
    "moderate-severe": ("371924009", "Moderate to severe"),
    "severe": ("24484000", "Severe"),
}
GRADE_WORDS = {"none": "no stenosis", "mild-moderate": "mild to moderate", "moderate-severe": "moderate to severe"}
COMPARTMENTS = {
    "central": ("central-canal", "Central canal"),
    "lateral-recess": ("lateral-recess", "Lateral recess"),
    "foramen": ("neural-foramen", "Neural foramen"),
}
SIDES = {"left": "Left", "right": "Right", "bilateral": "Bilateral"}

# DiagnosticReport.status -> the derived Observation's status; other statuses derive nothing.
STATUS = {
    "final": "final",
    "amended": "amended",
    "corrected": "corrected",
    "appended": "amended",
    "preliminary": "preliminary",
    "partial": "preliminary",
    "registered": "preliminary",
}

# Imaging codes per region and modality: data (data/imaging.json), so a region is added without code.
_IMAGING = json.loads((Path(__file__).resolve().parent / "data" / "imaging.json").read_text(encoding="utf-8"))
_IMAGING_CATEGORY = set(_IMAGING["categories"])
_MODALITY_CODES = {kind: set(codes) for kind, codes in _IMAGING["modalities"].items()}
_GROUPS = [_IMAGING["anyRegion"], *_IMAGING["regions"].values()]
_CROSS_SECTIONAL_CODES = {c for g in _GROUPS for c in g["crossSectional"]}
_RADIOGRAPH_CODES = {c for g in _GROUPS for c in g["radiograph"]}
_DYNAMIC_CODES = {c for g in _GROUPS for c in g["dynamic"]}
_REGION_CODES = {
    name: set(g["crossSectional"]) | set(g["radiograph"]) | set(g["dynamic"]) for name, g in _IMAGING["regions"].items()
}
_REGION_WORDS = {name: re.compile(g["words"], re.IGNORECASE) for name, g in _IMAGING["regions"].items()}

# Findings of the most recently read report texts, by a hash of the text: the same report comes back
# call after call (every order signed for a patient, every retry), and reading it is most of the
# report-text stage. Findings are immutable, so a remembered list is as good as a fresh one.
MEMO_REPORTS = 512


class _FindingsMemo:
    """A bounded LRU of report findings keyed by the SHA-256 of the report's parts (not the text)."""

    def __init__(self, size: int):
        self.size = size
        self._entries: OrderedDict[bytes, tuple[Finding, ...]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(parts: list[tuple[str, str, str | None, str]], dynamic: bool) -> bytes:
        digest = hashlib.sha256(b"dynamic" if dynamic else b"static")
        for part in parts:
            for value in part:
                encoded = (value or "").encode("utf-8", "surrogatepass")
                digest.update(len(encoded).to_bytes(8, "big") + encoded)  # length-prefixed: no ambiguity
        return digest.digest()

    def findings(self, parts: list[tuple[str, str, str | None, str]], dynamic: bool) -> list[Finding]:
        key = self.key(parts, dynamic)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                return list(hit)
        found = tuple(extract_report(parts, dynamic=dynamic))
        with self._lock:
            self._entries[key] = found
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return list(found)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_memo = _FindingsMemo(MEMO_REPORTS)


def _codings(concept) -> list[dict]:
    if not isinstance(concept, dict):
        return []
    return [c for c in concept.get("coding") or [] if isinstance(c, dict)]


def _texts(concept) -> str:
    if not isinstance(concept, dict):
        return ""
    parts = [concept.get("text")] + [c.get("display") for c in _codings(concept)]
    return " ".join(p for p in parts if isinstance(p, str))


def is_imaging_report(report: dict) -> bool:
    """Radiology category, a linked ImagingStudy, or an imaging code or name (FHIR R4 DiagnosticReport)."""
    if report.get("imagingStudy"):
        return True
    for cat in report.get("category") or []:
        if any(c.get("code") in _IMAGING_CATEGORY for c in _codings(cat)):
            return True
    codes = {c.get("code") for c in _codings(report.get("code"))}
    if codes & (_CROSS_SECTIONAL_CODES | _RADIOGRAPH_CODES | _DYNAMIC_CODES):
        return True
    return bool(
        re.search(r"\b(?:MRI|MR|CT|x-?ray|XR|radiograph\w*|imaging|myelogra\w*)\b", _texts(report.get("code")), re.I)
    )


def modality(report: dict, studies: list[dict]) -> str | None:
    """'cross-sectional' (MR, CT), 'radiograph', or None when the record does not say."""
    mods = {c.get("code") for s in studies for m in (s.get("modality") or []) if isinstance(m, dict) for c in [m]}
    if mods & _MODALITY_CODES["cross-sectional"]:
        return "cross-sectional"
    if mods & _MODALITY_CODES["radiograph"]:
        return "radiograph"
    codes = {c.get("code") for c in _codings(report.get("code"))}
    if codes & _CROSS_SECTIONAL_CODES:
        return "cross-sectional"
    if codes & (_DYNAMIC_CODES | _RADIOGRAPH_CODES):
        return "radiograph"
    text = _texts(report.get("code"))
    if re.search(r"\b(?:MRI|MR|CT|magnetic|computed\s+tomograph\w*|myelogra\w*)\b", text, re.I):
        return "cross-sectional"
    if re.search(r"\b(?:x-?ray|XR|radiograph\w*)\b", text, re.I):
        return "radiograph"
    return None


def report_region(report: dict, studies: list[dict]) -> str | None:
    """The spinal region a report images: a region's imaging code on the report or its studies, else
    the one region its code text or the studies' descriptions name; None when nothing says, or when
    its words name two regions (a "cervical and lumbar" survey is read for either)."""
    concepts = [report.get("code")] + [p for s in studies for p in (s.get("procedureCode") or [])]
    codes = {c.get("code") for concept in concepts for c in _codings(concept)}
    coded = [name for name, known in _REGION_CODES.items() if codes & known]
    if len(coded) == 1:
        return coded[0]
    text = " ".join(
        [_texts(concept) for concept in concepts]
        + [s["description"] for s in studies if isinstance(s.get("description"), str)]
    )
    named = [name for name, words in _REGION_WORDS.items() if words.search(text)]
    return named[0] if len(named) == 1 else None


def _decode(attachment: dict) -> str | None:
    data = attachment.get("data")
    if not isinstance(data, str):
        return None  # a `url` attachment is not fetched: the service reads only what the record carries
    try:
        raw = base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        log.warning("presentedForm is not valid base64; skipped")
        return None
    content_type = attachment.get("contentType") or ""
    charset = re.search(r"charset=([\w-]+)", content_type, re.I)
    try:
        return raw.decode(charset.group(1) if charset else "utf-8", errors="replace")
    except LookupError:
        return raw.decode("utf-8", errors="replace")


def report_parts(report: dict) -> list[tuple[str, str, str | None, str]]:
    """The texts of a report: its conclusion (read as impression), then each text presentedForm."""
    parts: list[tuple[str, str, str | None, str]] = []
    if isinstance(report.get("conclusion"), str) and report["conclusion"].strip():
        parts.append(("conclusion", report["conclusion"], "text/plain", "impression"))
    for i, attachment in enumerate(report.get("presentedForm") or []):
        if not isinstance(attachment, dict):
            continue
        kind = (attachment.get("contentType") or "text/plain").split(";")[0].strip().lower()
        if kind not in ("text/plain", "text/html", "application/xhtml+xml"):
            continue  # PDF and images are not read
        text = _decode(attachment)
        if text and text.strip():
            parts.append((f"presentedForm[{i}]", text, attachment.get("contentType") or "text/plain", "findings"))
    return parts


def _report_date(report: dict, studies: list[dict]) -> str | None:
    if isinstance(report.get("effectiveDateTime"), str):
        return report["effectiveDateTime"]
    period = report.get("effectivePeriod")
    if isinstance(period, dict) and isinstance(period.get("start"), str):
        return period["start"]
    for s in studies:
        if isinstance(s.get("started"), str):
            return s["started"]
    return report.get("issued") if isinstance(report.get("issued"), str) else None


def _source_extension(url: str, f: Finding, extra: list[dict] | None = None) -> dict:
    parts = [
        {"url": "source", "valueString": f.source},
        {"url": "section", "valueCode": f.section},
        {"url": "start", "valueInteger": f.start},
        {"url": "end", "valueInteger": f.end},
        {"url": "quote", "valueString": f.quote},
    ]
    return {"url": url, "extension": parts + (extra or [])}


def _concept(system: str, code: str, display: str, text: str | None = None) -> dict:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": text or display}


def describe_finding(f: Finding) -> str:
    """Short words for a finding, as the card and the note say them."""
    if f.kind == "stenosis":
        where = " ".join(x for x in (f.side, COMPARTMENTS[f.compartment][1].lower() if f.compartment else None) if x)
        where = f"{where} " if where else ""
        if f.grade == "none":
            return f"no {where}stenosis"
        return f"{GRADE_WORDS.get(f.grade or '', f.grade or 'ungraded')} {where}stenosis"
    if f.kind == "listhesis":
        bits = [
            f"grade {f.slip_grade}" if f.slip_grade else None,
            {"antero": "anterolisthesis", "retro": "retrolisthesis"}.get(f.direction or "", "spondylolisthesis"),
            f"{f.mm:g} mm" if f.mm is not None else None,
        ]
        return " ".join(b for b in bits if b)
    if f.kind == "translation":
        return f"translation {f.mm:g} mm"
    if f.kind in PRESENCE_KINDS:
        return VOCABULARY["presenceFindings"][f.kind]["words"]["present" if f.status != "negated" else "negated"]
    return f"angulation {f.deg:g}°"


def _observation_id(report_ref: str, f: Finding) -> str:
    key = "|".join(str(x) for x in (report_ref, f.kind, f.level, f.compartment, f.side, f.source, f.start))
    return ID_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


def to_observation(f: Finding, report: dict, studies: list[dict]) -> dict | None:
    """One derived Observation for a finding that can count, or None (hedged, prior, unleveled, ungraded)."""
    if f.level is None or f.status not in ("present", "negated"):
        return None
    if f.status == "negated" and f.kind != "stenosis" and f.kind not in PRESENCE_KINDS:
        return None
    if f.kind == "stenosis" and f.grade is None:
        return None
    status = STATUS.get(report.get("status"))
    if status is None:
        return None
    report_ref = f"DiagnosticReport/{report.get('id')}"
    obs: dict = {
        "resourceType": "Observation",
        "id": _observation_id(report_ref, f),
        "extension": [_source_extension(SOURCE_EXTENSION, f)],
        "status": status,
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "imaging",
                        "display": "Imaging",
                    }
                ]
            }
        ],
    }
    for old in f.superseded:
        obs["extension"].append(
            _source_extension(SUPERSEDED_EXTENSION, old, [{"url": "reading", "valueString": describe_finding(old)}])
        )
    if isinstance(report.get("subject"), dict):
        obs["subject"] = dict(report["subject"])
    date = _report_date(report, studies)
    if date:
        obs["effectiveDateTime"] = date
    if f.kind == "stenosis":
        code, display = GRADE_CODES[f.grade]
        obs["code"] = _concept(
            SPINE_FINDING,
            "spinal-stenosis-grade",
            "Spinal stenosis grade at one interspace",
            "Spinal stenosis grade (from the report text)",
        )
        obs["valueCodeableConcept"] = _concept(SNOMED, code, display)
        components = []
        if f.compartment:
            c, d = COMPARTMENTS[f.compartment]
            components.append(
                {
                    "code": _concept(SPINE_FINDING, "stenosis-compartment", "Stenosis compartment"),
                    "valueCodeableConcept": _concept(SPINE_FINDING, c, d),
                }
            )
        if f.side:
            components.append(
                {
                    "code": _concept(SPINE_FINDING, "laterality", "Laterality"),
                    "valueCodeableConcept": _concept(SPINE_FINDING, f.side, SIDES[f.side]),
                }
            )
        if components:
            obs["component"] = components
    elif f.kind == "listhesis":
        components = []
        if f.direction:
            components.append(
                {
                    "code": _concept(SPINE_FINDING, "slip-direction", "Direction of the slip"),
                    "valueCodeableConcept": _concept(
                        SPINE_FINDING,
                        {"antero": "anterolisthesis", "retro": "retrolisthesis"}[f.direction],
                        {"antero": "Anterolisthesis", "retro": "Retrolisthesis"}[f.direction],
                    ),
                }
            )
        if f.slip_grade is not None:
            obs["code"] = _concept(
                SPINE_FINDING,
                "spondylolisthesis-grade",
                "Meyerding grade of spondylolisthesis",
                "Meyerding grade (from the report text)",
            )
            obs["valueInteger"] = f.slip_grade
            if f.mm is not None:
                components.append(
                    {
                        "code": _concept(SPINE_FINDING, "slip-distance", "Slip distance"),
                        "valueQuantity": {"value": f.mm, "unit": "mm", "system": UCUM, "code": "mm"},
                    }
                )
        else:
            obs["code"] = _concept(
                SPINE_FINDING,
                "spondylolisthesis",
                "Spondylolisthesis at one interspace",
                "Spondylolisthesis (from the report text)",
            )
            if f.mm is not None:
                obs["valueQuantity"] = {"value": f.mm, "unit": "mm", "system": UCUM, "code": "mm"}
            else:
                obs["dataAbsentReason"] = _concept(
                    "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                    "not-performed",
                    "Not Performed",
                    "slip not measured",
                )
        if components:
            obs["component"] = components
    elif f.kind in PRESENCE_KINDS:
        spec = VOCABULARY["presenceFindings"][f.kind]
        obs["code"] = _concept(
            SPINE_FINDING, spec["code"], spec["display"], f"{spec['display']} (from the report text)"
        )
        obs["valueBoolean"] = f.status == "present"
    elif f.kind == "translation":
        obs["code"] = _concept(
            SPINE_FINDING,
            "segmental-translation",
            "Segmental translation on flexion-extension views",
            "Segmental translation (from the report text)",
        )
        obs["valueQuantity"] = {"value": f.mm, "unit": "mm", "system": UCUM, "code": "mm"}
    else:
        obs["code"] = _concept(
            SPINE_FINDING,
            "segmental-angulation",
            "Segmental angulation on flexion-extension views",
            "Segmental angulation (from the report text)",
        )
        obs["valueQuantity"] = {"value": f.deg, "unit": "deg", "system": UCUM, "code": "deg"}
    obs["bodySite"] = interspace_coding(f.level)
    obs["method"] = _concept(
        SPINE_FINDING, METHOD_CODE, "Extracted from report text", "Extracted from report text by fusion-cds rules"
    )
    obs["derivedFrom"] = [{"reference": report_ref}] + [
        {"reference": f"ImagingStudy/{s['id']}"} for s in studies if s.get("id")
    ]
    note = f"{describe_finding(f)} at {f.level}, from the report {f.section}: “{f.quote}”"
    if f.superseded:
        note += (
            " The impression is used; the findings section reads "
            + "; ".join(f"{describe_finding(o)} (“{o.quote}”)" for o in f.superseded)
            + "."
        )
    obs["note"] = [{"text": note}]
    return obs


def derive(resources: list[dict], region: Region | None = None) -> list[dict]:
    """Derived Observations for every imaging DiagnosticReport with text in `resources`.

    With a `region` (the pack's, pack.json `spine.region`), a report of another region gives nothing
    and a finding at a level of another region gives nothing: neither is evidence for this pack.
    """
    index = {f"{r.get('resourceType')}/{r.get('id')}": r for r in resources if isinstance(r, dict)}
    taken = {r.get("id") for r in resources if isinstance(r, dict) and r.get("resourceType") == "Observation"}
    out: list[dict] = []
    for report in resources:
        if not isinstance(report, dict) or report.get("resourceType") != "DiagnosticReport" or not report.get("id"):
            continue
        if report.get("status") not in STATUS or not is_imaging_report(report):
            continue
        try:
            studies = [
                index[f"ImagingStudy/{ref['reference'].rsplit('/', 1)[-1]}"]
                for ref in report.get("imagingStudy") or []
                if isinstance(ref, dict)
                and isinstance(ref.get("reference"), str)
                and f"ImagingStudy/{ref['reference'].rsplit('/', 1)[-1]}" in index
            ]
            if region is not None and report_region(report, studies) not in (None, region.name):
                continue  # another region's study: never evidence at this pack's levels
            parts = report_parts(report)
            if not parts:
                continue
            codes = {c.get("code") for c in _codings(report.get("code"))}
            findings = _memo.findings(parts, dynamic=bool(codes & _DYNAMIC_CODES))
            if modality(report, studies) == "radiograph":
                # Radiographs do not grade canal stenosis; "narrowing" there is of the disc space.
                findings = [f for f in findings if f.kind != "stenosis"]
            if region is not None:
                findings = [f for f in findings if f.level is None or f.level in region]
            for f in findings:
                obs = to_observation(f, report, studies)
                if obs is not None and obs["id"] not in taken:
                    taken.add(obs["id"])
                    out.append(obs)
        except Exception as exc:  # noqa: BLE001 - one unreadable report must not fail the hook call
            log.error("report text extraction failed for one report: %s", type(exc).__name__)
    return out
