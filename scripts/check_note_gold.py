"""Check eval/note_text/gold.jsonl against the format in eval/note_text/README.md and print counts.

Usage: .venv/bin/python scripts/check_note_gold.py [path]   (exit 1 on any error)
"""

import collections
import datetime
import json
import re
import sys
from pathlib import Path

DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")
REGION = {"lumbar", "cervical", "thoracic", "knee", "shoulder", "hip", "other", None}
ENUMS = {
    ("pt-attendance", "region"): REGION,
    ("pt-attendance", "status"): {"completed", "discharged", "ongoing", "discontinued", "not-tolerated", None},
    ("conservative-care", "modality"): {
        "chiropractic",
        "home-exercise",
        "activity-modification",
        "acupuncture",
        "massage",
        "bracing",
        "nsaid",
        "other",
    },
    ("conservative-care", "region"): REGION,
    ("nicotine", "status"): {"current", "former", "never"},
    ("nicotine", "product"): {"cigarettes", "vaping", "smokeless", "cigar", "nrt", "any"},
    ("medication-trial", "outcome"): {"no-relief", "partial-relief", "relief", "side-effects", "ongoing", None},
    ("symptom-duration", "symptom"): {"back-pain", "leg-pain", "back-and-leg-pain", "neck-pain", "other"},
    ("red-flag", "kind"): {
        "cauda-equina",
        "saddle-anaesthesia",
        "bowel-bladder-dysfunction",
        "progressive-weakness",
        "malignancy",
        "infection",
        "fracture",
        "fever-weight-loss",
    },
}
FIELDS = {
    "pt-attendance": {
        "sessions_attended": "int",
        "sessions_planned": "int",
        "start": "date",
        "end": "date",
        "weeks": "num",
        "region": "enum",
        "status": "enum",
    },
    "conservative-care": {"modality": "enum", "region": "enum", "start": "date", "end": "date"},
    "nicotine": {"status": "enum", "product": "enum", "quit_date": "date", "amount": "text"},
    "medication-trial": {
        "drug": "drug",
        "start": "date",
        "stop": "date",
        "weeks": "num",
        "dose": "text",
        "outcome": "enum",
        "side_effect": "text",
    },
    "symptom-duration": {"symptom": "enum", "onset": "date", "duration_months": "num"},
    "red-flag": {"kind": "enum"},
}
ASSERTIONS = {"present", "negated", "hedged", "historical", "family", "planned"}
STYLES = {
    "pt-discharge",
    "pt-progress",
    "progress-note",
    "dictated",
    "outside-letter",
    "templated",
    "med-rec",
    "social-history",
    "ros",
    "history",
}
COMMON = {"type", "assertion", "span", "span_start", "span_end", "comment"}


def check(path):
    errors, rows = [], []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            rows.append((n, json.loads(line)))
    ids = collections.Counter(r["id"] for _, r in rows)
    for n, r in rows:
        where = f"line {n} ({r.get('id')})"

        def err(msg, where=where):
            errors.append(f"{where}: {msg}")

        if ids[r["id"]] > 1:
            err("duplicate id")
        extra = set(r) - {"id", "split", "style", "note_date", "text", "facts", "comment"}
        if extra:
            err(f"unknown keys {extra}")
        if r.get("split") not in ("dev", "heldout", "heldout-2"):
            err("split")
        if r.get("style") not in STYLES:
            err(f"style {r.get('style')}")
        try:
            note_date = datetime.date.fromisoformat(r["note_date"]).isoformat()
        except (KeyError, ValueError):
            err("note_date")
            continue
        text = r["text"]
        for k, f in enumerate(r["facts"]):
            fw = f"fact {k} ({f.get('type')} {f.get('span')!r})"
            spec = FIELDS.get(f.get("type"))
            if spec is None:
                err(f"{fw}: type")
                continue
            if set(f) - COMMON - set(spec) or set(spec) - set(f) or (COMMON - {"comment"}) - set(f):
                err(f"{fw}: fields {sorted(f)}")
                continue
            if f["assertion"] not in ASSERTIONS:
                err(f"{fw}: assertion")
            if text[f["span_start"] : f["span_end"]] != f["span"] or not f["span"]:
                err(f"{fw}: span does not match text[span_start:span_end]")
            for name, kind in spec.items():
                v = f[name]
                if kind == "enum" and v not in ENUMS[(f["type"], name)]:
                    err(f"{fw}: {name}={v!r}")
                elif kind == "date" and v is not None:
                    if not isinstance(v, str) or not DATE.match(v):
                        err(f"{fw}: {name}={v!r} is not YYYY[-MM[-DD]]")
                    elif v > note_date[: len(v)] and f["assertion"] != "planned":
                        err(f"{fw}: {name}={v} is after note_date {note_date} (only planned facts may be)")
                elif kind == "int" and v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                    err(f"{fw}: {name}={v!r}")
                elif kind == "num" and v is not None and (not isinstance(v, (int, float)) or v <= 0):
                    err(f"{fw}: {name}={v!r}")
                elif kind == "text" and v is not None and (not isinstance(v, str) or not v):
                    err(f"{fw}: {name}={v!r}")
                elif kind == "drug" and (not isinstance(v, str) or v != v.lower() or not v):
                    err(f"{fw}: drug {v!r} must be a lower-case generic name")
    return [r for _, r in rows], errors


def counts(rows):
    c = collections.OrderedDict()
    c["passages by split"] = collections.Counter(r["split"] for r in rows)
    c["passages by style"] = collections.Counter(r["style"] for r in rows)
    c["style x split"] = collections.Counter(f"{r['style']}/{r['split']}" for r in rows)
    facts = [(r, f) for r in rows for f in r["facts"]]
    c["facts by type"] = collections.Counter(f["type"] for _, f in facts)
    c["facts by assertion"] = collections.Counter(f["assertion"] for _, f in facts)
    c["type x assertion"] = collections.Counter(f"{f['type']}/{f['assertion']}" for _, f in facts)
    c["type x split"] = collections.Counter(f"{f['type']}/{r['split']}" for r, f in facts)
    c["assertion x split"] = collections.Counter(f"{f['assertion']}/{r['split']}" for r, f in facts)
    c["passages"] = collections.Counter(
        "no facts"
        if not r["facts"]
        else "no present fact"
        if all(f["assertion"] != "present" for f in r["facts"])
        else "with a present fact"
        for r in rows
    )
    return c


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "eval/note_text/gold.jsonl"
    rows, errors = check(path)
    for e in errors:
        print("ERROR", e)
    print(f"{len(rows)} passages, {sum(len(r['facts']) for r in rows)} facts")
    for name, counter in counts(rows).items():
        print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in sorted(counter.items())))
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
