"""`cds-hooks report`: overrides by reason, criteria most often unmet, suggestion acceptance, volume and
latency over a period, from a trail built through the real endpoints. Runs on SQLite and PostgreSQL."""

import csv
import io
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import update

from cds_hooks.audit.schema import audit_call
from cds_hooks.audit.usage_report import build_report, percentile, render_csv, render_text
from cds_hooks.packs.loader import load_rule_pack
from conftest import REPO, request_fixture
from support.hooks import SERVICE, call, results

FEEDBACK = "/cds-services/lumbar-fusion/feedback"
WHEN = "2026-09-10T14:03:00Z"
UNMET = ("not-met", "not-documented", "unavailable")


@pytest.fixture()
def trail(audit_client):
    """Three seed calls, one that meets all criteria, one rejected call, and feedback on them."""
    cards = []
    for i in range(3):
        request = request_fixture("seed")
        request["hookInstance"] = f"seed-{i}"
        cards.append(call(audit_client, request)["cards"][0])
    cards.append(call(audit_client, request_fixture("meets-all"))["cards"][0])
    bad = request_fixture("seed")
    bad["context"].pop("patientId")
    assert audit_client.post(SERVICE, json=bad).status_code == 400

    def override(card, code):
        return {
            "card": card["uuid"],
            "outcome": "overridden",
            "outcomeTimestamp": WHEN,
            "overrideReason": {"reason": {"code": code}},
        }

    entries = [
        override(cards[0], "payer-approved"),
        override(cards[1], "payer-approved"),
        {
            "card": cards[2]["uuid"],
            "outcome": "accepted",
            "outcomeTimestamp": WHEN,
            "acceptedSuggestions": [{"id": cards[2]["suggestions"][0]["uuid"]}],
        },
        override({"uuid": str(uuid.uuid4())}, "disagree"),  # a card this trail does not hold
    ]
    assert audit_client.post(FEEDBACK, json={"feedback": entries}).status_code == 200
    return cards


def table(report, name):
    (t,) = [t for t in report.tables if t.name == name]
    return {tuple(row[: t.keys]) if t.keys > 1 else row[0]: dict(zip(t.columns, row)) for row in t.rows}


def test_overrides_are_counted_by_reason_with_their_share(audit_store, trail):
    overrides = table(build_report(audit_store, None, None, None, "test"), "overrides")
    assert overrides["payer-approved"]["overrides"] == 2
    assert overrides["payer-approved"]["display"] == "Payer approval already obtained"
    assert overrides["disagree"]["overrides"] == 1
    assert overrides["all"]["overrides"] == 3 and overrides["payer-approved"]["share"] == "66.7%"


def test_criteria_are_ranked_by_how_often_they_are_unmet(audit_store, trail):
    expected = Counter()
    totals = Counter()
    for card in trail:
        for r in results(card):
            totals[r["id"]] += 1
            expected[r["id"]] += r["status"] in UNMET
    report = build_report(audit_store, None, None, None, "test")
    (t,) = [t for t in report.tables if t.name == "criteria"]
    got = {row[0]: dict(zip(t.columns, row)) for row in t.rows}
    assert {c: v["unmet"] for c, v in got.items()} == dict(expected)
    assert {c: v["results"] for c, v in got.items()} == dict(totals)
    required_unmet = Counter()
    for card in trail:
        for r in results(card):
            required_unmet[r["id"]] += r["required"] and r["status"] in UNMET
    assert {c: v["unmet when required"] for c, v in got.items()} == dict(required_unmet)
    ranking = [(row[t.columns.index("unmet when required")], row[t.columns.index("unmet")]) for row in t.rows]
    assert ranking == sorted(ranking, reverse=True)
    assert got["imaging-severity"]["not-met"] == 3 and got["imaging-severity"]["met"] == 1


def test_suggestion_acceptance_is_accepted_over_offered(audit_store, trail):
    suggestions = table(build_report(audit_store, None, None, None, "test"), "suggestions")
    offered = sum(len(c.get("suggestions", [])) for c in trail)
    assert suggestions["all"]["offered"] == offered and suggestions["all"]["accepted"] == 1
    first = trail[2]["suggestions"][0]["label"]
    assert (suggestions[first]["offered"], suggestions[first]["accepted"]) == (3, 1)
    assert suggestions[first]["acceptance rate"] == "33.3%"


