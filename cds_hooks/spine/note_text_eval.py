"""Evaluation of the note reader against the hand-annotated gold set, and its benchmark.

`cds-hooks note-text eval [--split dev|heldout|heldout-2]` prints precision and recall per fact type (facts
asserted `present`, and facts of every assertion), field accuracy of the matched facts, and the
precision of the facts that can turn a criterion to "met"; `cds-hooks note-text bench` prints the
extraction time per note. The gold set and its annotation rules are in eval/note_text/README.md;
docs/note-text.md explains the metrics and names the failure modes.

Matching: a predicted fact matches a gold fact of the same passage, type, key (PT and care: region /
modality; nicotine: product and status; drug; symptom; red-flag kind) and assertion when their spans
overlap or the gold span lies in the predicted fact's sentence. A predicted `present` fact with no
such gold fact is a false positive, also when the gold has the mention with another assertion.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from cds_hooks.spine.note_text import NEUROPATHIC, TYPES, NoteFact, extract_note
from cds_hooks.spine.report_text_eval import Counts

REPO_ROOT = Path(__file__).resolve().parents[2]
GOLD = REPO_ROOT / "eval" / "note_text" / "gold.jsonl"

# Checked by tests/test_note_text_gold.py on the dev split and shown by the command.
MET_PRECISION_TARGET = 0.98

KEYS = {
    "pt-attendance": ("region",),
    "conservative-care": ("modality",),
    "nicotine": ("product", "status"),
    "medication-trial": ("drug",),
    "symptom-duration": ("symptom",),
    "red-flag": ("kind",),
}
FIELDS = {
    "pt-attendance": ("sessions_attended", "sessions_planned", "start", "end", "weeks", "status"),
    "conservative-care": ("region", "start", "end"),
    "nicotine": ("quit_date", "amount"),
    "medication-trial": ("start", "stop", "weeks", "dose", "outcome", "side_effect"),
    "symptom-duration": ("onset", "duration_months"),
    "red-flag": (),
}
DATE_FIELDS = {"start", "end", "stop", "quit_date", "onset"}


def load_gold(path: Path = GOLD) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def run_passage(passage: dict) -> list[dict]:
    return [prediction(f) for f in extract_note(passage["text"], passage["note_date"])]


def prediction(f: NoteFact) -> dict:
    return {
        "type": f.type,
        **f.fields,
        "assertion": f.assertion,
        "span_start": f.start,
        "span_end": f.end,
        "sentence_start": f.sentence_start,
        "sentence_end": f.sentence_end,
        "quote": f.quote,
    }


def can_turn_met(f: dict) -> bool:
    """A present fact a pack can count towards "met": lumbar PT attended, never / former-with-quit-date
    nicotine, a neuropathic-agent trial, a red flag."""
    if f["assertion"] != "present":
        return False
    if f["type"] == "pt-attendance":
        return f.get("region") == "lumbar"
    if f["type"] == "nicotine":
        return f.get("status") == "never" or (f.get("status") == "former" and f.get("quit_date") is not None)
    if f["type"] == "medication-trial":
        return f.get("drug") in NEUROPATHIC
    return f["type"] == "red-flag"


def _key(f: dict) -> tuple:
    return (f["type"],) + tuple(f.get(k) for k in KEYS[f["type"]])


def _same_value(name: str, gold, pred, relaxed: bool) -> bool:
    if gold == pred:
        return True
    if gold is None or pred is None:
        return False
    if name in DATE_FIELDS and relaxed:
        return str(pred)[: len(str(gold))] == str(gold)
    if isinstance(gold, (int, float)) and isinstance(pred, (int, float)):
        return abs(float(gold) - float(pred)) < 0.051
    if isinstance(gold, str) and isinstance(pred, str):
        return " ".join(gold.lower().split()) == " ".join(pred.lower().split())
    return False


def match(gold: list[dict], pred: list[dict]) -> list[tuple[dict | None, dict | None]]:
    """Pairs (gold, predicted); unmatched ones paired with None."""
    pairs: list[tuple[dict | None, dict | None]] = []
    free = list(gold)
    for p in pred:
        best = None
        for g in free:
            if _key(g) != _key(p) or g["assertion"] != p["assertion"]:
                continue
            overlap = g["span_start"] < p["span_end"] and p["span_start"] < g["span_end"]
            inside = p["sentence_start"] <= g["span_start"] < p["sentence_end"]
            if overlap or inside:
                if best is None or overlap:
                    best = g
                if overlap:
                    break
        if best is not None:
            free.remove(best)
        pairs.append((best, p))
    pairs += [(g, None) for g in free]
    return pairs


def _counts(c: Counts) -> dict:
    return {"tp": c.tp, "fp": c.fp, "fn": c.fn, "precision": c.precision, "recall": c.recall}


@dataclass
class Report:
    split: str
    passages: int = 0
    present: dict[str, Counts] = field(default_factory=lambda: {t: Counts() for t in TYPES})
    any_assertion: dict[str, Counts] = field(default_factory=lambda: {t: Counts() for t in TYPES})
    fields: dict[str, Counts] = field(default_factory=dict)  # "type.field" -> tp (same) / fn (different)
    met: Counts = field(default_factory=Counts)
    met_by_type: dict[str, Counts] = field(default_factory=dict)  # the same figure, per fact type
    met_errors: list[str] = field(default_factory=list)
    non_present_as_present: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def met_precision(self) -> float | None:
        return self.met.precision

    def as_dict(self) -> dict:
        return {
            "split": self.split,
            "passages": self.passages,
            "present": {t: _counts(c) for t, c in self.present.items()},
            "anyAssertion": {t: _counts(c) for t, c in self.any_assertion.items()},
            "fieldAccuracy": {k: (c.tp / (c.tp + c.fn) if c.tp + c.fn else None) for k, c in self.fields.items()},
            "metCapable": {
                **_counts(self.met),
                "target": MET_PRECISION_TARGET,
                "byType": {t: _counts(c) for t, c in self.met_by_type.items()},
                "errors": self.met_errors,
            },
            "nonPresentAsPresent": self.non_present_as_present,
        }


def _met_correct(g: dict | None, p: dict) -> bool:
    """A met-capable prediction is right when its gold fact is present and every value it states is the gold's."""
    if g is None or g["assertion"] != "present":
        return False
    names = {
        "pt-attendance": ("sessions_attended", "weeks", "start", "end"),
        "nicotine": ("quit_date",),
        "medication-trial": ("start", "stop", "weeks"),
        "red-flag": (),
    }[p["type"]]
    return all(p.get(n) is None or _same_value(n, g.get(n), p.get(n), relaxed=True) for n in names)


