"""The try-it page in a real headless browser: Debian's chromium, driven by Playwright.

The service runs for real over HTTP (development configuration, with the session's FHIR server as
the page's FHIR server). The page is used as a surgeon would: pick the seed patient, sign the
order, read the card, open a suggestion, accept it, dismiss the card with a reason. The rendered
seed card is saved to docs/images/seed-card.png, which docs/sandbox.md shows.

Chromium is started with no network features of its own (the machine has no network) and a new,
empty profile; nothing is downloaded, and the test checks that the page loads nothing from any
other origin.
"""

import os
import tempfile
from pathlib import Path
import json
import re
from datetime import datetime

import pytest
import requests

from cds_hooks.web.app import create_app
from cds_hooks.config import Config
from conftest import REPO
from support.browser import chromium
from support.live import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.fhir_server]

# docs/images/seed-card.png is refreshed on request only (CDS_UPDATE_SCREENSHOTS=1): a test run leaves the
# checkout as it was.
SCREENSHOT = (
    REPO / "docs" / "images"
    if os.environ.get("CDS_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.mkdtemp(prefix="tryit-shots-"))
) / "seed-card.png"


@pytest.fixture(scope="module")
def service(engine, fhir_server):
    app = create_app(Config.development(tryit_fhir_server=fhir_server.base_url), engine=engine)
    live = LiveServer(app).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    with chromium(tmp_path_factory.mktemp("chromium-profile"), width=1280) as context:
        yield context


@pytest.fixture()
def page(browser_context, service):
    page = browser_context.new_page()
    page.requested = []
    page.on("request", lambda r: page.requested.append(r.url))
    page.goto(f"{service.url}/try/")
    page.wait_for_selector("#order-form[data-ready=true]")
    yield page
    page.close()


def sign(page, patient: str | None = None):
    if patient:
        page.select_option("#patient", patient)
    page.click("#sign")
    page.wait_for_selector("#cards .card")
    return page.locator("#cards .card").first


def service_answer(page, service) -> dict:
    """What the service answers to the very request the page sent (read from the page)."""
    request = json.loads(page.locator("#request-json").text_content())
    return requests.post(f"{service.url}/cds-services/lumbar-fusion", json=request, timeout=60).json()


def test_the_seed_card_renders_as_an_ehr_shows_it(page, service):
    assert page.locator("#patient").input_value() == "fixture:seed"  # the seed patient is preselected
    assert page.locator("#cpt").input_value() == "22558"
    assert page.locator("#level-L5-S1").is_checked() and not page.locator("#level-L4-L5").is_checked()
    card = sign(page)
    (expected,) = service_answer(page, service)["cards"]

    assert card.locator(".indicator").inner_text().strip().lower().endswith("warning")
    assert "card--warning" in card.get_attribute("class")
    assert card.locator(".summary").inner_text() == expected["summary"]
    assert card.get_attribute("aria-labelledby") == card.locator(".summary").get_attribute("id")
    # The short card: each paragraph, heading or list item is one line as the page renders it.
    lines = card.locator(".detail").locator("p, li, h1, h2, h3, h4, h5, h6").all_inner_texts()
    assert len(lines) <= 10
    assert lines[0].startswith("Pathway: Stenosis with instability or degenerative spondylolisthesis")
    leads = [line.split(":")[0] for line in lines[1:4]]
    assert leads == ["No paperwork changes this", "Time", "A test could change it"]
    assert "mild" in lines[1] and "no document changes that" in lines[1]
    assert re.search(r"at the earliest", lines[2]) and re.search(r"\d{4}-\d{2}-\d{2}", lines[2])
    assert "flexion-extension films" in lines[3]
    assert card.locator(".suggestion-button").all_inner_texts() == [s["label"] for s in expected["suggestions"]]
    link = card.locator(".link-list a").first
    assert link.get_attribute("href") == expected["links"][0]["url"]
    assert link.get_attribute("target") == "_blank" and "noopener" in link.get_attribute("rel")
    options = card.locator(".override-reason option").all_inner_texts()
    assert options == ["No reason given"] + [r["display"] for r in expected["overrideReasons"]]
    assert page.locator("#status").inner_text().startswith("HTTP 200")

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    card.screenshot(path=str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 20_000


def test_a_suggestion_button_shows_the_fhir_resource_of_its_action(page, service):
    card = sign(page)
    button = card.locator(".suggestion-button").first
    assert button.get_attribute("aria-expanded") == "false"
    button.click()
    assert button.get_attribute("aria-expanded") == "true"
    panel = page.locator(f"#{button.get_attribute('aria-controls')}")
    assert panel.is_visible()
    resource = json.loads(panel.locator(".action-resource").inner_text())
    assert resource["resourceType"] == "ServiceRequest" and resource["status"] == "draft"
    assert resource["code"]["coding"][0]["code"] == "72114"
    assert panel.locator(".action-description").inner_text().startswith("create: Draft order")


def test_accepting_a_suggestion_sends_accepted_feedback_and_shows_the_answer(page, service):
    card = sign(page)
    card.locator(".suggestion-button").first.click()
    with page.expect_response(re.compile(r"/cds-services/lumbar-fusion/feedback$")) as answer:
        card.locator(".accept").first.click()
    response = answer.value
    body = json.loads(response.request.post_data)
    (item,) = body["feedback"]
    assert set(item) == {"card", "outcome", "acceptedSuggestions", "outcomeTimestamp"}
    assert item["card"] == card.get_attribute("data-uuid")
    assert item["outcome"] == "accepted"
    assert len(item["acceptedSuggestions"]) == 1 and set(item["acceptedSuggestions"][0]) == {"id"}
    assert card.locator(".suggestion").first.get_attribute("class").endswith("accepted")
    assert datetime.fromisoformat(item["outcomeTimestamp"].replace("Z", "+00:00")).tzinfo is not None
    assert item["outcomeTimestamp"].endswith("Z")
    result = card.locator(".feedback-result")
    result.wait_for()
    page.wait_for_function("s => document.querySelector(s).dataset.status", arg="#cards .card .feedback-result")
    assert result.get_attribute("data-status") == str(response.status)
    assert f"HTTP {response.status}" in result.inner_text()


def test_the_accepted_suggestion_id_is_the_uuid_the_page_received(page, service):
    card = sign(page)
    response_json = json.loads(page.locator("#response-json").text_content())
    (received,) = response_json["cards"]
    card.locator(".suggestion-button").nth(1).click()
    with page.expect_request(re.compile(r"/feedback$")) as sent:
        card.locator(".accept").nth(1).click()
    (item,) = json.loads(sent.value.post_data)["feedback"]
    assert item["card"] == received["uuid"]
    assert item["acceptedSuggestions"] == [{"id": received["suggestions"][1]["uuid"]}]


def test_dismissing_with_a_reason_sends_overridden_feedback(page, service):
    card = sign(page)
    (received,) = json.loads(page.locator("#response-json").text_content())["cards"]
    reason = next(r for r in received["overrideReasons"] if r["code"] == "payer-approved")
    card.locator(".override-reason").select_option(label=reason["display"])
    card.locator(".override-comment").fill("Approved by phone, reference 12345")
    with page.expect_response(re.compile(r"/feedback$")) as answer:
        card.locator(".dismiss").click()
    (item,) = json.loads(answer.value.request.post_data)["feedback"]
    assert item["card"] == received["uuid"] and item["outcome"] == "overridden"
    assert item["overrideReason"] == {
        "reason": {"code": reason["code"], "system": reason["system"], "display": reason["display"]},
        "userComment": "Approved by phone, reference 12345",
    }
    assert "acceptedSuggestions" not in item
    page.wait_for_function("s => document.querySelector(s).dataset.status", arg="#cards .card .feedback-result")
    assert f"HTTP {answer.value.status}" in card.locator(".feedback-result").inner_text()


def test_dismissing_without_a_reason_sends_no_override_reason(page, service):
    card = sign(page)
    with page.expect_request(re.compile(r"/feedback$")) as sent:
        card.locator(".dismiss").click()
    (item,) = json.loads(sent.value.post_data)["feedback"]
    assert item["outcome"] == "overridden" and "overrideReason" not in item


def test_an_edited_order_is_what_gets_signed(page, service):
    page.uncheck("#level-L5-S1")
    page.check("#level-L4-L5")
    page.select_option("#priority", "urgent")
    card = sign(page)
    assert card.locator(".summary").inner_text().startswith("Urgent L4-L5 ALIF (22558)")
    request = json.loads(page.locator("#request-json").text_content())
    (order,) = [e["resource"] for e in request["context"]["draftOrders"]["entry"]]
    assert [s["coding"][0]["code"] for s in order["bodySite"]] == ["L4-L5"] and order["priority"] == "urgent"


def test_choosing_another_fixture_fills_in_its_order(page, service):
    page.select_option("#patient", "fixture:case-360")
    assert page.locator("#date").input_value() == "2026-12-10"
    assert page.locator("#level-L4-L5").is_checked() and page.locator("#level-L5-S1").is_checked()
    assert page.locator("#as-written-text").inner_text().startswith("3 orders: L5-S1 anterior lumbar")


def test_a_fixture_of_another_service_selects_that_service_its_orders_and_its_levels(page, service):
    assert page.locator("#service").input_value() == "lumbar-fusion"  # the seed's orders are lumbar
    page.select_option("#patient", "fixture:cervical-seed")
    assert page.locator("#service").input_value() == "cervical-fusion"
    assert page.locator("#cpt").input_value() == "22551"
    assert page.locator("#level-C5-C6").is_checked() and page.locator("#level-L5-S1").count() == 0
    with page.expect_response(re.compile(r"/cds-services/cervical-fusion$")) as answer:
        sign(page)
    assert answer.value.status == 200 and answer.value.json()["cards"]


def test_choosing_a_service_offers_the_levels_of_its_region(page, service):
    page.select_option("#service", "cervical-fusion")
    levels = page.locator("#levels input").evaluate_all("boxes => boxes.map((b) => b.value)")
    assert levels == ["C2-C3", "C3-C4", "C4-C5", "C5-C6", "C6-C7", "C7-T1"]
    page.select_option("#service", "lumbar-fusion")
    assert page.locator("#levels input").count() == 6 and page.locator("#level-L4-L5").count() == 1


def test_a_fixture_s_own_orders_can_be_signed_as_written(page, service):
    page.select_option("#patient", "fixture:case-360")
    page.check("#as-written")
    assert page.locator("#cpt").is_disabled() and page.locator("#level-L4-L5").is_disabled()
    card = sign(page)
    request = json.loads(page.locator("#request-json").text_content())
    assert len(request["context"]["draftOrders"]["entry"]) == 3
    assert card.locator(".indicator").inner_text().strip().lower().endswith("warning")
    assert page.locator("#cards .card").count() == 1  # one requisition, one card


def test_a_patient_from_the_fhir_server_gets_the_same_card(page, service, fhir_server):
    card = sign(page, "fhir:seed-patient")
    request = json.loads(page.locator("#request-json").text_content())
    assert request["fhirServer"] == fhir_server.base_url and "prefetch" in request
    (expected,) = service_answer(page, service)["cards"]
    assert card.locator(".summary").inner_text() == expected["summary"]
    assert expected["summary"].startswith("L5-S1 ALIF (22558): 3 of 4 required criteria unmet")


def test_a_non_fusion_order_says_there_are_no_cards(page, service):
    page.select_option("#patient", "fixture:non-fusion")
    page.check("#as-written")  # the fixture's order is a lumbar MRI
    page.click("#sign")
    page.wait_for_function("() => document.querySelector('#status').textContent.startsWith('HTTP 200')")
    assert "no cards" in page.locator("#status").inner_text()
    assert page.locator("#cards .card").count() == 0


def test_an_error_from_the_service_is_shown_not_swallowed(page, service):
    page.uncheck("#level-L5-S1")  # no level: the order cannot be prepared
    page.click("#sign")
    page.wait_for_function("() => document.querySelector('#status').classList.contains('error')")
    assert "at least one level" in page.locator("#status").inner_text()
    assert page.locator("#cards .card").count() == 0


def test_the_page_loads_nothing_from_any_other_origin(page, service):
    sign(page)
    assert page.requested
    assert all(url.startswith(service.url + "/") or url.startswith("data:") for url in page.requested), page.requested


def test_every_form_control_has_a_label(page, service):
    sign(page)
    unlabelled = page.evaluate("""() => Array.from(document.querySelectorAll('select, input, textarea'))
        .filter(el => !el.closest('[hidden]') && el.labels.length === 0 && !el.getAttribute('aria-label'))
        .map(el => el.id || el.className)""")
    assert unlabelled == []


HOSTILE = """# Title <img src=x onerror="window.pwned=1">
<script>window.pwned = 2</script>

- done **bold** and *em* and `<code>`
- [Click](javascript:window.pwned=3) and [ok](https://example.org/a?b=1)
  - nested ![tracker](https://example.org/pixel.png)
  - [data](data:text/html,<script>window.pwned=4</script>) [case](JaVaScRiPt:window.pwned=5) <javascript:window.pwned=6>
  - <a href="javascript:window.pwned=7">raw</a> <svg onload="window.pwned=8"></svg>

| a | b |
|---|--:|
| <b>x</b> | 2 |
"""


def test_card_markdown_is_rendered_without_ever_creating_markup_from_its_text(page, service):
    result = page.evaluate(
        """(md) => {
        const box = document.createElement('div');
        box.appendChild(FusionMarkdown.render(md));
        document.body.appendChild(box);
        return {
          html: box.innerHTML,
          tags: Array.from(box.querySelectorAll('*')).map(e => e.tagName.toLowerCase()),
          attrs: Array.from(box.querySelectorAll('*')).flatMap(e => Array.from(e.attributes).map(a => a.name)),
          hrefs: Array.from(box.querySelectorAll('a')).map(a => a.getAttribute('href')),
          cells: Array.from(box.querySelectorAll('td')).map(c => c.textContent),
          pwned: window.pwned || null,
        };
    }""",
        HOSTILE,
    )
    assert result["pwned"] is None
    assert not {"script", "img", "b", "iframe", "svg", "input"} & set(result["tags"])
    assert not [a for a in result["attrs"] if a.startswith("on") or a == "style"]
    assert result["hrefs"] == ["https://example.org/a?b=1"]  # javascript: stays text, images fetch nothing
    assert {"h1", "ul", "li", "strong", "em", "code", "table", "th", "td", "a"} <= set(result["tags"])
    assert result["cells"] == ["<b>x</b>", "2"]
    assert "&lt;script&gt;" in result["html"] and "[image: tracker]" in result["html"]


def test_the_orders_coverage_information_is_shown_under_the_cards(page, service):
    """Da Vinci CRD 2.2.1 "Coverage Information" (a systemActions update), as an EHR shows it."""
    sign(page)
    page.wait_for_selector("#coverage:not([hidden])")
    shown = page.locator("#coverage-list").inner_text()
    assert "ServiceRequest/" in shown and "Coverage/seed-coverage" in shown
    assert "auth-needed" in shown and "clinical (withpa)" in shown
    assert "lumbar-fusion-documentation" in shown
    assert page.locator("#open-questionnaire").is_visible()


def test_the_questionnaire_opens_pre_populated_is_answered_and_the_order_signed_again(page, service):
    """Da Vinci DTR: the package from $questionnaire-package, pre-populated by its CQL from the seed's
    record; a completed response sent with the next order-sign turns nicotine into met, attested."""
    sign(page)
    page.wait_for_selector("#open-questionnaire:not([hidden])")
    page.click("#open-questionnaire")
    page.wait_for_selector("#questionnaire-form:not([hidden])")
    assert any("/dtr/Questionnaire/$questionnaire-package" in u for u in page.requested)
    assert page.locator("#q-injection-date").input_value() == "2026-08-05"
    assert page.locator("#q-injection").input_value() == "true"
    assert page.locator("#q-smoking-status").input_value() == ""
    page.select_option("#q-smoking-status", "8517006")
    page.fill("#q-quit-date", "2025-03-01")
    page.click("#complete-and-resign")
    page.wait_for_function("document.querySelector('#request-json').textContent.includes('questionnaireResponses')")
    page.wait_for_selector("#cards .card")
    sent = json.loads(page.locator("#request-json").text_content())
    (qr,) = [e["resource"] for e in sent["prefetch"]["questionnaireResponses"]["entry"]]
    assert qr["status"] == "completed" and qr["author"]["reference"] == "Practitioner/surgeon-1"
    # Nicotine is advisory under the seed's policy, so the short card leaves it out; the answer the page
    # received carries every criterion.
    page.wait_for_function("document.querySelector('#response-json').textContent.includes('attested by')")
    answer = json.loads(page.locator("#response-json").text_content())
    (nicotine,) = [
        r for r in answer["cards"][0]["extension"]["org.example.fusion-cds.criteria"] if r["id"] == "nicotine"
    ]
    assert nicotine["status"] == "met"
    assert "Former smoker, quit 2025-03-01 (attested by Try-it surgeon" in nicotine["reason"]
    assert "not coded" in nicotine["reason"]


def test_a_hostile_card_from_the_service_renders_inert(page, service):
    # The page shows whatever the service answers: answer with a card whose text tries every way in.
    card = {
        "uuid": "c-1",
        "indicator": "warning",
        "summary": "<img src=x onerror=window.pwned=9>",
        "source": {"label": "x", "url": "javascript:window.pwned=10"},
        "detail": HOSTILE,
        "links": [{"label": "policy", "url": "javascript:window.pwned=11", "type": "absolute"}],
    }
    page.route(
        "**/cds-services/lumbar-fusion",
        lambda route: route.fulfill(status=200, content_type="application/json", body=json.dumps({"cards": [card]})),
    )
    node = sign(page)
    result = node.evaluate("""(card) => ({
        tags: Array.from(card.querySelectorAll('*')).map(e => e.tagName.toLowerCase()),
        handlers: Array.from(card.querySelectorAll('*')).flatMap(e => Array.from(e.attributes))
            .filter(a => a.name.startsWith('on')).map(a => a.name),
        hrefs: Array.from(card.querySelectorAll('a[href]')).map(a => a.getAttribute('href')),
        pwned: window.pwned || null,
    })""")
    assert result["pwned"] is None
    assert not {"script", "img", "svg", "iframe"} & set(result["tags"])
    assert result["handlers"] == []
    assert result["hrefs"] and all(h.startswith("https://") for h in result["hrefs"]), result["hrefs"]
    assert node.locator(".summary").inner_text() == card["summary"]  # shown as text
