"""The case view one click from the card (docs/security.md, "Case view links").

Every live card links to its whole evaluation; the link is signed for that call and that card, opens
for `case_view_ttl_seconds`, and every opening is written to the audit access log. An expired,
altered or foreign link opens nothing. The page and the brief are rendered from the audit record.
"""

import base64
import copy
import re
import time
from datetime import datetime, timedelta, timezone
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest

from cds_hooks.auth.case_links import CaseLinkSigner, LinkRefused
from cds_hooks.config import Config
from cds_hooks.web.app import create_app
from cds_hooks.web.case_view import EXTENSION, LINK_LABEL
from cds_hooks.web.recording import recorder_of
from conftest import request_fixture
from support.audit_db import audit_settings
from support.hooks import call

KEY = base64.b64encode(b"k" * 32).decode()


@pytest.fixture(scope="module")
def app(engine, tmp_path_factory):
    folder = tmp_path_factory.mktemp("case-view")
    settings = audit_settings(f"sqlite:///{folder / 'audit.db'}", folder)
    application = create_app(
        Config.development(case_view_key=KEY, case_view_ttl_seconds=900, **settings), engine=engine
    )
    application.testing = True
    return application


@pytest.fixture()
def client(app):
    app.extensions[EXTENSION].clock = time.time
    return app.test_client()


def case_link(card: dict) -> str:
    (link,) = [l for l in card.get("links", []) if l["label"] == LINK_LABEL]
    assert link["type"] == "absolute"
    parts = urlsplit(link["url"])
    return f"{parts.path}?{parts.query}"


def text_of(response) -> str:
    return unescape(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)))


def access_log(app) -> list[dict]:
    return recorder_of(app).store.access_entries(50)


def with_param(url: str, name: str, value: str) -> str:
    path, query = url.split("?", 1)
    params = {k: v[0] for k, v in parse_qs(query).items()}
    params[name] = value
    return path + "?" + "&".join(f"{k}={v}" for k, v in params.items())


# ------------------------------------------------------------------ the link on the card


def test_a_live_card_links_to_its_case_view_under_its_call_and_uuid(client, app):
    card = call(client, request_fixture("seed"))["cards"][0]
    path = urlsplit(case_link(card)).path
    assert re.fullmatch(rf"/cases/[0-9a-f-]{{36}}/{card['uuid']}", path)


def test_the_link_carries_no_patient_identifier(client):
    request = request_fixture("seed")
    card = call(client, request)["cards"][0]
    assert request["context"]["patientId"] not in case_link(card)


def test_the_link_expires_after_the_configured_time(client, app):
    before = time.time()
    card = call(client, request_fixture("seed"))["cards"][0]
    expires = int(parse_qs(urlsplit(case_link(card)).query)["e"][0])
    assert before + 900 - 1 <= expires <= time.time() + 900


def test_without_an_audit_trail_a_card_has_no_case_view_link(engine, tmp_path):
    plain = create_app(Config.development(audit_enabled=False, var_dir=tmp_path), engine=engine)
    card = call(plain.test_client(), request_fixture("seed"))["cards"][0]
    assert all(l["label"] != LINK_LABEL for l in card.get("links", []))


# ------------------------------------------------------------------ opening it


def test_the_case_view_shows_every_criterion_with_its_status_and_reason(client):
    card = call(client, request_fixture("seed"))["cards"][0]
    response = client.get(case_link(card))
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    for result in card["extension"]["org.example.fusion-cds.criteria"]:
        article = re.search(rf'data-criterion="{result["id"]}" data-status="([a-z-]+)"', html)
        assert article and article.group(1) == result["status"], result["id"]
        assert unescape(result["reason"]) in text_of(response) or not result["reason"]


def test_the_case_view_quotes_the_report_and_dates_the_evidence(client):
    card = call(client, request_fixture("seed"))["cards"][0]
    page = text_of(client.get(case_link(card)))
    assert "impression: “1. Mild narrowing of both neural foramina" in page
    assert "(2026-09-02)" in page and "DiagnosticReport/seed-mri-2026-report" in page


