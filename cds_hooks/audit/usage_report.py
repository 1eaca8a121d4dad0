"""`cds-hooks report`: what the audit trail says about a period, as terminal tables or CSV.

Sections: call volume per day; latency percentiles per service and stage; feedback on cards;
overrides by reason; criteria most often unmet; suggestion acceptance. Only plain-text columns are
read (nothing is decrypted); the read is still written to the access log. One go-live mode at a time
(audit/go_live.py): live calls by default; `shadow` reports what would have been shown.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import distinct, func, select

from cds_hooks.audit.call_record import UNMET
from cds_hooks.audit.schema import (
    audit_call,
    audit_card,
    audit_criterion,
    audit_suggestion,
    feedback,
    feedback_suggestion,
)
from cds_hooks.audit.store import AuditStore, iso, period_text

PERCENTILES = (50, 90, 95, 99)
LATENCY_PARTS = (("total", None), ("orders", "orders"), ("fetch", "data"), ("engine", "engine"), ("cards", "cards"))
STATUSES = ("met", "not-met", "not-documented", "unavailable", "waived")


@dataclass
class Table:
    name: str
    title: str
    columns: list[str]
    rows: list[list] = field(default_factory=list)
    keys: int = 1  # leading columns that name a row; the rest are measures
    note: str | None = None


@dataclass
class Report:
    since: datetime | None
    until: datetime | None
    service: str | None
    tables: list[Table]
    mode: str = "live"


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _rate(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


class _Query:
    def __init__(self, since, until, service, mode="live"):
        self.since, self.until, self.service, self.mode = since, until, service, mode

    def calls(self, query):
        if self.mode != "all":
            query = query.where(audit_call.c.mode == self.mode)
        if self.since is not None:
            query = query.where(audit_call.c.received_at >= self.since)
        if self.until is not None:
            query = query.where(audit_call.c.received_at < self.until)
        if self.service:
            query = query.where(audit_call.c.service_id == self.service)
        return query

    def feedback(self, query):
        if self.since is not None:
            query = query.where(feedback.c.received_at >= self.since)
        if self.until is not None:
            query = query.where(feedback.c.received_at < self.until)
        if self.service:
            query = query.where(feedback.c.service_id == self.service)
        return query


def _volume_and_latency(conn, q: _Query) -> tuple[Table, Table]:
    per_day: dict[tuple[str, str], Counter] = defaultdict(Counter)
    durations: dict[tuple[str, str], list[float]] = defaultdict(list)
    rows = conn.execute(
        q.calls(
            select(
                audit_call.c.received_at,
                audit_call.c.service_id,
                audit_call.c.status,
                audit_call.c.card_count,
                audit_call.c.duration_ms,
                audit_call.c.timings,
            )
        )
    )
    for received_at, service, status, cards, duration, timings in rows:
        day = per_day[(received_at.date().isoformat(), service)]
        day["calls"] += 1
        day["200" if status == 200 else f"{status // 100}xx"] += 1
        day["cards"] += cards or 0
        if status == 200:
            for part, key in LATENCY_PARTS:
                value = duration if key is None else (timings or {}).get(key)
                if value is not None:
                    durations[(service, part)].append(float(value))
    volume = Table("volume", "Call volume per day", ["day", "service", "calls", "200", "4xx", "5xx", "cards"], keys=2)
    for (day, service), c in sorted(per_day.items()):
        volume.rows.append([day, service, c["calls"], c["200"], c["4xx"], c["5xx"], c["cards"]])
    if per_day:
        total = sum(per_day.values(), Counter())
        volume.rows.append(
            ["all", q.service or "all", total["calls"], total["200"], total["4xx"], total["5xx"], total["cards"]]
        )
    latency = Table(
        "latency",
        "Latency of answered calls (200), milliseconds",
        ["service", "part", "calls", *[f"p{p}" for p in PERCENTILES], "max"],
        keys=2,
        note="total is the whole call as the service timed it; the parts are pipeline stages",
    )
    order = {part: i for i, (part, _) in enumerate(LATENCY_PARTS)}
    for (service, part), values in sorted(durations.items(), key=lambda kv: (kv[0][0], order[kv[0][1]])):
        values.sort()
        latency.rows.append(
            [service, part, len(values), *[_ms(percentile(values, p)) for p in PERCENTILES], _ms(values[-1])]
        )
    return volume, latency


def _feedback_summary(conn, q: _Query) -> Table:
    cards = conn.scalar(
        q.calls(select(func.count()).select_from(audit_card).join(audit_call, audit_call.c.id == audit_card.c.call_id))
    )

    def on_cards(query):
        return q.calls(
            query.join(audit_card, audit_card.c.uuid == feedback.c.card_uuid)
            .join(audit_call, audit_call.c.id == audit_card.c.call_id)
            .where(feedback.c.matched.is_(True))
        )

    by_outcome = dict(
        conn.execute(
            on_cards(select(feedback.c.outcome, func.count(distinct(feedback.c.card_uuid)))).group_by(
                feedback.c.outcome
            )
        ).all()
    )
    with_feedback = conn.scalar(on_cards(select(func.count(distinct(feedback.c.card_uuid)))))
    unmatched = conn.scalar(q.feedback(select(func.count()).select_from(feedback).where(feedback.c.matched.is_(False))))
    t = Table(
        "feedback",
        "Feedback on the cards of the period",
        ["measure", "value", "of cards"],
        note="unmatched: feedback received in the period on cards this audit trail does not hold",
    )
    t.rows += [
        ["cards returned", cards, "-"],
        ["cards with feedback", with_feedback, _rate(with_feedback, cards)],
        ["accepted", by_outcome.get("accepted", 0), _rate(by_outcome.get("accepted", 0), cards)],
        ["overridden", by_outcome.get("overridden", 0), _rate(by_outcome.get("overridden", 0), cards)],
        ["unmatched feedback entries", unmatched, "-"],
    ]
    return t


def _overrides(conn, q: _Query) -> Table:
    rows = conn.execute(
        q.feedback(
            select(feedback.c.reason_code, feedback.c.reason_display, func.count())
            .where(feedback.c.outcome == "overridden")
            .group_by(feedback.c.reason_code, feedback.c.reason_display)
        )
    ).all()
    merged: dict[str, list] = {}
    for code, display, n in rows:
        key = code or "(none given)"
        entry = merged.setdefault(key, [key, display or "", 0])
        entry[1] = entry[1] or display or ""
        entry[2] += n
    total = sum(e[2] for e in merged.values())
    t = Table(
        "overrides",
        "Overrides by reason (feedback received in the period)",
        ["reason", "display", "overrides", "share"],
    )
    for code, display, n in sorted(merged.values(), key=lambda e: (-e[2], e[0])):
        t.rows.append([code, display, n, _rate(n, total)])
    if merged:
        t.rows.append(["all", "", total, _rate(total, total)])
    return t


def _criteria(conn, q: _Query, informational: frozenset[str] = frozenset()) -> Table:
    """Informational criteria (a red flag: "met" means one is present, "not documented" is the usual,
    good case) count as unmet only when they could not be checked."""
    rows = conn.execute(
        q.calls(
            select(audit_criterion.c.criterion, audit_criterion.c.status, audit_criterion.c.required, func.count())
            .join(audit_card, audit_card.c.uuid == audit_criterion.c.card_uuid)
            .join(audit_call, audit_call.c.id == audit_card.c.call_id)
            .group_by(audit_criterion.c.criterion, audit_criterion.c.status, audit_criterion.c.required)
        )
    ).all()
    counts: dict[str, Counter] = defaultdict(Counter)
    for criterion, status, required, n in rows:
        counts[criterion][status] += n
        if required:
            counts[criterion]["(required)"] += n
            counts[criterion]["(required unmet)"] += n if status in UNMET else 0
    unmet_statuses = {c: ("unavailable",) if c in informational else UNMET for c in counts}
    t = Table(
        "criteria",
        "Criteria most often unmet (not-met, not-documented or unavailable)",
        ["criterion", "results", *STATUSES, "unmet", "unmet share", "required", "unmet when required"],
        note="ranked by unmet when the profile required the criterion, then by unmet; a criterion "
        "checked per spinal level counts once per level; an informational criterion "
        f"({', '.join(sorted(informational & set(counts))) or 'none here'}) is unmet only when "
        "it could not be checked",
    )

    def unmet(criterion: str) -> int:
        return sum(counts[criterion][s] for s in unmet_statuses[criterion])

    ranked = sorted(counts.items(), key=lambda kv: (-kv[1]["(required unmet)"], -unmet(kv[0]), kv[0]))
    for criterion, c in ranked:
        results = sum(c[s] for s in STATUSES)
        t.rows.append(
            [
                criterion,
                results,
                *[c[s] for s in STATUSES],
                unmet(criterion),
                _rate(unmet(criterion), results),
                c["(required)"],
                c["(required unmet)"],
            ]
        )
    return t


def _suggestions(conn, q: _Query) -> Table:
    offered = conn.execute(
        q.calls(
            select(audit_suggestion.c.uuid, audit_suggestion.c.label)
            .join(audit_card, audit_card.c.uuid == audit_suggestion.c.card_uuid)
            .join(audit_call, audit_call.c.id == audit_card.c.call_id)
        )
    ).all()
    accepted = set(
        conn.scalars(
            q.calls(
                select(feedback_suggestion.c.suggestion_uuid)
                .distinct()
                .join(audit_suggestion, audit_suggestion.c.uuid == feedback_suggestion.c.suggestion_uuid)
                .join(audit_card, audit_card.c.uuid == audit_suggestion.c.card_uuid)
                .join(audit_call, audit_call.c.id == audit_card.c.call_id)
                .where(feedback_suggestion.c.matched.is_(True))
            )
        )
    )
    per_label: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for s_uuid, label in offered:
        per_label[label][0] += 1
        per_label[label][1] += s_uuid in accepted
    t = Table(
        "suggestions",
        "Suggestion acceptance (suggestions offered in the period)",
        ["suggestion", "offered", "accepted", "acceptance rate"],
    )
    for label, (n, a) in sorted(per_label.items(), key=lambda kv: (-kv[1][0], kv[0])):
        t.rows.append([label, n, a, _rate(a, n)])
    if per_label:
        n = sum(v[0] for v in per_label.values())
        a = sum(v[1] for v in per_label.values())
        t.rows.append(["all", n, a, _rate(a, n)])
    return t


def build_report(
    store: AuditStore,
    since: datetime | None,
    until: datetime | None,
    service: str | None,
    actor: str,
    mode: str = "live",
    informational: frozenset[str] = frozenset(),
) -> Report:
    """`informational`: the ids of the served packs' informational criteria (pack.json)."""
    q = _Query(since, until, service, mode)
    store.log_access(
        actor, "report", period_text(since, until, service) + ("" if mode == "live" else f", mode {mode}"), 0
    )
    with store.reading() as conn:
        volume, latency = _volume_and_latency(conn, q)
        tables = [
            volume,
            latency,
            _feedback_summary(conn, q),
            _overrides(conn, q),
            _criteria(conn, q, informational),
            _suggestions(conn, q),
        ]
    return Report(since, until, service, tables, mode)