def evaluate(passages: list[dict], split: str = "all") -> Report:
    report = Report(split)
    for passage in passages:
        if split != "all" and passage["split"] != split:
            continue
        report.passages += 1
        pid = passage["id"]
        gold = passage["facts"]
        pred = run_passage(passage)
        for g, p in match(gold, pred):
            t = (g or p)["type"]
            if g is not None and p is not None:
                report.any_assertion[t].tp += 1
                if g["assertion"] == "present":
                    report.present[t].tp += 1
                    for name in FIELDS[t]:
                        c = report.fields.setdefault(f"{t}.{name}", Counts())
                        if _same_value(name, g.get(name), p.get(name), relaxed=False):
                            c.tp += 1
                        else:
                            c.fn += 1
                            report.errors.append(f"{pid} {t}.{name}: gold {g.get(name)!r}, got {p.get(name)!r}")
            elif p is not None:
                report.any_assertion[t].fp += 1
                if p["assertion"] == "present":
                    report.present[t].fp += 1
                report.errors.append(
                    f"{pid} extra {t} {p['assertion']} {_key(p)[1:]} «{passage['text'][p['span_start'] : p['span_end']]}»"
                )
                if p["assertion"] == "present":
                    other = [
                        x
                        for x in gold
                        if _key(x) == _key(p)
                        and x["assertion"] != "present"
                        and p["sentence_start"] <= x["span_start"] < p["sentence_end"]
                    ]
                    if other:
                        report.non_present_as_present.append(
                            f"{pid}: {t} {_key(p)[1:]} read as present, gold "
                            f"{other[0]['assertion']} «{other[0]['span']}»"
                        )
            else:
                report.any_assertion[t].fn += 1
                if g["assertion"] == "present":
                    report.present[t].fn += 1
                report.errors.append(f"{pid} missed {t} {g['assertion']} {_key(g)[1:]} «{g['span']}»")
            if p is not None and can_turn_met(p):
                by_type = report.met_by_type.setdefault(t, Counts())
                if _met_correct(g, p):
                    report.met.tp += 1
                    by_type.tp += 1
                else:
                    report.met.fp += 1
                    by_type.fp += 1
                    report.met_errors.append(
                        f"{pid}: {t} {_key(p)[1:]} "
                        + (
                            "not in the gold as present"
                            if g is None
                            else "; ".join(
                                f"{n} gold {g.get(n)!r} got {p.get(n)!r}"
                                for n in p
                                if n in FIELDS.get(t, ())
                                and p.get(n) is not None
                                and not _same_value(n, g.get(n), p.get(n), True)
                            )
                        )
                    )
            if g is not None and can_turn_met(g) and (p is None or not can_turn_met(p)):
                report.met.fn += 1
                report.met_by_type.setdefault(t, Counts()).fn += 1
    return report


