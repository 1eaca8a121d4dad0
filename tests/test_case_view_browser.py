"""The case view and the peer-to-peer brief in a real headless browser (Debian's chromium, Playwright).

The service runs for real over HTTP with an audit trail. For the seed, two other fixtures and the
urgent red-flag case, the card's own link is opened as a surgeon would open it: the page must show
every criterion with the status the card reported, the brief behind it must print on one page, and
both are saved to docs/images/ for docs/surgeons.md. From the try-it page, the link is one click.
Chromium starts with no network features and an empty profile; the pages load nothing from anywhere.
"""

import os
import tempfile
from pathlib import Path
import base64
import re
from urllib.parse import urlsplit

import pytest
import requests

from cds_hooks.config import Config
from cds_hooks.pipeline.cards import EXTENSION_KEY
from cds_hooks.web.app import create_app
from cds_hooks.web.case_view import LINK_LABEL
from conftest import REPO, request_fixture
from support.audit_db import audit_settings
from support.browser import chromium
from support.live import LiveServer

pytestmark = [pytest.mark.browser]

# The pictures in docs/ are refreshed on request only (CDS_UPDATE_SCREENSHOTS=1): a test run leaves
# the checkout as it was (the brief shows the time it was prepared, so every picture differs).
IMAGES = (
    REPO / "docs" / "images"
    if os.environ.get("CDS_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.mkdtemp(prefix="case-view-shots-"))
)
CASES = ["seed", "meets-all", "no-imaging", "red-flag"]  # red-flag: an urgent order


@pytest.fixture(scope="module")
def service(engine, tmp_path_factory):
    folder = tmp_path_factory.mktemp("case-view-browser")
    config = Config.development(
        case_view_key=base64.b64encode(b"b" * 32).decode(), **audit_settings(f"sqlite:///{folder / 'audit.db'}", folder)
    )
    live = LiveServer(create_app(config, engine=engine)).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    with chromium(tmp_path_factory.mktemp("chromium-profile"), width=1100) as context:
        yield context


@pytest.fixture()
def page(browser_context, service):
    page = browser_context.new_page()
    page.requested = []
    page.on("request", lambda r: page.requested.append(r.url))
    yield page
    page.close()


def signed_card(service, name: str) -> dict:
    response = requests.post(f"{service.url}/cds-services/lumbar-fusion", json=request_fixture(name), timeout=60)
    assert response.status_code == 200
    (card,) = response.json()["cards"]
    return card


def link_of(card: dict) -> str:
    (link,) = [l["url"] for l in card["links"] if l["label"] == LINK_LABEL]
    return link


def overall(card: dict) -> dict[str, set[str]]:
    """criterion id -> the statuses the card reported for it (one per level)."""
    out: dict[str, set[str]] = {}
    for r in card["extension"][EXTENSION_KEY]:
        out.setdefault(r["id"], set()).add(r["status"])
    return out


def only_from(page, service) -> None:
    origin = service.url
    assert all(u.startswith(origin) or u.startswith("data:") for u in page.requested), page.requested


@pytest.mark.parametrize("name", CASES)
def test_the_case_view_shows_what_the_card_reported_for_every_criterion(page, service, name):
    card = signed_card(service, name)
    page.goto(link_of(card))
    assert page.locator("#card .summary").inner_text().endswith(card["summary"])
    shown: dict[str, set[str]] = {}
    for article in page.locator("article.criterion").all():
        shown.setdefault(article.get_attribute("data-criterion"), set()).add(article.get_attribute("data-status"))
    assert shown == overall(card)
    assert page.locator("#prior-auth tr[data-document]").count() >= 5
    assert page.locator("#unavailable").is_visible()
    only_from(page, service)
    page.screenshot(path=str(IMAGES / f"case-view-{name}.png"), full_page=name == "seed")


@pytest.mark.parametrize("name", CASES)
def test_the_brief_lists_one_objection_per_unmet_required_criterion_and_prints_on_one_page(page, service, name):
    card = signed_card(service, name)
    page.goto(link_of(card))
    page.click("#brief-link")
    page.wait_for_selector("body.brief")
    unmet = [
        r
        for r in card["extension"][EXTENSION_KEY]
        if r["required"] and r["status"] in ("not-met", "not-documented", "unavailable")
    ]
    assert page.locator("#objections li[data-criterion]").count() == len(unmet)
    assert page.locator("#required tr[data-criterion]").count() == len(
        [r for r in card["extension"][EXTENSION_KEY] if r["required"]]
    )
    assert page.locator("#case-summary p").inner_text().count(".") >= 3
    only_from(page, service)
    page.screenshot(path=str(IMAGES / f"brief-{name}.png"), full_page=True)
    page.emulate_media(media="print")
    pdf = page.pdf(format="Letter", print_background=True)
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
    assert pages == 1, f"the brief for {name} prints on {pages} pages"


def test_the_seed_brief_answers_the_reviewer_from_the_record(page, service):
    page.goto(link_of(signed_card(service, "seed")))
    page.click("#brief-link")
    objections = page.locator("#objections li")
    imaging = objections.filter(has_text="Imaging severity does not meet the threshold").inner_text()
    assert "no paperwork changes that" in imaging and "mild" in imaging
    films = page.locator('#prior-auth tr[data-document="instability-imaging"]').inner_text()
    assert "Missing" in films


def test_the_urgent_case_is_marked_urgent_in_the_case_view(page, service):
    page.goto(link_of(signed_card(service, "red-flag")))
    assert "urgent order" in page.locator("header .when").inner_text()


def test_an_altered_link_opens_a_refusal_page_not_the_case(page, service):
    link = link_of(signed_card(service, "seed"))
    response = page.goto(re.sub(r"s=[^&]+", "s=AAAA", link))
    assert response.status == 403
    assert page.locator("h1").inner_text() == "The case view cannot be shown"
    assert page.locator("article.criterion").count() == 0


def test_from_the_tryit_page_the_case_view_is_one_click_away(page, service):
    page.goto(f"{service.url}/try/")
    page.wait_for_selector("#order-form[data-ready=true]")
    page.click("#sign")
    card = page.locator("#cards .card").first
    card.wait_for()
    with page.context.expect_page() as opened:
        card.locator(".link-list a", has_text="Case view").click()
    view = opened.value
    view.wait_for_load_state()
    assert urlsplit(view.url).path.startswith("/cases/")
    assert view.locator("article.criterion").count() >= 9
    view.close()
