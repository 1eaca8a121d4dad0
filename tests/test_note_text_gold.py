"""The note-text gold evaluation runs as a command, and the facts that can turn a criterion to "met" are
precise on the dev split (eval/note_text/README.md, docs/note-text.md)."""

import json

from cds_hooks.cli import main
from cds_hooks.spine.note_text_eval import MET_PRECISION_TARGET, can_turn_met, evaluate, load_gold


def test_the_eval_command_prints_precision_and_recall_per_type(capsys):
    assert main(["note-text", "eval"]) == 0
    out = capsys.readouterr().out
    assert "pt-attendance" in out and "red-flag" in out and "can turn a criterion to met" in out


def test_the_eval_command_scores_the_dev_split_unless_told_otherwise(capsys):
    main(["note-text", "eval", "--json"])
    (report,) = json.loads(capsys.readouterr().out)
    dev = sum(1 for p in load_gold() if p["split"] == "dev")
    assert (report["split"], report["passages"]) == ("dev", dev)


def test_facts_that_can_turn_a_criterion_to_met_have_precision_of_at_least_098_on_dev():
    report = evaluate(load_gold(), "dev")
    assert report.met.tp + report.met.fp >= 40  # enough predictions for the figure to mean something
    assert report.met_precision >= MET_PRECISION_TARGET, report.met_errors


def test_no_negated_hedged_historical_family_or_planned_mention_is_read_as_present_on_dev():
    assert evaluate(load_gold(), "dev").non_present_as_present == []


def test_only_present_facts_can_turn_a_criterion_to_met():
    fact = {"type": "pt-attendance", "region": "lumbar", "assertion": "present"}
    assert can_turn_met(fact)
    for assertion in ("negated", "hedged", "historical", "family", "planned"):
        assert not can_turn_met({**fact, "assertion": assertion})
    assert not can_turn_met({**fact, "region": "knee"})
    assert not can_turn_met({"type": "nicotine", "status": "former", "quit_date": None, "assertion": "present"})
    assert can_turn_met({"type": "nicotine", "status": "former", "quit_date": "2025-03", "assertion": "present"})


def test_the_bench_command_prints_time_per_note(capsys):
    assert main(["note-text", "bench", "--repeat", "1"]) == 0
    assert "ms per note" in capsys.readouterr().out
