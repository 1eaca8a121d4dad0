"""A source that could not be read: the card says what could not be checked and why, never a finding it did not see.

CDS Hooks 2.0, "Prefetch Data": an OperationOutcome under a prefetch key means the client could not
prefetch it. Any required criterion's source (or the Patient, or the Coverage that picks the policy)
that could not be read makes the verdict `incomplete`: a warning, never "all criteria met".
"""

from conftest import request_fixture
from support.hooks import call, result
from support.card_text import rendered_lines

VERDICT = "org.example.fusion-cds.verdict"


def outcome(code, text):
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]}


def meets_all(**failed):
    req = request_fixture("meets-all")
    req["prefetch"].update(failed)
    return req


def test_unreadable_imaging_makes_the_verdict_incomplete_and_a_warning(client):
    down = outcome("transient", "HTTP 503 Service Unavailable")
    (card,) = call(client, meets_all(imagingStudies=down, diagnosticReports=down))["cards"]
    assert card["indicator"] == "warning"
    assert card["summary"].endswith("verdict incomplete")
    assert card["extension"][VERDICT]["verdict"] == "incomplete"
    assert card["extension"][VERDICT]["unreadSources"] == ["DiagnosticReport", "ImagingStudy"]


def test_the_card_never_reports_imaging_it_could_not_read_as_missing(client):
    down = outcome("transient", "HTTP 503 Service Unavailable")
    (card,) = call(client, meets_all(imagingStudies=down, diagnosticReports=down))["cards"]
    severity = result(card, "imaging-severity", "L4-L5")
    assert severity["status"] == "unavailable"
    assert severity["reason"].startswith("DiagnosticReport, ImagingStudy could not be read")
    assert "HTTP 503" in severity["reason"]
    assert "No lumbar MRI" not in card["detail"] and "No lumbar MRI" not in severity["reason"]
    unchecked = [line for line in rendered_lines(card["detail"]) if line.startswith("**Could not be checked:**")]
    assert unchecked[0].startswith(
        "**Could not be checked:** Stenosis grade on MRI/CT — DiagnosticReport, ImagingStudy"
    )
    assert all("nothing is concluded from records that were not seen" in line for line in unchecked)


def test_the_card_lists_each_source_that_could_not_be_read_with_its_reason(client):
    denied = outcome("forbidden", "Access to Procedure is not permitted by the granted scopes")
    (card,) = call(client, meets_all(procedures=denied))["cards"]
    assert (
        "**Could not be checked:** Physical therapy — Procedure could not be read "
        "(Access to Procedure is not permitted by the granted scopes)" in card["detail"]
    )
    assert result(card, "conservative-care")["status"] == "unavailable"
    assert "verdict incomplete" in card["summary"]


def test_a_source_only_advisory_criteria_read_leaves_the_verdict_whole(client):
    down = outcome("transient", "HTTP 503 Service Unavailable")
    (card,) = call(client, meets_all(medicationRequests=down))["cards"]
    assert card["indicator"] == "info" and card["extension"][VERDICT]["verdict"] == "likely-to-pass"
    assert "MedicationRequest: HTTP 503" in card["detail"]


def test_an_unreadable_coverage_leaves_the_policy_uncertain_so_the_verdict_is_incomplete(client):
    (card,) = call(client, meets_all(coverage=outcome("timeout", "timed out")))["cards"]
    assert card["indicator"] == "warning"
    assert card["extension"][VERDICT]["verdict"] == "incomplete"
    assert "met in what could be read — verdict incomplete" in card["summary"]
