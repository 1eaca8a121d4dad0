"""Da Vinci CRD 2.2.1 conformance: coverage information, configuration, discovery.

Each invariant is checked here as the profile states it (StructureDefinition ext-coverage-information,
invariants crd-ci-q1..q7), on every response the fixtures produce; the rest cite the CRD section
they come from.
"""

import copy
import json
from datetime import date

import pytest

from cds_hooks.pipeline.coverage_info import CoverageLedger, system_actions, verdict
from conftest import FIXTURES, request_fixture
from support.conformance import assert_conformant

SERVICE = "/cds-services/lumbar-fusion"
CI_URL = "http://hl7.org/fhir/us/davinci-crd/StructureDefinition/ext-coverage-information"
COVERED = {"covered", "not-covered", "conditional", "indeterminate"}
PA = {"no-auth", "auth-needed", "satisfied", "performpa", "conditional", "indeterminate"}
DOC = {"clinical", "admin", "patient", "conditional", "indeterminate"}
DOC_PURPOSE = {"withpa", "withclaim", "withorder", "retain-doc", "OTH"}
REASONS = {"gold-card", "no-member-found", "no-active-coverage", "coverage-not-found", "auth-out-network", "technical"}
CARDINALITY = {
    "coverage": (1, 1),
    "covered": (1, 1),
    "pa-needed": (0, 1),
    "doc-needed": (0, 1),
    "date": (1, 1),
    "coverage-assertion-id": (1, 1),
    "satisfied-pa-id": (0, 1),
}


def post(client, body, service=SERVICE):
    r = client.post(service, json=body)
    assert r.status_code == 200, r.get_json()
    out = r.get_json()
    assert_conformant(out)
    return out


def parts(ext: dict, url: str) -> list[dict]:
    return [p for p in ext["extension"] if p["url"] == url]


def value(part: dict):
    return next(v for k, v in part.items() if k.startswith("value"))


def codes(ext: dict, url: str) -> list:
    return [value(p) for p in parts(ext, url)]


def invariant_violations(ext: dict) -> list[str]:
    """crd-ci-q1..q7 and the element cardinalities, as the 2.2.1 profile states them."""
    out = []
    for url, (lo, hi) in CARDINALITY.items():
        n = len(parts(ext, url))
        if not lo <= n <= hi:
            out.append(f"{url}: {n} repetitions")
    covered, pa, doc = codes(ext, "covered"), codes(ext, "pa-needed"), codes(ext, "doc-needed")
    if not set(covered) <= COVERED or not set(pa) <= PA or not set(doc) <= DOC:
        out.append("a code outside its required value set")
    if not set(codes(ext, "doc-purpose")) <= DOC_PURPOSE:
        out.append("doc-purpose outside its value set")
    if (parts(ext, "questionnaire") or parts(ext, "response")) and not doc:
        out.append("crd-ci-q1: questionnaire without doc-needed")
    if "not-covered" in covered and pa:
        out.append("crd-ci-q2: not-covered with pa-needed")
    conditional = "conditional" in covered + pa + doc
    if conditional != bool(parts(ext, "info-needed")):
        out.append("crd-ci-q3: info-needed if and only if something is conditional")
    if "satisfied" in pa and "withpa" in codes(ext, "doc-purpose"):
        out.append("crd-ci-q4: satisfied with doc-purpose withpa")
    if ("satisfied" in pa) != bool(parts(ext, "satisfied-pa-id")):
        out.append("crd-ci-q5: satisfied-pa-id if and only if pa-needed is satisfied")
    if "OTH" in codes(ext, "info-needed") and not parts(ext, "reason"):
        out.append("crd-ci-q6: info-needed OTH without reason")
    for reason in codes(ext, "reason"):
        off_set = [c for c in reason.get("coding", []) if c.get("code") not in REASONS]
        if off_set and not reason.get("text"):
            out.append("crd-ci-q7: a reason coded outside the value set without text")
    cov = value(parts(ext, "coverage")[0])
    if not (cov.get("reference", "").startswith("Coverage/") or cov.get("display")):
        out.append("coverage is not a Reference(Coverage)")
    return out


def coverage_actions(response: dict) -> list[dict]:
    return [
        a
        for a in response.get("systemActions", [])
        if any(e.get("url") == CI_URL for e in a["resource"].get("extension", []))
    ]


def fresh(request: dict) -> dict:
    out = copy.deepcopy(request)
    out["hookInstance"] = f"{out['hookInstance'][:24]}-{id(out)}"
    return out


# Each fixture patient with a card, with the service that checks its orders (fhir_fixtures/expected/).
FUSION_CASES = sorted(
    (p.stem, name)
    for p in (FIXTURES / "expected").glob("*.json")
    if (FIXTURES.parent / "cql" / p.stem / "pack.json").exists()
    for name in json.loads(p.read_text(encoding="utf-8"))["patients"]
)