def test_the_case_view_shows_the_card_exactly_as_it_was_sent(client):
    card = call(client, request_fixture("seed"))["cards"][0]
    page = text_of(client.get(case_link(card)))
    assert card["summary"] in page
    assert all(s["label"] in page for s in card["suggestions"])


def test_the_case_view_names_the_sources_that_could_not_be_read(client):
    request = request_fixture("seed")
    request["prefetch"]["observations"] = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "forbidden", "diagnostics": "not permitted"}],
    }
    card = call(client, request)["cards"][0]
    page = text_of(client.get(case_link(card)))
    assert "The EHR did not return Observation data" in page


def test_the_prior_auth_checklist_marks_each_document_present_with_its_resource_or_missing(client):
    card = call(client, request_fixture("seed"))["cards"][0]
    html = client.get(case_link(card)).get_data(as_text=True)
    imaging = re.search(r'data-document="advanced-imaging">(.*?)</tr>', html, re.S).group(1)
    films = re.search(r'data-document="instability-imaging">(.*?)</tr>', html, re.S).group(1)
    assert "Present" in imaging and "DiagnosticReport/seed-mri-2026-report" in imaging
    assert "Missing" in films


def document_row(html: str, document: str) -> str:
    return re.search(rf'data-document="{document}">(.*?)</tr>', html, re.S).group(1)


def test_an_imaging_report_from_before_the_window_is_not_a_present_document(client):
    card = call(client, request_fixture("no-imaging"))["cards"][0]
    imaging = document_row(client.get(case_link(card)).get_data(as_text=True), "advanced-imaging")
    assert "Present" not in imaging
    assert "Outside the window" in imaging and "DiagnosticReport/noimg-mri-2024-report" in imaging


def test_a_document_whose_data_the_ehr_did_not_return_is_not_read_rather_than_missing(client):
    request = request_fixture("seed")
    for key in ("diagnosticReports", "imagingStudies"):
        request["prefetch"][key] = {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "forbidden", "diagnostics": "not permitted"}],
        }
    card = call(client, request)["cards"][0]
    films = document_row(client.get(case_link(card)).get_data(as_text=True), "instability-imaging")
    assert "Not read" in films and "Missing" not in films


def test_every_opening_is_written_to_the_access_log_for_the_user_the_card_was_shown_to(client, app):
    card = call(client, request_fixture("seed"))["cards"][0]
    link = case_link(card)
    before = len(access_log(app))
    client.get(link)
    brief = re.search(r'id="brief-link" href="([^"]+)"', client.get(link).get_data(as_text=True)).group(1)
    client.get(unescape(brief))
    entries = access_log(app)[: len(access_log(app)) - before]
    assert [e["command"] for e in reversed(entries)] == ["case-view", "case-view", "brief"]
    assert all(card["uuid"] in e["detail"] and "Practitioner/surgeon-1" in e["actor"] for e in entries)


def test_the_page_is_neither_cached_nor_named_in_a_referer(client):
    card = call(client, request_fixture("seed"))["cards"][0]
    response = client.get(case_link(card))
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


# ------------------------------------------------------------------ links that open nothing


def refused(client, app, url: str, status: int = 403) -> str:
    before = len(access_log(app))
    response = client.get(url)
    assert response.status_code == status and response.mimetype == "text/html"
    assert len(access_log(app)) == before, "a refused link must read nothing"
    assert "Marisol" not in response.get_data(as_text=True)
    return text_of(response)


def test_an_expired_link_is_refused(client, app):
    card = call(client, request_fixture("seed"))["cards"][0]
    link = case_link(card)
    app.extensions[EXTENSION].clock = lambda: time.time() + 901
    assert "This link has expired" in refused(client, app, link)
    assert "expired" in refused(client, app, link.replace("?", "/brief?"))


