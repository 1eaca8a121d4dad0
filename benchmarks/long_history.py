"""A patient with a long history: the seed case plus about eight years of unrelated care.

The seed patient (fhir_fixtures/patients/seed.json) is copied under new ids (`lh-...`), and a
deterministic generator adds what a primary-care record accumulates: vital signs every six weeks, lab panels
and their reports, office visits, chronic conditions, medication refills, routine procedures and a
few old imaging studies, plus some spine care that lies outside the policy windows (physical therapy
and a lumbar MRI years ago). None of it changes a criterion's status (only the evidence outside the windows grows), so
the benchmark also checks that the answer stays right while the record grows.

    .venv/bin/python -m benchmarks.long_history [--out DIR]   # writes the patient Bundle and requests
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import uuid
from datetime import date, timedelta
from pathlib import Path

from cds_hooks.hooks.prefetch import resource_type_of

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "fhir_fixtures"
PATIENT_ID = "lh-patient"
SUBJECT = {"reference": f"Patient/{PATIENT_ID}"}
_NS = uuid.UUID("0d6f3c8e-2b41-5c7a-8e19-5a4b7c2d9e10")

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CPT = "http://www.ama-assn.org/go/cpt"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
UCUM = "http://unitsofmeasure.org"

VITALS = [  # LOINC, display, unit, mean, spread
    ("8867-4", "Heart rate", "/min", 74, 8),
    ("29463-7", "Body weight", "kg", 82, 3),
    ("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 28.4, 0.8),
]
LABS = [
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 6.4, 0.4),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.9, 0.1),
    ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 112, 15),
    ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 196, 20),
]
CHRONIC = [  # ICD-10-CM, display, onset year, clinical status
    ("I10", "Essential (primary) hypertension", 2016, "active"),
    ("E78.5", "Hyperlipidemia, unspecified", 2017, "active"),
    ("E11.9", "Type 2 diabetes mellitus without complications", 2019, "active"),
    ("K21.9", "Gastro-esophageal reflux disease without esophagitis", 2018, "active"),
    ("J06.9", "Acute upper respiratory infection, unspecified", 2020, "resolved"),
    ("J02.9", "Acute pharyngitis, unspecified", 2021, "resolved"),
    ("S93.401A", "Sprain of unspecified ligament of right ankle, initial encounter", 2022, "resolved"),
    ("R51.9", "Headache, unspecified", 2023, "resolved"),
    ("L30.9", "Dermatitis, unspecified", 2024, "resolved"),
    ("H52.4", "Presbyopia", 2019, "active"),
]
MEDICATIONS = [  # RxNorm, display
    ("314076", "lisinopril 10 MG Oral Tablet"),
    ("617312", "atorvastatin 20 MG Oral Tablet"),
    ("861007", "metformin hydrochloride 500 MG Oral Tablet"),
    ("198211", "omeprazole 20 MG Delayed Release Oral Capsule"),
]
ROUTINE_PROCEDURES = [  # CPT, display
    ("45378", "Colonoscopy, flexible; diagnostic"),
    ("92014", "Ophthalmological examination, established patient"),
    ("93000", "Electrocardiogram, routine ECG with at least 12 leads"),
    ("11102", "Tangential biopsy of skin, single lesion"),
]


def _uuid(name: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NS, name)}"


def _rename(value, old: str, new: str):
    """Every string in a JSON value with `old` replaced by `new` (ids, references, urn:uuid names)."""
    if isinstance(value, dict):
        return {k: _rename(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_rename(v, old, new) for v in value]
    if isinstance(value, str):
        return value.replace(old, new)
    return value


def _concept(system: str, code: str, display: str) -> dict:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _quantity_obs(rid: str, when: date, code: str, display: str, unit: str, value: float, category: str) -> dict:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "category": [_concept(OBS_CATEGORY, category, category.replace("-", " ").title())],
        "code": _concept(LOINC, code, display),
        "subject": SUBJECT,
        "effectiveDateTime": f"{when.isoformat()}T09:30:00Z",
        "valueQuantity": {"value": round(value, 1), "unit": unit, "system": UCUM, "code": unit},
    }


def _history(rng: random.Random) -> list[dict]:
    out: list[dict] = []
    start = date(2018, 1, 15)
    visits = [start + timedelta(days=42 * i + rng.randint(-6, 6)) for i in range(62)]  # every 6 weeks
    visits = [d for d in visits if d < date(2026, 10, 20)]
    for i, day in enumerate(visits):
        enc_id = f"lh-enc-office-{i:03d}"
        out.append(
            {
                "resourceType": "Encounter",
                "id": enc_id,
                "status": "finished",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "AMB",
                    "display": "ambulatory",
                },
                "type": [_concept(SNOMED, "185349003", "Encounter for check up")],
                "subject": SUBJECT,
                "period": {"start": f"{day.isoformat()}T09:00:00Z", "end": f"{day.isoformat()}T09:40:00Z"},
            }
        )
        out.append(
            {
                "resourceType": "Observation",
                "id": f"lh-bp-{i:03d}",
                "status": "final",
                "category": [_concept(OBS_CATEGORY, "vital-signs", "Vital Signs")],
                "code": _concept(LOINC, "85354-9", "Blood pressure panel with all children optional"),
                "subject": SUBJECT,
                "encounter": {"reference": f"Encounter/{enc_id}"},
                "effectiveDateTime": f"{day.isoformat()}T09:10:00Z",
                "component": [
                    {
                        "code": _concept(LOINC, "8480-6", "Systolic blood pressure"),
                        "valueQuantity": {
                            "value": rng.randint(118, 148),
                            "unit": "mm[Hg]",
                            "system": UCUM,
                            "code": "mm[Hg]",
                        },
                    },
                    {
                        "code": _concept(LOINC, "8462-4", "Diastolic blood pressure"),
                        "valueQuantity": {
                            "value": rng.randint(72, 92),
                            "unit": "mm[Hg]",
                            "system": UCUM,
                            "code": "mm[Hg]",
                        },
                    },
                ],
            }
        )
        for code, display, unit, mean, spread in VITALS:
            out.append(
                _quantity_obs(
                    f"lh-vital-{code}-{i:03d}", day, code, display, unit, rng.gauss(mean, spread), "vital-signs"
                )
            )
        if i % 3 == 0:  # a lab panel every quarter, with its report
            results = []
            for code, display, unit, mean, spread in LABS:
                obs = _quantity_obs(
                    f"lh-lab-{code}-{i:03d}", day, code, display, unit, rng.gauss(mean, spread), "laboratory"
                )
                out.append(obs)
                results.append({"reference": f"Observation/{obs['id']}"})
            out.append(
                {
                    "resourceType": "DiagnosticReport",
                    "id": f"lh-lab-report-{i:03d}",
                    "status": "final",
                    "category": [_concept("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB", "Laboratory")],
                    "code": _concept(LOINC, "24323-8", "Comprehensive metabolic 2000 panel - Serum or Plasma"),
                    "subject": SUBJECT,
                    "effectiveDateTime": f"{day.isoformat()}T09:30:00Z",
                    "issued": f"{day.isoformat()}T15:00:00Z",
                    "result": results,
                }
            )
        if i % 6 == 0:  # refills of every chronic medication twice a year
            for code, display in MEDICATIONS:
                out.append(
                    {
                        "resourceType": "MedicationRequest",
                        "id": f"lh-rx-{code}-{i:03d}",
                        "status": "completed" if day < date(2026, 5, 1) else "active",
                        "intent": "order",
                        "medicationCodeableConcept": _concept(RXNORM, code, display),
                        "subject": SUBJECT,
                        "authoredOn": day.isoformat(),
                        "dosageInstruction": [{"text": "1 tablet by mouth daily"}],
                    }
                )
    for n, (code, display, year, status) in enumerate(CHRONIC):
        out.append(
            {
                "resourceType": "Condition",
                "id": f"lh-condition-{n:02d}",
                "clinicalStatus": _concept(
                    "http://terminology.hl7.org/CodeSystem/condition-clinical", status, status.title()
                ),
                "verificationStatus": _concept(
                    "http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed"
                ),
                "category": [
                    _concept(
                        "http://terminology.hl7.org/CodeSystem/condition-category",
                        "problem-list-item",
                        "Problem List Item",
                    )
                ],
                "code": _concept(ICD10, code, display),
                "subject": SUBJECT,
                "onsetDateTime": f"{year}-0{1 + n % 9}-12",
                "recordedDate": f"{year}-0{1 + n % 9}-12",
            }
        )
    for n, (code, display) in enumerate(ROUTINE_PROCEDURES * 2):
        day = date(2018 + n, 3 + n % 6, 10)
        out.append(
            {
                "resourceType": "Procedure",
                "id": f"lh-procedure-{n:02d}",
                "status": "completed",
                "code": _concept(CPT, code, display),
                "subject": SUBJECT,
                "performedDateTime": f"{day.isoformat()}T10:00:00Z",
            }
        )
    for n, (code, display, modality) in enumerate(
        [
            ("71046", "Chest X-ray, 2 views", "DX"),
            ("70450", "CT head without contrast", "CT"),
            ("73721", "MRI right knee without contrast", "MR"),
        ]
    ):
        day = date(2019 + 2 * n, 5, 20)
        out.append(
            {
                "resourceType": "ImagingStudy",
                "id": f"lh-imaging-{n}",
                "status": "available",
                "subject": SUBJECT,
                "started": f"{day.isoformat()}T11:00:00Z",
                "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": modality}],
                "procedureCode": [_concept(CPT, code, display)],
                "description": display,
            }
        )
    # Spine care outside the windows: a lumbar MRI three years ago and a PT course two years ago.
    out.append(
        {
            "resourceType": "ImagingStudy",
            "id": "lh-lumbar-mri-2023",
            "status": "available",
            "subject": SUBJECT,
            "started": "2023-04-11T08:00:00Z",
            "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "MR"}],
            "procedureCode": [_concept(CPT, "72148", "MRI lumbar spine without contrast")],
            "description": "MRI lumbar spine without contrast",
        }
    )
    for n in range(4):
        day = date(2024, 2, 5) + timedelta(days=7 * n)
        out.append(
            {
                "resourceType": "Procedure",
                "id": f"lh-pt-2024-{n}",
                "status": "completed",
                "code": _concept(CPT, "97110", "Therapeutic exercises"),
                "subject": SUBJECT,
                "performedDateTime": f"{day.isoformat()}T14:00:00Z",
            }
        )
    return out


def patient_bundle() -> dict:
    """The long-history patient as a FHIR transaction Bundle (PUT per resource)."""
    seed = json.loads((FIXTURES / "patients" / "seed.json").read_text(encoding="utf-8"))
    bundle = _rename(seed, "seed-", "lh-")
    entries = []
    for entry in bundle["entry"]:
        resource = entry["resource"]
        entries.append(_entry(resource))
    for resource in _history(random.Random(7)):
        entries.append(_entry(resource))
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _entry(resource: dict) -> dict:
    url = f"{resource['resourceType']}/{resource['id']}"
    return {"fullUrl": _uuid(url), "resource": resource, "request": {"method": "PUT", "url": url}}


def draft_orders() -> dict:
    orders = json.loads((FIXTURES / "orders" / "seed.json").read_text(encoding="utf-8"))
    return _rename(orders, "seed-", "lh-")


def requests_for(bundle: dict, fhir_server: str) -> tuple[dict, dict]:
    """(with prefetch, without prefetch): order-sign requests shaped like the fixture requests.

    The prefetch holds one value per key of the rule pack's prefetch templates: the Patient itself
    for a read, a searchset Bundle of the template's resource type for a search.
    """
    template = json.loads((FIXTURES / "requests" / "seed-prefetch.json").read_text(encoding="utf-8"))
    pack = json.loads((REPO / "cql" / "lumbar-fusion" / "pack.json").read_text(encoding="utf-8"))
    resources = [copy.deepcopy(e["resource"]) for e in bundle["entry"]]
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    prefetch = {}
    for key, query in pack["prefetch"].items():
        rtype = resource_type_of(query)
        if rtype == "Patient":
            prefetch[key] = patient
            continue
        chosen = [r for r in resources if r["resourceType"] == rtype]
        prefetch[key] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(chosen),
            "entry": [
                {"fullUrl": f"{fhir_server}/{rtype}/{r['id']}", "resource": r, "search": {"mode": "match"}}
                for r in chosen
            ],
        }
    with_prefetch = {
        "hook": "order-sign",
        "hookInstance": str(uuid.uuid5(_NS, "long-history-prefetch")),
        "fhirServer": fhir_server,
        "fhirAuthorization": template["fhirAuthorization"],
        "context": {"userId": template["context"]["userId"], "patientId": PATIENT_ID, "draftOrders": draft_orders()},
        "prefetch": prefetch,
    }
    without = {k: v for k, v in with_prefetch.items() if k != "prefetch"}
    without["hookInstance"] = str(uuid.uuid5(_NS, "long-history-no-prefetch"))
    return with_prefetch, without


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "long-history")
    parser.add_argument("--fhir-server", default="http://127.0.0.1:8090/fhir")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    bundle = patient_bundle()
    with_prefetch, without = requests_for(bundle, args.fhir_server)
    for name, obj in (
        ("patient.json", bundle),
        ("request-prefetch.json", with_prefetch),
        ("request-no-prefetch.json", without),
    ):
        (args.out / name).write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")
    print(f"{len(bundle['entry'])} resources -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
