"""The judge: every define of a library under the reference engine (cql-execution, as published) and the
compiled evaluator, compared with zero tolerance.

    .venv/bin/python -m tests.support.cql_judge            # fixtures + long history
    .venv/bin/python -m tests.support.cql_judge --generated 2000 --seed 1

Results are compared as the worker serialises them (JSON): the same structure, the same strings, the same
numbers (an int and a float are equal when their values are; a boolean never equals a number). An
evaluation that raises must raise under both (messages are not compared).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from datetime import date, timedelta
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cds_hooks.engine.compiled.library import CompiledLibrary, CqlError, ParameterError

REPO = Path(__file__).resolve().parents[2]


def load_pack_files(pack: str = "lumbar-fusion", root: Path = REPO / "cql"):
    """(main ELM, [included ELM], [ValueSet]) read straight from cql/<pack>/ and cql/common/."""
    elms = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((root / pack / "elm").glob("*.json"))]
    common = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((root / "common" / "elm").glob("*.json"))]
    valuesets = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((root / pack / "valuesets").glob("*.json"))]
    if len(elms) != 1:
        raise ValueError(f"expected one library in cql/{pack}/elm, found {len(elms)}")
    return elms[0], common, valuesets


def strict_equal(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(strict_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


@dataclass
class Case:
    name: str
    resources: list
    parameters: dict
    patient_id: str


@dataclass
class Report:
    cases: int = 0
    defines: int = 0
    errors_both: int = 0
    disagreements: list = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.cases} patients, {self.defines} define results compared, {self.errors_both} raised under both, "
            f"{len(self.disagreements)} disagreements"
        )


class Judge:
    """Holds both engines loaded with the same library."""

    def __init__(
        self, elm, includes, valuesets, workers: int = 2, timeout: float = 60.0, expressions: list[str] | None = None
    ):
        """`expressions`: only these defines (all of the library's when None)."""
        from cds_hooks.engine.bridge import CqlEngine  # narrow import point: the engine bridge

        self.expressions = expressions
        self.elm = elm
        self.compiled = CompiledLibrary.load(elm, valuesets, includes)
        self.reference = CqlEngine(workers=workers, accelerate=False, timeout=timeout)
        self.reference.load([elm, *includes], valuesets)
        ident = elm["library"]["identifier"]
        self.lib_id, self.lib_version = ident["id"], ident.get("version")

    def close(self):
        self.reference.close()

    def run_reference(self, case: Case):
        from cds_hooks.engine.bridge import EngineError

        try:
            return self.reference.evaluate(
                self.lib_id,
                self.lib_version,
                case.resources,
                case.patient_id,
                case.parameters,
                self.expressions,
                execution_datetime="2024-06-01T12:00:00.000Z",
            )
        except EngineError as exc:
            if exc.kind in ("timeout", "crashed", "unavailable"):
                raise
            return ("error", exc.error_type or "evaluation")

    def run_compiled(self, case: Case, names):
        try:
            return self.compiled.evaluate(
                case.resources,
                case.parameters,
                case.patient_id,
                expressions=names,
                execution_datetime="2024-06-01T12:00:00.000Z",
            )
        except ParameterError:
            return ("error", "parameter")
        except (CqlError, ValueError, TypeError, AttributeError, KeyError, IndexError, ZeroDivisionError) as exc:
            return ("error", f"evaluation:{type(exc).__name__}:{exc}")

    def compare(self, cases, report: Report | None = None, threads: int = 2, on_disagreement=None) -> Report:
        report = report or Report()
        lock = threading.Lock()

        def one(case):
            ref = self.run_reference(case)
            names = list(ref) if isinstance(ref, dict) else self.expressions
            got = self.run_compiled(case, names)
            with lock:
                report.cases += 1
                if isinstance(ref, tuple) or isinstance(got, tuple):
                    if (
                        isinstance(ref, tuple)
                        and isinstance(got, tuple)
                        and ref[1].split(":")[0] == got[1].split(":")[0]
                    ):
                        report.errors_both += 1
                    else:
                        report.disagreements.append(
                            (
                                case.name,
                                "*",
                                ref if isinstance(ref, tuple) else "ok",
                                got if isinstance(got, tuple) else "ok",
                            )
                        )
                        if on_disagreement:
                            on_disagreement(case, "*", ref, got)
                    return
                for name, rv in ref.items():
                    report.defines += 1
                    gv = got.get(name)
                    if not strict_equal(rv, gv):
                        report.disagreements.append((case.name, name, rv, gv))
                        if on_disagreement:
                            on_disagreement(case, name, rv, gv)

        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(one, cases))
        return report


