"""Evaluation of the report-text extractor against the hand-annotated gold set, and its benchmark.

`cds-hooks report-text eval` prints precision and recall per field, level-grade accuracy and the
safety counts (a negated, uncertain, prior or superseded statement counted as a present finding);
`cds-hooks report-text bench` prints the extraction time per report. The gold set and its
annotation rules are in eval/report_text/gold.toml (reported by split: dev, heldout, all); every
further set `eval/report_text/gold-<name>.toml` (such as the cervical one) is reported on a line of its
own and checked against the targets its file states (`[targets]`). docs/report-text.md explains the
metrics, among them the precision of met-capable findings: the present, levelled findings that could
make a criterion met, each right only when the gold states it with the same values.
"""

from __future__ import annotations

import json
import statistics
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from cds_hooks.spine.report_text import PRESENCE_KINDS, RANK, Finding, extract_report

REPO_ROOT = Path(__file__).resolve().parents[2]
GOLD = REPO_ROOT / "eval" / "report_text" / "gold.toml"

# Targets checked by the test suite (tests/test_report_text_gold.py) and shown by the command.
LEVEL_GRADE_TARGET = 0.95

FIELDS = [
    "stenosis.level",
    "stenosis.compartment",
    "stenosis.side",
    "stenosis.grade",
    "negation",
    "uncertainty",
    "listhesis.level",
    "listhesis.direction",
    "listhesis.grade",
    "listhesis.mm",
    "translation",
    "angulation",
    *PRESENCE_KINDS,
    "sentence",
]
# The names a target may have in a gold set's [targets] table, and how a report is checked against it.
TARGETS = ("level_grade_accuracy", "met_capable_precision")


def gold_sets(default: Path = GOLD) -> list[Path]:
    """The further gold sets next to the default one (eval/report_text/gold-<name>.toml)."""
    return sorted(default.parent.glob(f"{default.stem}-*.toml"))


def load_gold(path: Path = GOLD) -> list[dict]:
    with open(path, "rb") as f:
        return tomllib.load(f)["passage"]


def load_targets(path: Path) -> dict[str, float]:
    """A gold set's own targets (its `[targets]` table); unknown names are refused."""
    with open(path, "rb") as f:
        targets = tomllib.load(f).get("targets", {})
    unknown = set(targets) - set(TARGETS)
    if unknown:
        raise ValueError(f"{path.name}: unknown targets {sorted(unknown)} (known: {', '.join(TARGETS)})")
    return targets


def run_passage(passage: dict) -> list[Finding]:
    section = "impression" if passage.get("source") == "conclusion" else "findings"
    return extract_report(
        [
            (
                passage.get("source", "presentedForm[0]"),
                passage["text"],
                passage.get("content_type", "text/plain"),
                section,
            )
        ]
    )


def _num(v):
    return None if v is None else float(v)


def _items(findings: list[dict], pid: str) -> dict[str, set]:
    """Per field, the set of tuples a passage asserts (gold dicts and predictions share this shape)."""
    s: dict[str, set] = {f: set() for f in FIELDS if f != "sentence"}
    for f in findings:
        kind, level, status = f["kind"], f.get("level"), f["status"]
        comp, side = f.get("compartment"), f.get("side")
        if status == "negated":
            s["negation"].add((pid, kind, level, comp))
        elif status == "uncertain":
            s["uncertainty"].add((pid, kind, level, comp))
        if status != "present":
            continue
        if kind == "stenosis":
            s["stenosis.level"].add((pid, level))
            s["stenosis.compartment"].add((pid, level, comp))
            s["stenosis.side"].add((pid, level, comp, side))
            if f.get("grade") is not None:
                s["stenosis.grade"].add((pid, level, comp, side, f["grade"]))
        elif kind == "listhesis":
            s["listhesis.level"].add((pid, level))
            if f.get("direction"):
                s["listhesis.direction"].add((pid, level, f["direction"]))
            if f.get("grade") is not None:
                s["listhesis.grade"].add((pid, level, int(f["grade"])))
            if f.get("mm") is not None:
                s["listhesis.mm"].add((pid, level, _num(f["mm"])))
        elif kind == "translation" and f.get("mm") is not None:
            s["translation"].add((pid, level, _num(f["mm"])))
        elif kind == "angulation" and f.get("deg") is not None:
            s["angulation"].add((pid, level, _num(f["deg"])))
        elif kind in PRESENCE_KINDS:
            s[kind].add((pid, level))
    return s