@pytest.mark.parametrize("service, name", FUSION_CASES, ids=[f"{s}:{n}" for s, n in FUSION_CASES])
def test_every_fusion_order_gets_coverage_information_that_keeps_every_invariant(client, service, name):
    """CRD 2.2.1 "Coverage Information": order-sign answers with an `update` system action per order,
    its extension conformant to ext-coverage-information (crd-ci-q1..q7)."""
    body = fresh(request_fixture(name))
    response = post(client, body, f"/cds-services/{service}")
    actions = coverage_actions(response)
    order_ids = {
        e["resource"]["id"]
        for e in body["context"]["draftOrders"]["entry"]
        if e["resource"]["resourceType"] == "ServiceRequest"
    }
    assert actions and {a["resource"]["id"] for a in actions} <= order_ids
    for action in actions:
        assert action["type"] == "update" and action["description"]
        for ext in (e for e in action["resource"]["extension"] if e["url"] == CI_URL):
            assert invariant_violations(ext) == [], ext


def test_a_non_fusion_order_gets_no_system_action(client):
    response = post(client, fresh(request_fixture("non-fusion")))
    assert "systemActions" not in response


def test_nothing_else_on_the_order_changes(client):
    """CDS Hooks 2.0 "systemActions" update: the resource is the order as sent, plus only the extension."""
    body = fresh(request_fixture("seed"))
    sent = {e["resource"]["id"]: e["resource"] for e in body["context"]["draftOrders"]["entry"]}
    for action in coverage_actions(post(client, body)):
        updated = copy.deepcopy(action["resource"])
        updated["extension"] = [e for e in updated["extension"] if e["url"] != CI_URL]
        original = copy.deepcopy(sent[updated["id"]])
        original["extension"] = [e for e in original.get("extension", []) if e["url"] != CI_URL]
        assert updated == original


def test_the_seed_order_needs_clinical_documentation_for_prior_authorization_and_points_to_the_questionnaire(client):
    """Mapping (docs/crd.md): required criteria not met -> covered, auth-needed, doc-needed clinical,
    doc-purpose withpa, the DTR questionnaire; the reason says it is likely to fail review."""
    ext = next(
        e
        for e in coverage_actions(post(client, fresh(request_fixture("seed"))))[0]["resource"]["extension"]
        if e["url"] == CI_URL
    )
    assert codes(ext, "covered") == ["covered"] and codes(ext, "pa-needed") == ["auth-needed"]
    assert codes(ext, "doc-needed") == ["clinical"] and codes(ext, "doc-purpose") == ["withpa"]
    assert codes(ext, "questionnaire") == [
        "http://fusion-cds.example.org/fhir/Questionnaire/lumbar-fusion-documentation|1.0.0"
    ]
    assert "likely to fail review" in codes(ext, "reason")[0]["text"]
    assert codes(ext, "billingCode")[0]["code"] == "22558"


def test_all_required_criteria_met_asks_for_no_documentation_and_no_questionnaire(client):
    ext = next(
        e
        for e in coverage_actions(post(client, fresh(request_fixture("meets-all"))))[0]["resource"]["extension"]
        if e["url"] == CI_URL
    )
    assert codes(ext, "covered") == ["covered"] and codes(ext, "pa-needed") == ["auth-needed"]
    assert not parts(ext, "doc-needed") and not parts(ext, "questionnaire")


def test_a_failed_data_source_makes_the_answer_indeterminate_with_the_technical_reason(client):
    """CRD 2.2.1 covered `indeterminate` ("technical issues ... the payer is unable to evaluate")."""
    body = fresh(request_fixture("seed"))
    body["prefetch"]["procedures"] = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "timeout"}],
    }
    ext = next(e for e in coverage_actions(post(client, body))[0]["resource"]["extension"] if e["url"] == CI_URL)
    assert codes(ext, "covered") == ["indeterminate"]
    assert [c["code"] for c in codes(ext, "reason")[0]["coding"]] == ["technical"]
    assert "conservative-care" in codes(ext, "reason")[0]["text"]
    assert invariant_violations(ext) == []


def test_a_record_without_coverage_is_indeterminate_coverage_not_found(client):
    body = fresh(request_fixture("seed"))
    body["prefetch"]["coverage"] = None
    ext = next(e for e in coverage_actions(post(client, body))[0]["resource"]["extension"] if e["url"] == CI_URL)
    assert codes(ext, "covered") == ["indeterminate"]
    assert [c["code"] for c in codes(ext, "reason")[0]["coding"]] == ["coverage-not-found"]
    assert invariant_violations(ext) == []


def test_the_same_hook_instance_does_not_update_an_order_again_with_the_same_information(client):
    """ "an order that got the same coverage information earlier for the same hookInstance is not
    updated again" (CRD: coverage information is updated when it changes)."""
    body = fresh(request_fixture("seed"))
    assert coverage_actions(post(client, body))
    assert "systemActions" not in post(client, body)


def test_an_order_already_carrying_the_information_is_not_updated(client):
    first = fresh(request_fixture("seed"))
    updated = coverage_actions(post(client, first))[0]["resource"]
    again = fresh(request_fixture("seed"))
    for entry in again["context"]["draftOrders"]["entry"]:
        if entry["resource"]["id"] == updated["id"]:
            entry["resource"] = updated
    again["hookInstance"] = first["hookInstance"] + "-other-instance"
    ids = [a["resource"]["id"] for a in coverage_actions(post(client, again))]
    assert updated["id"] not in ids


