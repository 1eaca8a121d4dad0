"""Adversarial patient records for the judge (compare.py): every resource type the lumbar-fusion library
retrieves, with nulls, missing and odd units, boundary and partial dates, time zones, entered-in-error and
refuted entries, free-text levels and several operative levels.

One generator, two drivers: `Draw` over random.Random (fast batches for the CLI) and `HypothesisDraw` over
a hypothesis `data` object (tests/test_cqlcompile_generated.py, so failures shrink).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from tests.support.cql_judge import Case

VS_DIR = Path(__file__).resolve().parents[2] / "cql" / "lumbar-fusion" / "valuesets"


def _vs_codes():
    out = {}
    for p in sorted(VS_DIR.glob("*.json")):
        d = json.loads(p.read_text())
        codes = [
            (i.get("system"), c["code"])
            for i in (d.get("compose") or {}).get("include", [])
            for c in i.get("concept", [])
        ]
        out[p.stem] = codes
    return out


class _Codes(dict):
    """Value set codes by file name; a value set the pack does not have gives no codes."""

    def __missing__(self, key):
        return []


VS = _Codes(_vs_codes())
# The parameters the pack's library declares: a generated case sets only those.
PARAMETERS = {
    p["name"]
    for elm in sorted((VS_DIR.parent / "elm").glob("*.json"))
    for p in (json.loads(elm.read_text())["library"].get("parameters") or {}).get("def", [])
}
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
SF = "http://fusion-cds.example.org/fhir/CodeSystem/spine-finding"
IS = "http://fusion-cds.example.org/fhir/CodeSystem/spinal-interspace"
CPT = "http://www.ama-assn.org/go/cpt"
LEVELS = ["T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
DISCS = ["76206002", "80064006", "67459009", "62551000", "84020006", "715056000", "999999"]
LEVEL_TEXTS = [
    "L4-5",
    "L5/S1",
    "L5S1",
    "L4–5",
    "lumbosacral",
    "at L3 - L4",
    "t12-l1 and L1/2",
    "L45",
    "no level",
    "",
    "l2\u2014l3",
    "C5-6",
    "L4 L5",
    "L5-S1\nL4-5",
]
GRADES = ["24484000", "371924009", "6736007", "371923003", "255604002", "260413007", "12345"]
GRADE_TEXT = [
    "severe",
    "moderate to severe",
    "moderately-severe",
    "mild to moderate",
    "moderate",
    "mild",
    "none",
    "Severe central stenosis",
    "MILD",
    "mildly / moderate",
    None,
]
UNITS = ["mm", "cm", "%", "deg", "°", "ng/mL", "m", "", None, "weird", "mg/dL", "1"]
TZ = ["", "Z", "+00:00", "-05:00", "+05:30", "+14:00", "-12:00"]


class Draw:
    def __init__(self, rnd: random.Random):
        self.r = rnd

    def choice(self, seq):
        return seq[self.r.randrange(len(seq))]

    def int(self, lo, hi):
        return self.r.randint(lo, hi)

    def bool(self, p=0.5):
        return self.r.random() < p


class HypothesisDraw:
    def __init__(self, data):
        from hypothesis import strategies as st

        self.data, self.st = data, st

    def choice(self, seq):
        return self.data.draw(self.st.sampled_from(list(seq)))

    def int(self, lo, hi):
        return self.data.draw(self.st.integers(lo, hi))

    def bool(self, p=0.5):
        return self.data.draw(self.st.booleans())


def _date(d: Draw, ref, precision=None):
    """Mostly inside the last ~15 months before the reference date (window edges included), some far off."""
    import datetime as _dt

    back = d.choice([0, 1, 7, 30, 42, 90, 180, 364, 365, 366, 420, d.int(0, 460), d.int(0, 460), d.int(0, 1500), -3])
    when = ref - _dt.timedelta(days=back)
    if d.bool(0.1):
        when = when.replace(day=1) - _dt.timedelta(days=1)  # a month end
    y, m = when.year, when.month
    day = when.day
    prec = precision or d.choice(["day", "day", "day", "month", "year", "datetime", "datetime", "invalid"])
    if prec == "year":
        return f"{y:04d}"
    if prec == "month":
        return f"{y:04d}-{m:02d}"
    if prec == "invalid":
        return d.choice([f"{y}-02-30", "2024-13-01", "not a date", f"{y}-{m:02d}-{day:02d}T25:00:00Z"])
    import calendar

    day = min(day, calendar.monthrange(y, m)[1])
    s = f"{y:04d}-{m:02d}-{day:02d}"
    if prec == "datetime":
        s += f"T{d.int(0, 23):02d}:{d.choice([0, 30, 59]):02d}:{d.choice([0, 59]):02d}"
        if d.bool(0.3):
            s += "." + d.choice(["5", "123", "000"])
        s += d.choice(TZ)
    return s


def _cc(d: Draw, codes, texts=(), extra=()):
    if d.bool(0.05):
        return None
    out = {}
    coding = []
    for _ in range(d.choice([0, 1, 1, 1, 2])):
        sys_, code = d.choice(list(codes) + list(extra)) if (codes or extra) else (SCT, "0")
        c = {"system": sys_, "code": code}
        if d.bool(0.5):
            c["display"] = d.choice(["Display " + code, "severe lumbar stenosis", "gabapentin 300 mg", "L4-L5 disc"])
        if d.bool(0.03):
            c.pop("system")
        coding.append(c)
    if coding:
        out["coding"] = coding
    if texts and d.bool(0.6):
        t = d.choice(list(texts))
        if t is not None:
            out["text"] = t
    return out


def _level_site(d: Draw):
    kind = d.choice(["interspace", "disc", "text", "none", "mixed"])
    if kind == "none":
        return None
    if kind == "interspace":
        return [{"coding": [{"system": IS, "code": d.choice(LEVELS + ["L6-S1"])}]}]
    if kind == "disc":
        return [{"coding": [{"system": SCT, "code": d.choice(DISCS), "display": d.choice(LEVEL_TEXTS)}]}]
    if kind == "text":
        return [{"text": d.choice(LEVEL_TEXTS)}]
    return [{"coding": [{"system": IS, "code": d.choice(LEVELS)}]}, {"text": d.choice(LEVEL_TEXTS)}]


def _status_cc(d, system, codes):
    if d.bool(0.2):
        return None
    return {"coding": [{"system": system, "code": d.choice(codes)}]}


def condition(d: Draw, i: int, y: int):
    codes = (
        VS["fusion-pathway-diagnoses"]
        + VS["red-flag-diagnoses"]
        + VS["discogenic-diagnoses"]
        + VS["supporting-diagnoses"]
        + VS["spondylolisthesis-diagnoses"]
    )
    r = {"resourceType": "Condition", "id": f"c{i}"}
    r["code"] = _cc(
        d, codes, ["Lumbar stenosis", None], [(ICD, "S32.009A"), (ICD, "M54.5"), (ICD, "M43.17"), (ICD, "M53.2X7")]
    )
    cs = _status_cc(
        d,
        "http://terminology.hl7.org/CodeSystem/condition-clinical",
        ["active", "recurrence", "relapse", "inactive", "resolved"],
    )
    if cs is not None:
        r["clinicalStatus"] = cs
    vs = _status_cc(
        d,
        "http://terminology.hl7.org/CodeSystem/condition-ver-status",
        ["confirmed", "refuted", "entered-in-error", "provisional"],
    )
    if vs is not None:
        r["verificationStatus"] = vs
    site = _level_site(d)
    if site:
        r["bodySite"] = site
    if d.bool(0.5):
        r["severity"] = _cc(d, [(SCT, g) for g in GRADES], GRADE_TEXT)
    k = d.choice(["recorded", "onsetDateTime", "onsetPeriod", "none", "both"])
    if k in ("recorded", "both"):
        r["recordedDate"] = _date(d, y)
    if k in ("onsetDateTime", "both"):
        r["onsetDateTime"] = _date(d, y)
    if k == "onsetPeriod":
        r["onsetPeriod"] = {"start": _date(d, y)} if d.bool() else {"end": _date(d, y)}
    return r


def observation(d: Draw, i: int, y: int):
    kinds = [
        "stenosis",
        "translation",
        "angulation",
        "slip",
        "slipgrade",
        "cobb",
        "sva",
        "smoking",
        "cotinine",
        "other",
        "ptvisits",
        "positional",
    ]
    k = d.choice(kinds)
    if k == "ptvisits":
        return pt_visits(d, i, y)
    if k == "positional":
        return positional_slip(d, i, y)
    code = {
        "stenosis": (SF, "spinal-stenosis-grade"),
        "translation": (SF, "segmental-translation"),
        "angulation": (SF, "segmental-angulation"),
        "slip": (SF, "spondylolisthesis"),
        "slipgrade": (SF, "spondylolisthesis-grade"),
        "cobb": (SCT, "285285000"),
        "sva": (SF, "sagittal-vertical-axis"),
        "smoking": (LOINC, "72166-2"),
        "cotinine": d.choice(VS["cotinine-tests"]),
        "other": (LOINC, "1234-5"),
    }[k]
    r = {
        "resourceType": "Observation",
        "id": f"o{i}",
        "status": d.choice(["final", "amended", "corrected", "preliminary", "entered-in-error", "final"]),
        "code": {"coding": [{"system": code[0], "code": code[1]}]},
    }
    if d.bool(0.3):
        r["method"] = {"coding": [{"system": SF, "code": "report-text-extraction"}]}
    if d.bool(0.3):
        r["derivedFrom"] = [
            {
                "reference": d.choice(
                    [
                        "ImagingStudy/is1",
                        "DiagnosticReport/dr2",
                        "Observation/o3",
                        "https://ehr.example.org/fhir/ImagingStudy/9",
                        "",
                    ]
                )
            }
        ]
    site = _level_site(d)
    if site:
        r["bodySite"] = site[0]
    e = d.choice(["effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued", "none"])
    if e == "effectiveDateTime":
        r["effectiveDateTime"] = _date(d, y)
    elif e == "effectivePeriod":
        r["effectivePeriod"] = {"start": _date(d, y)}
    elif e == "effectiveInstant":
        r["effectiveInstant"] = _date(d, y, "datetime")
    elif e == "issued":
        r["issued"] = _date(d, y, "datetime")
    if k in ("translation", "angulation", "cobb", "sva", "cotinine") or d.bool(0.1):
        if d.bool(0.9):
            q = {}
            if d.bool(0.92):
                q["value"] = d.choice([0, 2, 3.9, 4, 4.0, 4.5, 9.99, 10, 12.5, 30, 45, 5, 7.25, -1, 0.1 + 0.2])
            u = d.choice(UNITS)
            if u is not None:
                q["unit"] = u
                if d.bool(0.5) and u not in ("°", "weird"):
                    q["system"] = "http://unitsofmeasure.org"
                    q["code"] = u
            if d.bool(0.05):
                q["comparator"] = "<"
            r["valueQuantity"] = q
        else:
            r["valueString"] = "about 5 mm"
    elif k == "stenosis":
        r["valueCodeableConcept"] = _cc(d, [(SCT, g) for g in GRADES], GRADE_TEXT)
    elif k == "slipgrade":
        if d.bool(0.85):
            r["valueInteger"] = d.choice([1, 2, 3, 4])
    elif k == "smoking":
        r["valueCodeableConcept"] = _cc(
            d,
            [(SCT, c) for c in ("266919005", "8517006", "266927001", "77176002")],
            ["Never smoker", "Current smoker", None],
        )
        if d.bool(0.5):
            r["component"] = [
                {"code": {"coding": [{"system": LOINC, "code": "74010-0"}]}, "valueDateTime": _date(d, y)}
            ]
        elif d.bool(0.3):
            r.pop("valueCodeableConcept", None)
            r["valueDateTime"] = _date(d, y)
    return r


def pt_visits(d: Draw, i: int, y: int):
    """A PT discharge summary: visits attended over one episode (spine-finding#pt-visits-attended)."""
    r = {
        "resourceType": "Observation",
        "id": f"o{i}",
        "status": d.choice(["final", "amended", "preliminary", "entered-in-error"]),
        "code": {"coding": [{"system": SF, "code": "pt-visits-attended"}]},
    }
    if d.bool(0.9):
        q = {"value": d.choice([0, 1, 6, 8, 12, 12.7, 24, -2, 3.5])}
        unit = d.choice(["visits", "{visits}", "1", None, "wk"])
        if unit is not None:
            q["unit"] = unit
            if d.bool(0.5):
                q["system"], q["code"] = "http://unitsofmeasure.org", unit
        r["valueQuantity"] = q
    e = d.choice(["period", "period", "start-only", "end-only", "dt", "none"])
    if e == "period":
        r["effectivePeriod"] = {"start": _date(d, y), "end": _date(d, y)}
    elif e == "start-only":
        r["effectivePeriod"] = {"start": _date(d, y)}
    elif e == "end-only":
        r["effectivePeriod"] = {"end": _date(d, y)}
    elif e == "dt":
        r["effectiveDateTime"] = _date(d, y)
    site = _level_site(d)
    if site and d.bool(0.5):
        r["bodySite"] = site[0]
    return r


def positional_slip(d: Draw, i: int, y: int):
    """A slip measured in flexion or extension (body position extension, slip distance as value or component)."""
    r = {
        "resourceType": "Observation",
        "id": f"o{i}",
        "status": d.choice(["final", "final", "preliminary"]),
        "code": {"coding": [{"system": SF, "code": "spondylolisthesis"}]},
        "effectiveDateTime": d.choice([_date(d, y), "2024-05-01", "2024-05-01T10:00:00Z"]),
    }
    site = _level_site(d)
    if site:
        r["bodySite"] = site[0]
    if d.bool(0.85):
        r["extension"] = [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/observation-bodyPosition",
                "valueCodeableConcept": _cc(
                    d,
                    [(SCT, "10904000"), (SCT, "40199007")],
                    ["Flexion", "extension view", "FLEXION", "standing", None],
                ),
            }
        ]
    q = {"value": d.choice([0, 2, 3.5, 4, 6.5, 9]), "unit": d.choice(["mm", "cm", "deg", "", "weird"])}
    if q["unit"] in ("mm", "cm", "deg"):
        q["system"], q["code"] = "http://unitsofmeasure.org", q["unit"]
    if d.bool(0.7):
        r["valueQuantity"] = q
    else:
        r["component"] = [
            {
                "code": {"coding": [{"system": SF, "code": d.choice(["slip-distance", "slip-angle"])}]},
                "valueQuantity": q,
            }
        ]
    if d.bool(0.2):
        r["method"] = {"coding": [{"system": SF, "code": "report-text-extraction"}]}
    return r


