"""`cds-hooks corpus eval`: run an adversarial corpus through the service and score it against its expectations.

A corpus (`fhir_fixtures/corpus/<pack>/`) holds `order-sign` requests (`requests/<id>.json`) and, in
`expected.json`, what a careful utilization reviewer expects of each: whether a card is due, its
indicator, verdict and pathway, and the status of the criteria the policy dictates (per level for
level-specific ones); the format is described in the corpus README. Every request goes through the
same application as `cds-hooks evaluate` (in process, the real CQL engine), and each expectation is
one check:

- **false reassurance**: a required criterion expected not met, not documented or not checkable
  that comes back met or waived; an `info` card where a `warning` is due; no card where one is due;
  a `likely-to-pass` verdict where another is expected;
- **false alarm**: a criterion expected met or waived that comes back otherwise; a `warning` where
  `info` is expected; a card where none is due, or more cards than the operation calls for;
- any other difference is a plain disagreement (a not-met reported as not-documented, a pathway, a
  summary over its length, a suggestion that should be absent).

Every disagreement is listed. False alarms are also counted by case, since one missed finding can
show as both a criterion and an indicator.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cds_hooks.cli.offline import offline_app
from cds_hooks.config import REPO_ROOT
from cds_hooks.pipeline.cards import EXTENSION_KEY, VERDICT_KEY

MET = ("met", "waived")
UNMET = ("not-met", "not-documented", "unavailable")
AGREE, REASSURANCE, ALARM, DISAGREE = "agree", "false-reassurance", "false-alarm", "disagree"


@dataclass
class Check:
    case: str
    what: str  # "card", "indicator", "verdict", "pathway", "criterion <id>@<level>", "card count", ...
    expected: object
    got: object
    kind: str


@dataclass
class Observed:
    """What the service answered for one request, reduced to what the expectations speak of."""

    status: int
    cards: list[dict] = field(default_factory=list)

    @property
    def card(self) -> dict | None:
        return self.cards[0] if self.cards else None

    @property
    def verdict_extension(self) -> dict:
        card = self.card or {}
        ext = (card.get("extension") or {}).get(VERDICT_KEY)
        return ext if isinstance(ext, dict) else {}

    def results(self) -> dict[tuple[str, str | None], dict]:
        card = self.card or {}
        items = (card.get("extension") or {}).get(EXTENSION_KEY) or []
        return {(r["id"], r.get("level")): r for r in items if isinstance(r, dict) and "id" in r}


def _criterion_checks(case_id: str, expected: dict, observed: Observed, required: set[str]) -> list[Check]:
    results = observed.results()
    checks = []
    for cid, want in (expected.get("criteria") or {}).items():
        wanted = want.items() if isinstance(want, dict) else [(None, want)]
        for level, status in wanted:
            got = results.get((cid, level))
            what = f"criterion {cid}" + (f"@{level}" if level else "")
            is_required = cid in required or bool(got and got.get("required"))
            got_status = got.get("status") if got else None
            if got_status == status:
                kind = AGREE
            elif status in UNMET and got_status in MET:
                kind = REASSURANCE if is_required else DISAGREE
            elif status in MET and got_status in UNMET:
                kind = ALARM
            else:
                kind = DISAGREE
            checks.append(Check(case_id, what, status, got_status, kind))
    return checks


def score_case(case: dict, observed: Observed, required: set[str]) -> list[Check]:
    """Every check of one corpus case against what the service answered.

    `required`: the criteria the case's profile requires (a criterion the answer marks required
    counts as well).
    """
    cid = case["id"]
    expect = case["expect"]
    checks: list[Check] = []
    card = observed.card
    due = bool(expect.get("card"))
    if due and card is None:
        checks.append(Check(cid, "card", True, False, REASSURANCE))
    elif not due and card is not None:
        checks.append(Check(cid, "card", False, True, ALARM))
    else:
        checks.append(Check(cid, "card", due, card is not None, AGREE))
    if card is None:
        return checks

    want, got = expect.get("indicator"), card.get("indicator")
    if want is not None:
        if want == got:
            kind = AGREE
        elif want in ("warning", "critical") and got == "info":
            kind = REASSURANCE
        elif want == "info" and got in ("warning", "critical"):
            kind = ALARM
        else:
            kind = DISAGREE
        checks.append(Check(cid, "indicator", want, got, kind))

    want, got = expect.get("verdict"), observed.verdict_extension.get("verdict")
    if want is not None:
        kind = AGREE if want == got else REASSURANCE if got == "likely-to-pass" else DISAGREE
        checks.append(Check(cid, "verdict", want, got, kind))

    if "pathway" in expect:
        got = observed.verdict_extension.get("pathway")
        checks.append(Check(cid, "pathway", expect["pathway"], got, AGREE if expect["pathway"] == got else DISAGREE))

    checks.extend(_criterion_checks(cid, expect, observed, required))

    if "cardCount" in expect:
        want, got = expect["cardCount"], len(observed.cards)
        kind = AGREE if want == got else ALARM if got > want else DISAGREE
        checks.append(Check(cid, "card count", want, got, kind))

    if "summaryMaxChars" in expect:
        summary = card.get("summary") or ""
        fits = len(summary) < expect["summaryMaxChars"] and not summary.endswith("…")
        checks.append(
            Check(
                cid,
                "summary",
                f"< {expect['summaryMaxChars']} characters, verdict kept",
                f"{len(summary)}: {summary}",
                AGREE if fits else DISAGREE,
            )
        )

    for sid in expect.get("suggestionsAbsent", []):
        present = sid in (observed.verdict_extension.get("suggestions") or [])
        checks.append(
            Check(
                cid, f"suggestion {sid}", "absent", "present" if present else "absent", DISAGREE if present else AGREE
            )
        )
    return checks


@dataclass
class Report:
    cases: int
    checks: list[Check]

    def of_kind(self, kind: str) -> list[Check]:
        return [c for c in self.checks if c.kind == kind]

    @property
    def agreement(self) -> float:
        return len(self.of_kind(AGREE)) / len(self.checks) if self.checks else 1.0

    @property
    def cases_in_agreement(self) -> int:
        differing = {c.case for c in self.checks if c.kind != AGREE}
        return self.cases - len(differing)

    def cases_of_kind(self, kind: str) -> list[str]:
        return sorted({c.case for c in self.of_kind(kind)})

    def as_json(self) -> dict:
        return {
            "cases": self.cases,
            "casesInAgreement": self.cases_in_agreement,
            "checks": len(self.checks),
            "agreement": round(self.agreement, 4),
            "falseReassurance": len(self.of_kind(REASSURANCE)),
            "falseReassuranceCases": self.cases_of_kind(REASSURANCE),
            "falseAlarms": len(self.of_kind(ALARM)),
            "falseAlarmCases": self.cases_of_kind(ALARM),
            "disagreements": [asdict(c) for c in self.checks if c.kind != AGREE],
        }

    def as_text(self) -> str:
        lines = [
            f"cases: {self.cases} ({self.cases_in_agreement} in full agreement)",
            f"checks: {len(self.checks)}, agreement {self.agreement:.1%}",
            f"FALSE REASSURANCE: {len(self.of_kind(REASSURANCE))} (in {len(self.cases_of_kind(REASSURANCE))} cases)",
            f"FALSE ALARM: {len(self.of_kind(ALARM))} (in {len(self.cases_of_kind(ALARM))} cases)",
        ]
        differing = [c for c in self.checks if c.kind != AGREE]
        if differing:
            lines.append("")
            lines.append("disagreements:")
            order = {REASSURANCE: 0, ALARM: 1, DISAGREE: 2}
            for c in sorted(differing, key=lambda c: (order[c.kind], c.case, c.what)):
                lines.append(f"  [{c.kind}] {c.case}: {c.what}: expected {c.expected}, got {c.got}")
        return "\n".join(lines)


def load_corpus(folder: Path) -> list[tuple[dict, dict]]:
    """(expectation, request) for every case of a corpus folder, in the order of expected.json."""
    with open(folder / "expected.json", encoding="utf-8") as f:
        expected = json.load(f)
    out = []
    for case in expected:
        with open(folder / "requests" / f"{case['id']}.json", encoding="utf-8") as f:
            out.append((case, json.load(f)))
    return out


def run_corpus(client, service_path: str, pack, corpus: list[tuple[dict, dict]]) -> Report:
    """Post every request to `service_path` with a Flask test client and score the answers."""
    checks: list[Check] = []
    for case, body in corpus:
        response = client.post(service_path, json=body)
        answer = response.get_json(silent=True) or {}
        observed = Observed(response.status_code, answer.get("cards") or [] if response.status_code == 200 else [])
        required = set(pack.profile(case.get("profile")).required) if pack else set()
        checks.extend(score_case(case, observed, required))
    return Report(len(corpus), checks)


def _eval(args) -> int:
    """Score one pack's corpus (--pack), or, without --pack, every pack that has one, each on its own."""
    from cds_hooks.web.extensions import registry_of

    app = offline_app()
    registry = registry_of(app)
    corpora = REPO_ROOT / "fhir_fixtures" / "corpus"
    try:
        packs = sorted(registry.packs(), key=lambda p: p.folder.name)
        if args.pack:
            chosen = [p for p in packs if p.folder.name == args.pack]
            if not chosen:
                print(f"no rule pack named {args.pack!r}", file=sys.stderr)
                return 2
        elif args.corpus and len(packs) > 1:
            print("name the rule pack whose service answers that corpus with --pack", file=sys.stderr)
            return 2
        else:
            chosen = [p for p in packs if args.corpus or (corpora / p.folder.name).is_dir()]
        reports = {}
        for pack in chosen:
            folder = Path(args.corpus) if args.corpus else corpora / pack.folder.name
            try:
                corpus = load_corpus(folder)
            except (OSError, ValueError, KeyError) as exc:
                print(f"cannot read the corpus in {folder}: {exc}", file=sys.stderr)
                return 2
            reports[pack.folder.name] = run_corpus(app.test_client(), f"/cds-services/{pack.service_id}", pack, corpus)
    finally:
        registry.engine.close()
    if args.json:
        # One pack: its figures, as before; several: the figures of each, by pack.
        out = {name: r.as_json() for name, r in reports.items()}
        print(json.dumps(next(iter(out.values())) if len(out) == 1 else out, indent=2))
    else:
        print(
            "\n\n".join(
                r.as_text() if len(reports) == 1 else f"== {name} ==\n{r.as_text()}" for name, r in reports.items()
            )
        )
    return 0


def register(sub) -> None:
    corpus = sub.add_parser("corpus", help="run an adversarial corpus and count false reassurance and false alarms")
    actions = corpus.add_subparsers(dest="action", required=True)
    evaluate = actions.add_parser("eval", help="evaluate every corpus request and compare with expected.json")
    evaluate.add_argument("--pack", help="rule pack folder name under cql/ (default: every pack with a corpus)")
    evaluate.add_argument("--corpus", help="corpus folder (default fhir_fixtures/corpus/<pack>)")
    evaluate.add_argument("--json", action="store_true", help="the figures and every disagreement as JSON")
    evaluate.set_defaults(func=_eval)