def fixture_cases(pack: str = "lumbar-fusion") -> list[Case]:
    """The engine call of every fixture request whose orders the pack claims (first case) and, for the
    lumbar pack, of the long-history patient."""
    from benchmarks.engine_ab import engine_calls

    _, calls = engine_calls(pack)
    return [Case(name, c["resources"], c["parameters"], c["patient_id"]) for name, c in calls]


CORPORA = REPO / "fhir_fixtures" / "corpus"


def corpus_cases(pack: str = "lumbar-fusion") -> list[Case]:
    """The engine call of every request of the pack's adversarial corpus (fhir_fixtures/corpus/<pack>/)."""
    from benchmarks.engine_ab import engine_calls

    requests = [
        (p.stem, json.loads(p.read_text(encoding="utf-8")))
        for p in sorted((CORPORA / pack / "requests").glob("*.json"))
    ]
    _, calls = engine_calls(pack, requests)
    return [Case(name, c["resources"], c["parameters"], c["patient_id"]) for name, c in calls]


def _pack_doc(pack: str) -> dict:
    return json.loads((REPO / "cql" / pack / "pack.json").read_text(encoding="utf-8"))


def _declared_parameters(pack: str) -> set[str]:
    elm, _, _ = load_pack_files(pack)
    return {p["name"] for p in elm["library"].get("parameters", {}).get("def", [])}


# Values outside every profile (a wider window, a stricter slip rule, a care period): applied to a pack
# whose library declares all of them.
OFF_PROFILE = {
    "SpondylolisthesisInstability": "grade2+",
    "AdmitDiscogenic": True,
    "ImagingWindowMonths": 24,
    "MinCareMonths": 3,
}


def all_fixture_case_variants(cases: list[Case] | None = None, pack: str = "lumbar-fusion") -> list[Case]:
    """Every fixture of the pack (or every case of `cases`) with a few parameter variants (several levels of
    the pack's region, no level, failed sources, each other profile of the pack, values off every profile),
    each with only the parameters the pack's library declares."""
    from cds_hooks.spine.levels import region

    doc = _pack_doc(pack)
    declared = _declared_parameters(pack)
    spine = doc.get("spine") or {}
    several = list(region(spine["region"]).interspaces[-3:]) if spine.get("region") else []
    profiles = [name for name in doc["profiles"] if name != doc.get("defaultProfile", "default")]
    out = []

    def add(name: str, c: Case, parameters: dict) -> None:
        out.append(Case(name, c.resources, {k: v for k, v in parameters.items() if k in declared}, c.patient_id))

    for c in fixture_cases(pack) if cases is None else cases:
        out.append(c)
        p = dict(c.parameters)
        # Signed three weeks before the planned date: the gap dates count a restart from the signing day.
        signed = (
            (date.fromisoformat(p["ReferenceDate"]) - timedelta(days=21)).isoformat()
            if p.get("ReferenceDate")
            else None
        )
        add(c.name + "+levels", c, {**p, "OperativeLevels": several, "SigningDate": signed})
        add(c.name + "+nolevel", c, {**p, "OperativeLevels": []})
        add(c.name + "+failed", c, {**p, "FailedSources": ["Condition", "Observation", "Procedure"]})
        for profile in profiles:
            add(c.name + "+" + profile, c, {**p, **doc["profiles"][profile]["parameters"]})
        if set(OFF_PROFILE) <= declared:
            add(
                c.name + "+policy",
                c,
                {**p, **OFF_PROFILE, "ReferenceDate": "2025-02-28", "SigningDate": "2025-01-15"},
            )
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pack", default="lumbar-fusion")
    ap.add_argument("--generated", type=int, default=0, help="also this many generated patients")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--show", type=int, default=10)
    args = ap.parse_args(argv)
    elm, includes, valuesets = load_pack_files(args.pack)
    judge = Judge(elm, includes, valuesets, workers=args.workers)
    try:
        report = judge.compare(all_fixture_case_variants(pack=args.pack), threads=args.workers)
        print("fixtures:", report.summary())
        corpus = judge.compare(all_fixture_case_variants(corpus_cases(args.pack), args.pack), threads=args.workers)
        print("corpus:", corpus.summary())
        report.disagreements += corpus.disagreements
        if args.generated:
            from tests.support.cql_patients import generate_cases

            g = judge.compare(generate_cases(args.generated, args.seed), threads=args.workers)
            print("generated:", g.summary())
            report.disagreements += g.disagreements
        for d in report.disagreements[: args.show]:
            print(
                "DISAGREE",
                d[0],
                d[1],
                "\n  reference:",
                json.dumps(d[2])[:800],
                "\n  compiled: ",
                json.dumps(d[3])[:800],
            )
        return 1 if report.disagreements else 0
    finally:
        judge.close()


if __name__ == "__main__":
    sys.exit(main())