def _reasons(d: Draw, r: dict) -> None:
    """reasonCode / reasonReference: a lumbar diagnosis, a lumbar site, something else, or a Condition."""
    if d.bool(0.4):
        codes = VS["fusion-pathway-diagnoses"] + VS["supporting-diagnoses"] + VS["discogenic-diagnoses"]
        r["reasonCode"] = [
            _cc(d, codes, ["low back pain", None], [(ICD, "M25.561"), (SCT, DISCS[0])]) or {"text": "LBP"}
        ]
    if d.bool(0.3):
        r["reasonReference"] = [
            {
                "reference": d.choice(
                    ["Condition/c0", "Condition/c1", "Condition/c2", "Observation/o1", "Condition/unknown"]
                )
            }
        ]


def procedure(d: Draw, i: int, y: int):
    codes = (
        VS["pt-treatment"]
        + VS["pt-evaluation"]
        + VS["epidural-steroid-injection"]
        + VS["facet-evaluation"]
        + VS["flexion-extension-radiographs"]
        + VS["prior-fusion"]
        + VS["chiropractic-treatment"]
    )
    r = {
        "resourceType": "Procedure",
        "id": f"p{i}",
        "status": d.choice(["completed", "completed", "stopped", "in-progress", "entered-in-error"]),
        "code": _cc(d, codes, ["Physical therapy", None]),
    }
    if r["code"] is None:
        r.pop("code")
    k = d.choice(["dt", "period", "period-open", "none", "string"])
    if k == "dt":
        r["performedDateTime"] = _date(d, y)
    elif k == "period":
        r["performedPeriod"] = {"start": _date(d, y), "end": _date(d, y)}
    elif k == "period-open":
        r["performedPeriod"] = {"start": _date(d, y)} if d.bool() else {"end": _date(d, y)}
    elif k == "string":
        r["performedString"] = "last spring"
    if d.bool(0.2):
        r["outcome"] = d.choice(
            [
                {"coding": [{"system": SF, "code": "pt-not-tolerated"}]},
                {"coding": [{"system": SCT, "code": "407563006"}]},
                {"text": "Patient unable to tolerate therapy"},
                {"text": "good progress"},
            ]
        )
    if d.bool(0.1):
        r["statusReason"] = {"text": "intolerance of exercises"}
    if d.bool(0.3):
        r["bodySite"] = _level_site(d) or [{"text": "knee"}]
    _reasons(d, r)
    return r