def test_feedback_summary_counts_cards_accepted_overridden_and_unmatched(audit_store, trail):
    summary = table(build_report(audit_store, None, None, None, "test"), "feedback")
    assert summary["cards returned"]["value"] == 4
    assert summary["cards with feedback"]["value"] == 3
    assert (summary["accepted"]["value"], summary["overridden"]["value"]) == (1, 2)
    assert summary["unmatched feedback entries"]["value"] == 1


def test_call_volume_counts_calls_by_status_per_day(audit_store, trail):
    volume = table(build_report(audit_store, None, None, None, "test"), "volume")
    total = volume[("all", "all")]
    assert (total["calls"], total["200"], total["4xx"], total["5xx"], total["cards"]) == (5, 4, 1, 0, 4)


def test_latency_percentiles_cover_the_answered_calls_and_each_stage(audit_store, trail):
    latency = table(build_report(audit_store, None, None, None, "test"), "latency")
    parts = {part for (_, part) in latency}
    assert parts == {"total", "orders", "fetch", "engine", "cards"}
    total = latency[("lumbar-fusion", "total")]
    assert total["calls"] == 4
    assert float(total["p50"]) <= float(total["p90"]) <= float(total["p99"]) <= float(total["max"])


def test_the_period_limits_what_is_counted(audit_store, trail):
    with audit_store.engine.begin() as conn:
        conn.execute(
            update(audit_call).where(audit_call.c.hook_instance == "seed-0").values(received_at=datetime(2020, 1, 1))
        )
    since = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(days=1)
    volume = table(build_report(audit_store, since, None, None, "test"), "volume")
    assert volume[("all", "all")]["calls"] == 4
    old = table(build_report(audit_store, datetime(2019, 12, 31), datetime(2020, 1, 2), None, "test"), "volume")
    assert old[("all", "all")]["calls"] == 1


def test_a_report_is_written_to_the_access_log(audit_store, trail):
    build_report(audit_store, None, None, "lumbar-fusion", "quality-team")
    entry = audit_store.access_entries(1)[0]
    assert (entry["actor"], entry["command"]) == ("quality-team", "report")
    assert "lumbar-fusion" in entry["detail"]


def test_the_terminal_table_shows_every_section(audit_store, trail):
    text = render_text(build_report(audit_store, None, None, None, "test"))
    for title in (
        "Call volume per day",
        "Latency",
        "Overrides by reason",
        "Criteria most often unmet",
        "Suggestion acceptance",
        "Feedback on the cards",
    ):
        assert title in text
    assert "payer-approved" in text


def test_the_csv_has_one_value_per_line_for_every_table_cell(audit_store, trail):
    report = build_report(audit_store, None, None, None, "test")
    lines = list(csv.DictReader(io.StringIO(render_csv(report))))
    assert {"section", "key", "measure", "value"} == set(lines[0])
    got = {(r["section"], r["key"], r["measure"]): r["value"] for r in lines}
    assert got[("overrides", "payer-approved", "overrides")] == "2"
    assert got[("volume", "all / all", "calls")] == "5"
    cells = sum(len(t.rows) * (len(t.columns) - t.keys) for t in report.tables)
    assert len(lines) == cells


def test_an_empty_period_reports_nothing_without_failing(audit_store):
    text = render_text(build_report(audit_store, None, None, None, "test"))
    assert "(nothing in this period)" in text


@pytest.mark.parametrize(
    "values, p, expected",
    [
        ([1.0], 50, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
        ([1.0, 2.0, 3.0, 4.0], 99, 4.0),
        (list(map(float, range(1, 101))), 95, 95.0),
        ([], 50, None),
    ],
)
def test_percentiles_use_the_nearest_rank(values, p, expected):
    assert percentile(values, p) == expected


def test_an_informational_criterion_is_unmet_only_when_it_could_not_be_checked(audit_store, trail):
    # red-flags "not documented" is the good case (no red flag), not a gap to rank.
    pack = load_rule_pack(REPO / "cql" / "lumbar-fusion", [])
    informational = frozenset(c.id for c in pack.model.criteria if c.informational)
    assert informational == {"red-flags"}
    report = build_report(audit_store, None, None, None, "test", informational=informational)
    (t,) = [t for t in report.tables if t.name == "criteria"]
    got = {row[0]: dict(zip(t.columns, row)) for row in t.rows}
    assert got["red-flags"]["not-documented"] == len(trail)
    assert got["red-flags"]["unmet"] == got["red-flags"]["unavailable"] == 0
    order = [row[0] for row in t.rows]
    assert all(order.index(c) < order.index("red-flags") for c, v in got.items() if v["unmet"] > 0)