def test_a_link_with_an_altered_signature_is_refused(client, app):
    link = case_link(call(client, request_fixture("seed"))["cards"][0])
    signature = parse_qs(urlsplit(link).query)["s"][0]
    altered = ("A" if signature[0] != "A" else "B") + signature[1:]
    assert "not valid" in refused(client, app, with_param(link, "s", altered))


def test_a_link_whose_expiry_was_pushed_back_is_refused(client, app):
    link = case_link(call(client, request_fixture("seed"))["cards"][0])
    later = str(int(parse_qs(urlsplit(link).query)["e"][0]) + 86400)
    refused(client, app, with_param(link, "e", later))


def test_a_signature_for_one_card_does_not_open_another(client, app):
    first = call(client, request_fixture("seed"))["cards"][0]
    other = call(client, request_fixture("meets-all"))["cards"][0]
    query = urlsplit(case_link(first)).query
    other_path = urlsplit(case_link(other)).path
    refused(client, app, f"{other_path}?{query}")


def test_a_link_without_its_signature_is_refused(client, app):
    link = case_link(call(client, request_fixture("seed"))["cards"][0])
    assert "incomplete" in refused(client, app, urlsplit(link).path)


def test_a_link_signed_with_another_key_is_refused(client, app):
    card = call(client, request_fixture("seed"))["cards"][0]
    path = urlsplit(case_link(card)).path
    _, _, call_id, card_uuid = path.split("/")
    forged = CaseLinkSigner(b"x" * 32, 900).issue(call_id, card_uuid)
    refused(client, app, f"{path}?e={forged['e']}&s={forged['s']}")


# ------------------------------------------------------------------ the signer on its own


def test_the_signer_refuses_a_key_shorter_than_32_bytes():
    with pytest.raises(ValueError):
        CaseLinkSigner(b"short", 900)


def test_a_link_opens_until_its_expiry_and_not_at_it():
    now = [1_000_000.0]
    signer = CaseLinkSigner(b"k" * 32, 60, clock=lambda: now[0])
    params = signer.issue("call", "card")
    now[0] += 59
    assert signer.verify("call", "card", params["e"], params["s"]).expires == 1_000_060
    now[0] += 1
    with pytest.raises(LinkRefused) as refusal:
        signer.verify("call", "card", params["e"], params["s"])
    assert refusal.value.code == "link-expired"


def test_call_and_card_cannot_be_shifted_into_each_other():
    signer = CaseLinkSigner(b"k" * 32, 60)
    params = signer.issue("ab", "c")
    with pytest.raises(LinkRefused):
        signer.verify("a", "bc", params["e"], params["s"])


def test_shadow_mode_sends_no_card_and_so_no_link(engine, tmp_path):
    settings = audit_settings(f"sqlite:///{tmp_path / 'audit.db'}", tmp_path)
    shadow = create_app(Config.development(shadow_mode=True, case_view_key=KEY, **settings), engine=engine)
    assert call(shadow.test_client(), copy.deepcopy(request_fixture("seed"))) == {"cards": []}


def test_a_case_purged_from_the_audit_trail_is_gone_from_its_link_too(client, app):
    link = case_link(call(client, request_fixture("seed"))["cards"][0])
    recorder_of(app).store.purge(datetime.now(timezone.utc).replace(tzinfo=None) + timedelta(days=1), "test")
    response = client.get(link)
    assert response.status_code == 404 and "no longer in the audit trail" in text_of(response)


def test_a_criterion_that_could_not_be_checked_never_reads_as_nothing_in_the_record(client):
    request = request_fixture("seed")
    for key in ("diagnosticReports", "imagingStudies", "observations", "conditions"):
        request["prefetch"][key] = {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "forbidden", "diagnostics": "not permitted"}],
        }
    card = call(client, request)["cards"][0]
    html = client.get(case_link(card)).get_data(as_text=True)
    unavailable = re.findall(r'data-status="unavailable"[^>]*>(.*?)</article>', html, re.S)
    assert unavailable, "the seed without its imaging data has criteria that could not be checked"
    assert all("Nothing in the record" not in article for article in unavailable)
    assert any("Not checked: the EHR did not return" in article for article in unavailable)