def _met_capable(findings: list[dict], pid: str) -> set[tuple]:
    """Present, levelled findings that could make a criterion met, with every value they state."""
    out: set[tuple] = set()
    for f in findings:
        if f["status"] != "present" or f.get("level") is None:
            continue
        kind = f["kind"]
        if kind == "stenosis" and f.get("grade") not in (None, "none"):
            out.add((pid, kind, f["level"], f.get("compartment"), f.get("side"), f["grade"]))
        elif kind == "listhesis":
            grade = None if f.get("grade") is None else int(f["grade"])
            out.add((pid, kind, f["level"], grade, f.get("direction"), _num(f.get("mm"))))
        elif kind == "translation" and f.get("mm") is not None:
            out.add((pid, kind, f["level"], _num(f["mm"])))
        elif kind == "angulation" and f.get("deg") is not None:
            out.add((pid, kind, f["level"], _num(f["deg"])))
        elif kind in PRESENCE_KINDS:
            out.add((pid, kind, f["level"]))
    return out


def as_gold_shape(f: Finding) -> dict:
    out = {
        "kind": f.kind,
        "level": f.level,
        "status": f.status,
        "compartment": f.compartment,
        "side": f.side,
        "direction": f.direction,
        "mm": f.mm,
        "deg": f.deg,
        "quote": f.quote,
        "start": f.start,
        "end": f.end,
        "section": f.section,
    }
    out["grade"] = f.grade if f.kind == "stenosis" else f.slip_grade
    return out


def _level_grades(findings: list[dict]) -> dict[str, str]:
    """Per level, the grade the criterion would read: the highest present grade, else none when denied."""
    out: dict[str, str] = {}
    for f in findings:
        if f["kind"] != "stenosis" or f.get("level") is None or f.get("grade") is None:
            continue
        if f["status"] not in ("present", "negated"):
            continue
        grade = f["grade"] if f["status"] == "present" else "none"
        if f["level"] not in out or RANK[grade] > RANK[out[f["level"]]]:
            out[f["level"]] = grade
    return out


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None


@dataclass
class Report:
    split: str
    passages: int = 0
    fields: dict[str, Counts] = field(default_factory=lambda: {f: Counts() for f in FIELDS})
    level_correct: int = 0
    level_total: int = 0
    negated_as_present: list[str] = field(default_factory=list)
    uncertain_as_present: list[str] = field(default_factory=list)
    prior_as_present: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    met: Counts = field(default_factory=Counts)
    targets: dict[str, float] = field(default_factory=dict)

    @property
    def level_grade_accuracy(self) -> float | None:
        return self.level_correct / self.level_total if self.level_total else None

    @property
    def met_capable_precision(self) -> float | None:
        return self.met.precision

    def as_dict(self) -> dict:
        return {
            "split": self.split,
            "passages": self.passages,
            "levelGradeAccuracy": self.level_grade_accuracy,
            "levelGradeCorrect": self.level_correct,
            "levelGradeTotal": self.level_total,
            "negatedAsPresent": self.negated_as_present,
            "uncertainAsPresent": self.uncertain_as_present,
            "priorOrSupersededAsPresent": self.prior_as_present,
            "metCapable": {"tp": self.met.tp, "fp": self.met.fp, "fn": self.met.fn, "precision": self.met.precision},
            **({"targets": self.targets} if self.targets else {}),
            "fields": {
                k: {"tp": c.tp, "fp": c.fp, "fn": c.fn, "precision": c.precision, "recall": c.recall}
                for k, c in self.fields.items()
            },
        }