def _pct(v: float | None) -> str:
    return "    - " if v is None else f"{v:6.3f}"


def format_report(reports: list[Report], verbose: bool = False) -> str:
    lines = [
        f"Note-text extraction against {GOLD.relative_to(REPO_ROOT)}",
        "passages: " + ", ".join(f"{r.split} {r.passages}" for r in reports),
        "",
    ]
    head = f"{'present facts':22}" + "".join(f"{r.split + ' P':>11}{r.split + ' R':>11}" for r in reports)
    lines.append(head)
    for t in TYPES:
        lines.append(
            f"{t:22}" + "".join(f"{_pct(r.present[t].precision):>11}{_pct(r.present[t].recall):>11}" for r in reports)
        )
    lines.append("")
    lines.append(f"{'any assertion':22}" + "".join(f"{r.split + ' P':>11}{r.split + ' R':>11}" for r in reports))
    for t in TYPES:
        lines.append(
            f"{t:22}"
            + "".join(f"{_pct(r.any_assertion[t].precision):>11}{_pct(r.any_assertion[t].recall):>11}" for r in reports)
        )
    lines.append("")
    lines.append(f"{'field accuracy':32}" + "".join(f"{r.split:>11}" for r in reports))
    names = sorted({k for r in reports for k in r.fields})
    for k in names:
        row = f"{k:32}"
        for r in reports:
            c = r.fields.get(k)
            row += f"{_pct(c.tp / (c.tp + c.fn) if c and c.tp + c.fn else None):>11}"
        lines.append(row)
    lines.append("")
    for r in reports:
        lines.append(
            f"[{r.split}] facts that can turn a criterion to met: precision {_pct(r.met.precision).strip()} "
            f"({r.met.tp}/{r.met.tp + r.met.fp}, target >= {MET_PRECISION_TARGET}), recall "
            f"{_pct(r.met.recall).strip()}; non-present mentions read as present: {len(r.non_present_as_present)}"
        )
        for t, c in sorted(r.met_by_type.items()):
            lines.append(
                f"  {t:20} precision {_pct(c.precision).strip()} ({c.tp}/{c.tp + c.fp}), recall {_pct(c.recall).strip()}"
            )
        for e in r.met_errors + r.non_present_as_present:
            lines.append(f"  ! {e}")
    if verbose:
        for r in reports:
            for e in r.errors:
                lines.append(f"  [{r.split}] {e}")
    return "\n".join(lines)


def meets_targets(report: Report) -> bool:
    return report.met.precision is not None and report.met.precision >= MET_PRECISION_TARGET


def run_eval(gold_path: Path = GOLD, split: str = "dev", verbose: bool = False, as_json: bool = False) -> int:
    """Figures for one split (the held-out split is for the final, single run)."""
    passages = load_gold(gold_path)
    reports = [evaluate(passages, split)]
    if as_json:
        print(json.dumps([r.as_dict() for r in reports], indent=2, ensure_ascii=False))
    else:
        print(format_report(reports, verbose))
    return 0 if meets_targets(reports[0]) else 1


def run_bench(gold_path: Path = GOLD, repeat: int = 20) -> int:
    """Extraction time per note over every gold passage, `repeat` passes, after one warm-up pass."""
    passages = load_gold(gold_path)
    for p in passages:
        extract_note(p["text"], p["note_date"])
    times = []
    for _ in range(repeat):
        for p in passages:
            t0 = time.perf_counter()
            extract_note(p["text"], p["note_date"])
            times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    chars = sum(len(p["text"]) for p in passages) / len(passages)
    print(
        f"gold passages: {len(passages)} notes x {repeat}, mean {statistics.mean(times):.3f} ms, "
        f"median {statistics.median(times):.3f} ms, p95 {times[int(len(times) * 0.95) - 1]:.3f} ms, "
        f"max {times[-1]:.3f} ms per note (mean {chars:.0f} characters)"
    )
    long_note = "\n".join(p["text"] for p in passages if p["split"] == "dev")
    t0 = time.perf_counter()
    for _ in range(max(1, repeat // 10)):
        extract_note(long_note, "2026-12-31")
    per = (time.perf_counter() - t0) * 1000 / max(1, repeat // 10)
    print(f"one long note (every dev passage joined, {len(long_note)} characters): {per:.1f} ms")
    return 0