def render_text(report: Report) -> str:
    out = [
        f"fusion-cds audit report: {iso(report.since) or 'start'} .. {iso(report.until) or 'now'}"
        + (f", service {report.service}" if report.service else "")
        + ("" if report.mode == "live" else f", {report.mode} calls"),
        "",
    ]
    for t in report.tables:
        out.append(t.title)
        out.append("=" * len(t.title))
        if not t.rows:
            out += ["(nothing in this period)", ""]
            continue
        cells = [[str(c) for c in t.columns]] + [["" if v is None else str(v) for v in row] for row in t.rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(t.columns))]

        def line(row, t=t, widths=widths):
            return "  ".join(v.ljust(w) if i < t.keys else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths)))

        out.append(line(cells[0]).rstrip())
        out.append("  ".join("-" * w for w in widths))
        out += [line(r).rstrip() for r in cells[1:]]
        if t.note:
            out.append(f"({t.note})")
        out.append("")
    return "\n".join(out)


def render_csv(report: Report) -> str:
    """Long format, one value per line: section, key (the row's naming columns), measure, value."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["section", "key", "measure", "value"])
    for t in report.tables:
        for row in t.rows:
            key = " / ".join(str(v) for v in row[: t.keys])
            for column, value in zip(t.columns[t.keys :], row[t.keys :]):
                writer.writerow([t.name, key, column, "" if value is None else value])
    return buffer.getvalue()