def encounter(d: Draw, i: int, y: int):
    r = {
        "resourceType": "Encounter",
        "id": f"e{i}",
        "status": d.choice(["finished", "finished", "cancelled", "in-progress"]),
    }
    if d.bool(0.9):
        r["type"] = [_cc(d, VS["pt-encounter-type"], ["PT visit"], [(CPT, "99214")]) or {"text": "visit"}]
    if d.bool(0.9):
        r["period"] = {"start": _date(d, y)} if d.bool(0.8) else {"end": _date(d, y)}
    _reasons(d, r)
    return r


def imaging_study(d: Draw, i: int, y: int):
    r = {
        "resourceType": "ImagingStudy",
        "id": f"is{i}",
        "status": d.choice(["available", "cancelled", "entered-in-error", "registered"]),
    }
    if d.bool(0.7):
        r["procedureCode"] = [
            _cc(
                d,
                VS["lumbar-mri-ct"] + VS["flexion-extension-radiographs"],
                ["MRI lumbar spine", "CT L-spine", "MRI brain"],
                [(CPT, "70551")],
            )
            or {"text": "MRI"}
        ]
    if d.bool(0.7):
        r["modality"] = [
            {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": d.choice(["MR", "CT", "CR"])}
        ]
    if d.bool(0.6):
        r["description"] = d.choice(["MRI LUMBAR SPINE", "lumbosacral ct", "Brain MRI", "L-spine", "L spine\tw/o"])
    if d.bool(0.9):
        r["started"] = _date(d, y)
    return r


def diagnostic_report(d: Draw, i: int, y: int):
    r = {
        "resourceType": "DiagnosticReport",
        "id": f"dr{i}",
        "status": d.choice(["final", "amended", "preliminary", "cancelled", "entered-in-error", "appended"]),
        "code": _cc(d, VS["lumbar-mri-ct"] + VS["flexion-extension-radiographs"], ["MRI"]) or {"text": "report"},
    }
    e = d.choice(["dt", "period", "issued", "none"])
    if e == "dt":
        r["effectiveDateTime"] = _date(d, y)
    elif e == "period":
        r["effectivePeriod"] = {"start": _date(d, y)}
    elif e == "issued":
        r["issued"] = _date(d, y, "datetime")
    if d.bool(0.5):
        r["conclusion"] = d.choice(
            [
                "Solid fusion at L4-L5.",
                "Nonunion at L5-S1 with hardware loosening.",
                "No evidence of pseudarthrosis.",
                "Findings suggest pseudo-arthrosis.",
                "Failed fusion L4-5",
                "without nonunion",
                "Moderate stenosis at L4-L5.",
                "",
            ]
        )
    if d.bool(0.3):
        r["result"] = [{"reference": f"Observation/o{d.int(0, 20)}"}] + (
            [{"display": "no reference"}] if d.bool(0.2) else []
        )
    if d.bool(0.3):
        r["imagingStudy"] = [{"reference": f"ImagingStudy/is{d.int(0, 20)}"}]
    return r


def medication(d: Draw, i: int, y: int, statement: bool):
    r = {
        "resourceType": "MedicationStatement" if statement else "MedicationRequest",
        "id": f"m{i}",
        "status": d.choice(["active", "completed", "entered-in-error", "cancelled", "draft", "not-taken", "stopped"]),
    }
    if d.bool(0.9):
        r["medicationCodeableConcept"] = _cc(
            d,
            VS["neuropathic-medications"],
            ["Gabapentin 300 mg", "LYRICA", "meloxicam", None],
            [("http://www.nlm.nih.gov/research/umls/rxnorm", "41493")],
        ) or {"text": "pregabalin"}
    else:
        r["medicationReference"] = {"reference": "Medication/x"}
    if statement:
        e = d.choice(["dt", "period", "asserted", "none"])
        if e == "dt":
            r["effectiveDateTime"] = _date(d, y)
        elif e == "period":
            r["effectivePeriod"] = {"start": _date(d, y)}
        elif e == "asserted":
            r["dateAsserted"] = _date(d, y)
    elif d.bool(0.85):
        r["authoredOn"] = _date(d, y)
    return r


def patient_case(d: Draw, n: int) -> Case:
    import datetime as _dt

    yy = d.choice([2023, 2024, 2025, 2026])
    ref = d.choice(
        [
            f"{yy}-02-29" if yy % 4 == 0 else f"{yy}-02-28",
            f"{yy}-03-31",
            f"{yy}-01-01",
            f"{yy}-12-31",
            f"{yy}-06-15",
            f"{yy}-08-31",
        ]
    )
    y = _dt.date.fromisoformat(ref)
    pid = f"gen-{n}"
    res = [{"resourceType": "Patient", "id": pid}]
    makers = [
        condition,
        condition,
        observation,
        observation,
        observation,
        procedure,
        procedure,
        procedure,
        encounter,
        imaging_study,
        diagnostic_report,
        lambda d, i, y: medication(d, i, y, False),
        lambda d, i, y: medication(d, i, y, True),
    ]
    for i in range(d.choice([0, 3, 8, 15, 25, d.int(0, 30)])):
        res.append(d.choice(makers)(d, i, y))
    if d.bool(0.05) and len(res) > 1:
        res.append(res[-1])  # an exact duplicate
    levels = d.choice(
        [[], ["L4-L5"], ["L5-S1"], ["L4-L5", "L5-S1"], ["L3-L4", "L4-L5", "L5-S1"], ["T12-L1"], ["L4-L5", "L4-L5"]]
    )
    params = {
        "ReferenceDate": ref,
        "OperativeLevels": levels,
        "FailedSources": d.choice([[]] * 6 + [["Observation"], ["Condition", "Procedure"]]),
    }
    if d.bool(0.3):
        params.update(
            {
                "SpondylolisthesisInstability": d.choice(["any", "grade2+"]),
                "AdmitDiscogenic": d.bool(),
                "MinPTSessions": d.choice([1, 6, 12]),
                "ConservativeWindowMonths": d.choice([1, 6, 12, 24]),
                "ImagingWindowMonths": d.choice([6, 12, 36]),
                "TranslationMM": d.choice([3.0, 4.0, 4.5]),
                "CotinineMaxNgPerML": d.choice([10.0, 3.0]),
                "NicotineFreeWeeks": d.choice([4, 6]),
                "RedFlagWindowDays": d.choice([30, 90, 365]),
                "PTEpisodeGapDays": d.choice([14, 30, 60]),
                "MinCareMonths": d.choice([3, 6]),
                "CountOtherModalities": d.bool(),
                "PathwayRules": d.choice(
                    [
                        [],
                        [
                            {
                                "id": "stenosis-instability",
                                "label": "Stenosis with instability",
                                "required": ["imaging", "conservative-care"],
                                "excluded": False,
                            }
                        ],
                        [{"id": "discogenic", "label": "Discogenic pain", "required": [], "excluded": True}],
                    ]
                ),
            }
        )
    params = {k: v for k, v in params.items() if k in PARAMETERS}
    return Case(pid, res, params, pid)


def generate_cases(count: int, seed: int = 0) -> list[Case]:
    rnd = random.Random(seed)
    return [patient_case(Draw(rnd), n) for n in range(count)]