def test_changed_information_in_the_same_hook_instance_is_sent():
    """The ledger suppresses only a repeat of the same information."""
    ledger = CoverageLedger()
    assert ledger.first_time("h", "ServiceRequest/1", "a")
    assert not ledger.first_time("h", "ServiceRequest/1", "a")
    assert ledger.first_time("h", "ServiceRequest/1", "b")


def test_each_coverage_gets_its_own_assertion_id_and_the_same_one_on_a_repeat(client):
    """Inferno CRD server kit (coverage information validation): distinct coverage-assertion-ids across
    coverages, the same for the same coverage."""
    body = fresh(request_fixture("seed"))
    second = copy.deepcopy(body["prefetch"]["coverage"]["entry"][0]["resource"])
    second["id"] = "seed-secondary-coverage"
    body["prefetch"]["coverage"]["entry"].append({"resource": second})
    exts = [e for e in coverage_actions(post(client, body))[0]["resource"]["extension"] if e["url"] == CI_URL]
    ids = {value(parts(e, "coverage")[0])["reference"]: codes(e, "coverage-assertion-id")[0] for e in exts}
    assert len(ids) == 2 and len(set(ids.values())) == 2


# ---- configuration (CRD 2.2.1 "New hook configuration mechanism") -----------------------------------


def configured(body: dict, **options) -> dict:
    out = fresh(body)
    out["extension"] = {"davinci-crd.configuration": options}
    return out


def test_discovery_declares_the_crd_version_and_configuration_options(client):
    """dev-1 (a CRD version per hook, two parts), dev-4 (code, type, name, description, default),
    dev-5 (a boolean per card type), dev-8 (unique codes, names, descriptions)."""
    service = client.get("/cds-services").get_json()["services"][0]
    assert service["extension"]["davinci-crd.version"] == ["2.2"]
    options = service["extension"]["davinci-crd.configuration-options"]
    for option in options:
        assert set(option) == {"code", "type", "name", "description", "default"}
        assert option["type"] in ("boolean", "integer")
        assert isinstance(option["default"], bool) == (option["type"] == "boolean")
    for key in ("code", "name", "description"):
        assert len({o[key] for o in options}) == len(options)
    assert {"coverage-info", "guideline"} <= {o["code"] for o in options if o["type"] == "boolean"}


def test_coverage_info_false_sends_no_coverage_information(client):
    """dev-14; Inferno "Coverage information configuration option suppresses coverage-info responses"."""
    response = post(client, configured(request_fixture("seed"), **{"coverage-info": False}))
    assert coverage_actions(response) == [] and response["cards"]


def test_the_criteria_card_can_be_switched_off_and_coverage_information_still_comes(client):
    response = post(client, configured(request_fixture("seed"), guideline=False))
    assert response["cards"] == [] and coverage_actions(response)


def test_max_cards_limits_the_cards(client):
    body = request_fixture("case-360")
    assert len(post(client, fresh(body))["cards"]) >= 1
    assert post(client, configured(body, **{"max-cards": 0}))["cards"] == []


def test_unsupported_options_are_ignored_and_unusable_values_set_aside(client):
    """dev-15/dev-17: never required, unsupported ignored; dev-6: a value the service cannot honour is
    handled gracefully (the default applies) and reported."""
    plain = post(client, fresh(request_fixture("seed")))
    response = post(
        client, configured(request_fixture("seed"), **{"alt-drug": True, "max-cards": "two", "coverage-info": "yes"})
    )
    assert len(response["cards"]) == len(plain["cards"]) and coverage_actions(response)
    evaluation = response["extension"]["org.example.fusion-cds.evaluation"]
    assert sorted(evaluation["configurationSetAside"]) == ["coverage-info", "max-cards"]


def test_verdict_of_an_unchecked_required_criterion_wins_over_a_not_met_one():
    """Never falsely reassure, never hide a technical failure: indeterminate names what failed."""
    from cds_hooks.pipeline.criteria import CriterionResult

    results = [CriterionResult("a", "not-met", None, "x"), CriterionResult("b", "unavailable", None, "y")]
    v = verdict(results, ("a", "b"))
    assert (v.covered, v.reason_code) == ("indeterminate", "technical") and "b" in v.reason_text


def test_an_order_without_an_id_cannot_be_updated_and_is_left_alone():
    from cds_hooks.pipeline.orders import FusionOrder, SurgicalCase

    order = FusionOrder(
        {"resourceType": "ServiceRequest"},
        "ServiceRequest/?",
        "22558",
        "ALIF",
        "primary",
        (),
        "code",
        [],
        None,
        None,
        None,
        None,
    )
    assert (
        system_actions([(SurgicalCase([order]), verdict([], ()))], [], "h", None, CoverageLedger(), date(2026, 1, 1))
        == []
    )