def _safety(pid: str, gold: list[dict], pred: list[dict], report: Report) -> None:
    """A prediction counted as present where the gold only has a denied/hedged/prior statement."""

    def key(f, with_comp=True):
        return (f["kind"], f.get("level"), f.get("compartment") if with_comp else None)

    present_gold = {key(f) for f in gold if f["status"] == "present"}
    present_gold_levels = {(f["kind"], f.get("level")) for f in gold if f["status"] == "present"}
    for p in pred:
        if p["status"] != "present":
            continue
        for g in gold:
            if g["status"] == "present" or g["kind"] != p["kind"]:
                continue
            if g.get("level") not in (None, p.get("level")):
                continue
            same_comp = g.get("compartment") is None or g.get("compartment") == p.get("compartment")
            if not same_comp:
                continue
            if g.get("level") is None and (p["kind"], p.get("level")) in present_gold_levels:
                continue
            if key(p) in present_gold or (
                g.get("compartment") is None and (p["kind"], p.get("level")) in present_gold_levels
            ):
                continue
            if g["status"] in ("negated",):
                report.negated_as_present.append(
                    f"{pid}: {p['kind']} {p.get('level')} {p.get('compartment')} ← “{g['evidence']}”"
                )
            elif g["status"] == "uncertain":
                report.uncertain_as_present.append(
                    f"{pid}: {p['kind']} {p.get('level')} {p.get('compartment')} ← “{g['evidence']}”"
                )
            else:
                if p.get("grade") == g.get("grade"):
                    report.prior_as_present.append(
                        f"{pid}: {p['kind']} {p.get('level')} {p.get('grade')} ← “{g['evidence']}”"
                    )
            break


def evaluate(passages: list[dict], split: str = "all") -> Report:
    report = Report(split)
    for passage in passages:
        if split != "all" and passage["split"] != split:
            continue
        pid = passage["id"]
        report.passages += 1
        gold = passage["findings"]
        pred = [as_gold_shape(f) for f in run_passage(passage)]
        g_items, p_items = _items(gold, pid), _items(pred, pid)
        for name in g_items:
            c = report.fields[name]
            c.tp += len(g_items[name] & p_items[name])
            c.fp += len(p_items[name] - g_items[name])
            c.fn += len(g_items[name] - p_items[name])
            for miss in sorted(map(str, g_items[name] - p_items[name])):
                report.errors.append(f"{name} missed {miss}")
            for extra in sorted(map(str, p_items[name] - g_items[name])):
                report.errors.append(f"{name} extra {extra}")
        # Sentence: each present gold finding found at its level should quote the gold's words.
        c = report.fields["sentence"]
        for g in gold:
            if g["status"] != "present":
                continue
            match = [
                p
                for p in pred
                if p["status"] == "present"
                and p["kind"] == g["kind"]
                and p["level"] == g.get("level")
                and p["compartment"] == g.get("compartment")
            ]
            if not match:
                continue
            evidence = " ".join(g["evidence"].split()).lower()
            if any(evidence in p["quote"].lower() for p in match):
                c.tp += 1
            else:
                c.fn += 1
                c.fp += 1
                report.errors.append(f"sentence {pid} {g['level']} wants “{g['evidence']}”, got “{match[0]['quote']}”")
        met_gold, met_pred = _met_capable(gold, pid), _met_capable(pred, pid)
        report.met.tp += len(met_pred & met_gold)
        report.met.fp += len(met_pred - met_gold)
        report.met.fn += len(met_gold - met_pred)
        for extra in sorted(map(str, met_pred - met_gold)):
            report.errors.append(f"met-capable extra {extra}")
        lg_gold, lg_pred = _level_grades(gold), _level_grades(pred)
        for level in sorted(set(lg_gold) | set(lg_pred)):
            report.level_total += 1
            if lg_gold.get(level) == lg_pred.get(level):
                report.level_correct += 1
            else:
                report.errors.append(f"level-grade {pid} {level}: gold {lg_gold.get(level)}, got {lg_pred.get(level)}")
        _safety(pid, gold, pred, report)
    return report


def _pct(v: float | None) -> str:
    return "   -  " if v is None else f"{v:6.3f}"


