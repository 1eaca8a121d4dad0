"""The rule pack is checked before it is served (cql/schema/rule-pack.schema.json, cds_hooks/packs/model.py).

A pack with a wrong code, a missing card wording, an unknown extension or a dangling reference is
refused at load with one message naming the file and the JSON path at fault; `cds-hooks serve`
then exits non-zero with that one line and no traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from cds_hooks.packs.loader import RulePackError, load_rule_pack, load_rule_packs
from cds_hooks.packs.model import SCHEMA_PATH
from cds_hooks.pipeline.evaluation import spine_region

REPO = Path(__file__).resolve().parent.parent
PACK = REPO / "cql" / "lumbar-fusion"
CLI = str(Path(sys.executable).with_name("cds-hooks"))


def _pack_copy(tmp_path: Path, change) -> Path:
    """A copy of the lumbar-fusion pack (and the shared ELM) under tmp_path/cql, pack.json changed."""
    root = tmp_path / "cql"
    shutil.copytree(PACK, root / "lumbar-fusion")
    shutil.copytree(REPO / "cql" / "common", root / "common")
    pack_json = root / "lumbar-fusion" / "pack.json"
    doc = json.loads(pack_json.read_text(encoding="utf-8"))
    change(doc)
    pack_json.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return root


def _refusal(tmp_path: Path, change) -> str:
    root = _pack_copy(tmp_path, change)
    with pytest.raises(RulePackError) as caught:
        load_rule_packs(root)
    message = str(caught.value)
    assert str(root / "lumbar-fusion" / "pack.json") in message
    assert "\n" not in message
    return message


def test_the_published_schema_is_a_valid_draft_2020_12_schema():
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_shipped_pack_loads_and_its_model_is_typed():
    pack = load_rule_pack(PACK, [])
    assert pack.model.service.id == "lumbar-fusion"
    assert pack.uses("spine")
    assert pack.model.codes["facet-evaluation"].system == "http://www.ama-assn.org/go/cpt"
    # Thresholds keep their JSON type: the CQL engine gets an Integer for 6, a Decimal for 4.0.
    params = pack.profiles["default"].parameters
    assert type(params["MinPTWeeks"]) is int and type(params["TranslationMM"]) is float
    assert type(params["AdmitDiscogenic"]) is bool


def test_a_code_whose_system_is_not_a_uri_is_refused(tmp_path):
    def change(doc):
        doc["codes"]["facet-evaluation"]["system"] = "CPT"

    assert "$.codes.facet-evaluation.system" in _refusal(tmp_path, change)


def test_an_override_reason_without_display_is_refused(tmp_path):
    def change(doc):
        del doc["overrideReasons"][0]["display"]

    assert "$.overrideReasons[0]" in _refusal(tmp_path, change)


def test_a_missing_card_wording_is_refused(tmp_path):
    def change(doc):
        del doc["cards"]["wording"]["summaryUnmet"]

    message = _refusal(tmp_path, change)
    assert "$.cards.wording" in message and "summaryUnmet" in message


def test_a_missing_status_label_is_refused(tmp_path):
    def change(doc):
        del doc["cards"]["statusLabels"]["not-documented"]

    assert "$.cards.statusLabels" in _refusal(tmp_path, change)


def test_an_unknown_extension_is_refused(tmp_path):
    def change(doc):
        doc["extensions"] = ["spine", "knee"]

    message = _refusal(tmp_path, change)
    assert "$.extensions[1]" in message and "'knee'" in message


def test_a_pack_using_the_spine_extension_must_name_its_region(tmp_path):
    message = _refusal(tmp_path, lambda doc: doc.pop("spine"))
    assert "'spine' is a required property" in message


def test_spine_settings_without_the_spine_extension_are_refused(tmp_path):
    message = _refusal(tmp_path, lambda doc: doc.update(extensions=[]))
    assert "$.spine" in message and "$.extensions does not name" in message


def test_a_region_the_spine_data_does_not_know_refuses_the_pack(tmp_path):
    root = _pack_copy(tmp_path, lambda doc: doc.update(spine={"region": "sacral-tail"}))
    pack = load_rule_packs(root)["lumbar-fusion"]
    with pytest.raises(RulePackError) as caught:
        spine_region(pack)
    message = str(caught.value)
    assert str(root / "lumbar-fusion" / "pack.json") in message
    assert "$.spine.region" in message and "'sacral-tail'" in message and "lumbar" in message


def test_the_shipped_pack_names_its_region_and_its_levels_come_from_the_spine_data():
    region = spine_region(load_rule_pack(PACK, []))
    assert region.name == "lumbar"
    assert region.interspaces == ("T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")


def test_an_unknown_section_is_refused(tmp_path):
    def change(doc):
        doc["criterias"] = []

    assert "'criterias' was unexpected" in _refusal(tmp_path, change)


def test_a_suggestion_naming_an_unknown_code_is_refused(tmp_path):
    def change(doc):
        doc["suggestions"][0]["resource"]["code"]["$code"] = "flexion-extension-films"

    assert "$.suggestions[0].resource.code.$code: 'flexion-extension-films' is not a code" in _refusal(tmp_path, change)


def test_a_suggestion_for_an_undeclared_criterion_is_refused(tmp_path):
    def change(doc):
        doc["suggestions"][1]["when"]["criterion"] = "physical-therapy"

    assert "$.suggestions[1].when.criterion" in _refusal(tmp_path, change)


def test_a_profile_requiring_an_undeclared_criterion_is_refused(tmp_path):
    def change(doc):
        doc["profiles"]["strict"]["required"].append("smoking")

    assert "$.profiles.strict.required[5]" in _refusal(tmp_path, change)


def test_a_threshold_the_library_does_not_declare_is_refused(tmp_path):
    # A misspelt parameter would otherwise leave the CQL default in force without a word.
    def change(doc):
        doc["profiles"]["strict"]["parameters"]["ImagingWindowMonth"] = 6

    assert "$.profiles.strict.parameters.ImagingWindowMonth" in _refusal(tmp_path, change)


def test_a_negative_threshold_is_refused(tmp_path):
    def change(doc):
        doc["profiles"]["default"]["parameters"]["MinPTSessions"] = -1

    assert "$.profiles.default.parameters.MinPTSessions" in _refusal(tmp_path, change)


def test_a_placeholder_nothing_fills_is_refused(tmp_path):
    def change(doc):
        doc["criteria"][2]["nextSteps"]["not-met"] += " At least {MinPTVisits} visits."

    assert "$.criteria[2].nextSteps.not-met: placeholder {MinPTVisits}" in _refusal(tmp_path, change)


def test_a_gap_closing_in_an_undeclared_way_is_refused(tmp_path):
    def change(doc):
        doc["cards"]["gaps"]["criteria"]["nicotine"]["closes"]["not-met"]["kind"] = "paperwork"

    assert "$.cards.gaps.criteria.nicotine.closes.not-met.kind: 'paperwork' is not one of" in _refusal(tmp_path, change)


def test_a_gap_naming_a_suggestion_that_does_not_close_it_is_refused(tmp_path):
    # The facet referral answers an advisory criterion: it cannot be offered for an instability gap.
    def change(doc):
        doc["cards"]["gaps"]["criteria"]["instability"]["closes"]["not-documented"]["suggestion"] = (
            "refer-facet-evaluation"
        )

    message = _refusal(tmp_path, change)
    assert "$.cards.gaps.criteria.instability.closes.not-documented.suggestion" in message
    assert "not offered for instability not-documented" in message


def test_a_dated_gap_line_without_an_undated_line_is_refused(tmp_path):
    # A date is never guessed: where the library gives none, the pack must say something else.
    def change(doc):
        del doc["cards"]["gaps"]["criteria"]["conservative-care"]["closes"]["not-met"]["undated"]

    message = _refusal(tmp_path, change)
    assert (
        "$.cards.gaps.criteria.conservative-care.closes.not-met: a line that gives a date needs an `undated`" in message
    )


def test_an_undated_gap_line_cannot_use_a_date(tmp_path):
    def change(doc):
        doc["cards"]["gaps"]["criteria"]["nicotine"]["closes"]["not-met"]["undated"] += " Earliest {earliest}."

    assert "$.cards.gaps.criteria.nicotine.closes.not-met.undated: placeholder {earliest}" in _refusal(tmp_path, change)


def test_a_criterion_a_profile_can_require_needs_a_gap_line_for_each_unmet_status(tmp_path):
    def change(doc):
        del doc["cards"]["gaps"]["criteria"]["nicotine"]["closes"]["not-documented"]

    assert "no line for nicotine not-documented, which a profile can require" in _refusal(tmp_path, change)


def test_a_gap_dates_expression_the_library_does_not_define_is_refused(tmp_path):
    def change(doc):
        doc["library"]["gapDatesExpression"] = "Gap Date"

    assert "$.library.gapDatesExpression: the library defines no 'Gap Date'" in _refusal(tmp_path, change)


def test_a_library_that_dates_gaps_must_declare_the_signing_date(tmp_path):
    # The engine passes SigningDate only to a pack that names gap dates; the library must take it.
    root = _pack_copy(tmp_path, lambda doc: None)
    elm_path = root / "lumbar-fusion" / "elm" / "LumbarFusionCriteria.json"
    elm = json.loads(elm_path.read_text(encoding="utf-8"))
    params = elm["library"]["parameters"]["def"]
    elm["library"]["parameters"]["def"] = [p for p in params if p["name"] != "SigningDate"]
    elm_path.write_text(json.dumps(elm), encoding="utf-8")
    with pytest.raises(RulePackError) as caught:
        load_rule_packs(root)
    assert "$.library.gapDatesExpression: the library must declare the parameter SigningDate" in str(caught.value)


def test_a_payer_mapped_to_no_profile_is_refused(tmp_path):
    def change(doc):
        doc["payers"]["ACME"] = "lenient"

    assert "$.payers.ACME" in _refusal(tmp_path, change)


def test_a_value_set_the_library_uses_must_be_in_the_pack(tmp_path):
    root = _pack_copy(tmp_path, lambda doc: None)
    (root / "lumbar-fusion" / "valuesets" / "cotinine-tests.json").unlink()
    with pytest.raises(RulePackError, match="ValueSet/cotinine-tests"):
        load_rule_packs(root)


@pytest.mark.parametrize("production", [False, True], ids=["development", "production"])
def test_serve_refuses_a_bad_pack_with_one_line_and_a_non_zero_exit(tmp_path, production):
    root = _pack_copy(tmp_path, lambda doc: doc.update(extensions=["knee"]))
    env = {**os.environ, "CDS_CQL_ROOT": str(root), "CDS_VAR_DIR": str(tmp_path / "var"), "CDS_AUTH_DISABLED": "true"}
    result = subprocess.run(
        [CLI, "serve", "--port", "9", *(["--production"] if production else [])],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "rule pack" in line]
    assert len(lines) == 1 and str(root / "lumbar-fusion" / "pack.json") in lines[0]
    assert "unknown extension 'knee'" in lines[0]
    assert "server on" not in result.stderr