def format_report(reports: list[Report], verbose: bool = False, sources: str | None = None) -> str:
    lines = []
    width = max(10, *(len(r.split) + 4 for r in reports))
    header = f"{'field':24}" + "".join(f"{r.split + ' P':>{width}}{r.split + ' R':>{width}}" for r in reports)
    lines.append(f"Report-text extraction against {sources or GOLD.relative_to(REPO_ROOT)}")
    lines.append("passages: " + ", ".join(f"{r.split} {r.passages}" for r in reports))
    lines.append("")
    lines.append(header)
    for name in FIELDS:
        row = f"{name:24}"
        for r in reports:
            c = r.fields[name]
            row += f"{_pct(c.precision):>{width}}{_pct(c.recall):>{width}}"
        lines.append(row)
    lines.append("")
    for r in reports:
        lines.append(
            f"[{r.split}] level-grade accuracy {_pct(r.level_grade_accuracy).strip()} "
            f"({r.level_correct}/{r.level_total}, target >= {LEVEL_GRADE_TARGET}); "
            f"negated counted as present: {len(r.negated_as_present)} (target 0); "
            f"uncertain counted as present: {len(r.uncertain_as_present)}; "
            f"prior or superseded counted as present: {len(r.prior_as_present)}; "
            f"met-capable precision {_pct(r.met_capable_precision).strip()} ({r.met.tp}/{r.met.tp + r.met.fp}"
            + (f", target >= {r.targets['met_capable_precision']}" if "met_capable_precision" in r.targets else "")
            + ")"
        )
    for r in reports:
        for item in r.negated_as_present + r.uncertain_as_present + r.prior_as_present:
            lines.append(f"  ! {item}")
    if verbose:
        for r in reports:
            for e in r.errors:
                lines.append(f"  [{r.split}] {e}")
    return "\n".join(lines)


def meets_targets(report: Report) -> bool:
    """No negated statement counted as present, and the report's targets met (level-grade accuracy
    >= LEVEL_GRADE_TARGET unless the gold set states its own targets)."""
    if report.negated_as_present:
        return False
    targets = report.targets or {"level_grade_accuracy": LEVEL_GRADE_TARGET}
    for name, target in targets.items():
        value = getattr(report, name)
        if value is None or value < target:
            return False
    return True


def evaluate_set(path: Path) -> Report:
    """One further gold set as one report, named by its file (gold-cervical.toml: "cervical")."""
    report = evaluate(load_gold(path))
    report.split = path.stem.split("-", 1)[1]
    report.targets = load_targets(path)
    return report


def run_eval(gold_path: Path = GOLD, verbose: bool = False, as_json: bool = False) -> int:
    passages = load_gold(gold_path)
    reports = [evaluate(passages, "dev"), evaluate(passages, "heldout"), evaluate(passages, "all")]
    # The default gold set brings its further sets along; a gold file named on the command line is read alone.
    further = [evaluate_set(p) for p in gold_sets(gold_path)] if gold_path == GOLD else []
    if as_json:
        print(json.dumps([r.as_dict() for r in reports + further], indent=2, ensure_ascii=False))
    else:
        names = (
            ", ".join(str(p.relative_to(REPO_ROOT)) for p in [gold_path, *gold_sets(gold_path)]) if further else None
        )
        print(format_report(reports + further, verbose, names))
    return 0 if all(meets_targets(r) for r in [reports[-1], *further]) else 1


def run_bench(gold_path: Path = GOLD, repeat: int = 20) -> int:
    """Extraction time per report: every gold passage and every fixture report, `repeat` times each."""
    from cds_hooks.spine.derived_findings import report_parts

    texts: list[list[tuple]] = []
    for p in load_gold(gold_path):
        section = "impression" if p.get("source") == "conclusion" else "findings"
        texts.append([(p["id"], p["text"], p.get("content_type", "text/plain"), section)])
    fixtures = []
    for bundle_path in sorted((REPO_ROOT / "fhir_fixtures" / "patients").glob("*.json")):
        bundle = json.loads(bundle_path.read_text(encoding="utf-8"))
        for entry in bundle.get("entry", []):
            r = entry.get("resource", {})
            if r.get("resourceType") == "DiagnosticReport":
                fixtures.append(report_parts(r))
    for label, corpus in (("gold passages", texts), ("fixture reports (conclusion + presentedForm)", fixtures)):
        if not corpus:
            continue
        for parts in corpus:  # warm up the regular expressions
            extract_report(parts)
        times = []
        for _ in range(repeat):
            for parts in corpus:
                t0 = time.perf_counter()
                extract_report(parts)
                times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        chars = sum(len(p[1]) for parts in corpus for p in parts) / len(corpus)
        print(
            f"{label}: {len(corpus)} reports x {repeat}, mean {statistics.mean(times):.2f} ms, "
            f"median {statistics.median(times):.2f} ms, p95 {times[int(len(times) * 0.95) - 1]:.2f} ms, "
            f"max {times[-1]:.2f} ms per report (mean {chars:.0f} characters)"
        )
    return 0
