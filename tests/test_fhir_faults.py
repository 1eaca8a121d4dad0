"""A FHIR server that misbehaves: the service answers within its deadline with a conformant response,
and the access token never goes anywhere but the allowlisted server.

The faulty server and the "other host" are real HTTP servers on 127.0.0.1 (tests/support/fault_server.py);
the other host records every request it receives, so "nothing was sent there" is observed, not assumed.
"""

import time
import uuid

import pytest

from cds_hooks.web.app import create_app
from cds_hooks.config import Config
from conftest import patient_bundle, request_fixture
from support.conformance import assert_conformant
from support.fault_server import FaultyFhirServer, wait_until
from support.hooks import SERVICE, results
from support.servers import Recorder

DEADLINE = 1.5
# The answer may come after the FHIR deadline by the time CQL evaluation and cards take.
MARGIN = 1.5


@pytest.fixture(scope="module")
def hosts():
    other = Recorder().start()
    faulty = FaultyFhirServer(patient_bundle("seed"), other.url).start()
    try:
        yield faulty, other
    finally:
        faulty.stop()
        other.stop()


@pytest.fixture(scope="module")
def fault_app(engine):
    config = Config.development(
        fhir_deadline=DEADLINE, fhir_timeout=1.0, fhir_max_bytes=1_000_000, fhir_retry_backoff=0.05, fhir_max_pages=5
    )
    app = create_app(config, engine=engine)
    app.testing = True
    return app


@pytest.fixture(autouse=True)
def clean(hosts):
    for server in hosts:
        server.reset()


def hook_call(app, base_url, prefetch_all_but=None):
    """Call the service with `fhirServer` = base_url; the token is unique to this call."""
    token = f"access-token-{uuid.uuid4()}"
    body = request_fixture("seed", prefetch=False)
    body["fhirServer"] = base_url
    body["fhirAuthorization"]["access_token"] = token
    if prefetch_all_but is not None:
        full = request_fixture("seed")["prefetch"]
        body["prefetch"] = {k: v for k, v in full.items() if k not in prefetch_all_but}
    started = time.monotonic()
    response = app.test_client().post(SERVICE, json=body)
    return response, time.monotonic() - started, token


def criteria(response) -> dict:
    card = response.get_json()["cards"][0]
    return {r["id"]: r["status"] for r in results(card) if not r.get("level")}


def assert_partial(response, elapsed, unavailable: set[str]):
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert_conformant(body)
    statuses = criteria(response)
    assert {c for c, s in statuses.items() if s == "unavailable"} >= unavailable
    assert "Could not be checked" in body["cards"][0]["detail"]
    assert elapsed < DEADLINE + MARGIN, elapsed


def tokens_seen(server, token) -> list:
    return [s for s in server.seen() if token in s.headers.get("authorization", "")]


# ---- every source fails: 412 in time -----------------------------------------------------------


@pytest.mark.parametrize(
    "fault", ["slow", "drip", "500", "429-always", "truncated", "not-fhir", "html", "huge", "redirect"]
)
def test_when_no_source_answers_the_call_is_412_within_the_deadline(fault_app, hosts, fault):
    faulty, other = hosts
    response, elapsed, token = hook_call(fault_app, faulty.base(fault))
    assert response.status_code == 412, response.get_json()
    assert response.get_json()["error"] == "no-data"
    assert elapsed < DEADLINE + MARGIN, elapsed
    assert tokens_seen(faulty, token), "the token should have gone to the allowlisted server"
    assert other.seen() == []


# ---- one source fails: the rest is used, the card says what could not be checked ----------------


@pytest.mark.parametrize(
    "fault",
    [
        "slow",
        "drip",
        "500",
        "429-always",
        "truncated",
        "not-fhir",
        "huge",
        "pages-forever",
        "next-elsewhere",
        "redirect",
    ],
)
def test_a_failing_condition_search_makes_only_its_criteria_unavailable(fault_app, hosts, fault):
    faulty, other = hosts
    response, elapsed, token = hook_call(fault_app, faulty.base(fault, "Condition"))
    assert_partial(response, elapsed, {"indication"})
    statuses = criteria(response)
    assert statuses["injection-trial"] == "met"  # Procedures came from the same server
    assert other.seen() == [], "a request left for another host"


@pytest.mark.parametrize("status", ["429", "502", "503", "504"])
def test_a_transient_error_is_retried_and_the_data_is_used(fault_app, hosts, status):
    faulty, _ = hosts
    response, elapsed, _ = hook_call(fault_app, faulty.base(f"{status}-once", "Condition"))
    assert response.status_code == 200
    assert criteria(response)["indication"] == "met"
    assert len(faulty.requests_for(f"{status}-once@Condition/fhir/Condition")) == 2


def test_a_retry_after_longer_than_the_deadline_is_not_waited_for(fault_app, hosts):
    faulty, _ = hosts
    response, elapsed, _ = hook_call(fault_app, faulty.base("429-always", "Condition"))
    assert criteria(response)["indication"] == "unavailable"
    assert len(faulty.requests_for("429-always@Condition/fhir/Condition")) == 1
    assert elapsed < DEADLINE, elapsed


def test_paging_stops_at_the_page_cap(fault_app, hosts):
    faulty, _ = hosts
    hook_call(fault_app, faulty.base("pages-forever", "Condition"))
    assert len(faulty.requests_for("pages-forever@Condition/fhir/Condition")) == 5


def test_a_slow_source_alone_still_answers_within_the_deadline_with_prefetch_for_the_rest(fault_app, hosts):
    faulty, _ = hosts
    response, elapsed, _ = hook_call(fault_app, faulty.base("slow"), prefetch_all_but={"procedures"})
    assert_partial(response, elapsed, {"conservative-care", "injection-trial"})
    assert criteria(response)["indication"] == "met"


# ---- the token never leaves for another host ---------------------------------------------------------


def test_a_redirect_is_not_followed_and_the_other_host_sees_nothing(fault_app, hosts):
    faulty, other = hosts
    response, _, token = hook_call(fault_app, faulty.base("redirect"))
    assert response.status_code == 412
    keys = fault_app.extensions["cds_hooks"].get("lumbar-fusion").prefetch
    assert len(tokens_seen(faulty, token)) == len(keys)  # every key tried once at the allowlisted server
    time.sleep(0.2)
    assert other.seen() == []


def test_a_next_link_to_another_host_is_not_followed(fault_app, hosts):
    faulty, other = hosts
    response, _, token = hook_call(fault_app, faulty.base("next-elsewhere"))
    # Every search ends on a foreign next link; only the Patient read (no paging) succeeds.
    assert response.status_code == 200 and criteria(response)["indication"] == "unavailable"
    assert tokens_seen(faulty, token)
    time.sleep(0.2)
    assert other.seen() == []


def test_a_next_link_on_the_same_host_outside_the_base_path_is_not_followed(fault_app, hosts):
    faulty, _ = hosts
    response, _, token = hook_call(fault_app, faulty.base("next-beside"))
    assert response.status_code == 200 and criteria(response)["indication"] == "unavailable"
    assert tokens_seen(faulty, token)
    assert faulty.requests_for("beside") == []


# ---- the allowlist -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def allowlist_app(engine, hosts):
    faulty, _ = hosts
    config = Config.development(fhir_allow_loopback=False, fhir_servers=[faulty.base("ok")], fhir_deadline=DEADLINE)
    app = create_app(config, engine=engine)
    app.testing = True
    return app


def test_a_fhir_server_off_the_allowlist_is_403_when_data_must_be_fetched(allowlist_app, hosts):
    faulty, other = hosts
    response, _, _ = hook_call(allowlist_app, other.url + "/fhir")
    assert response.status_code == 403 and response.get_json()["error"] == "fhir-server-not-allowed"
    assert other.seen() == []


def test_a_fhir_server_off_the_allowlist_is_ignored_when_prefetch_covers_everything(allowlist_app, hosts):
    _, other = hosts
    response, _, _ = hook_call(allowlist_app, other.url + "/fhir", prefetch_all_but=set())
    assert response.status_code == 200 and len(response.get_json()["cards"]) == 1
    assert other.seen() == []


def test_an_allowlisted_fhir_server_is_used(allowlist_app, hosts):
    faulty, _ = hosts
    response, _, token = hook_call(allowlist_app, faulty.base("ok") + "/")
    assert response.status_code == 200
    assert criteria(response)["indication"] == "met"
    assert tokens_seen(faulty, token)


def test_the_same_host_under_another_base_path_is_not_allowed(allowlist_app, hosts):
    faulty, _ = hosts
    response, _, _ = hook_call(allowlist_app, faulty.base("500"))
    assert response.status_code == 403
    assert not wait_until(lambda: faulty.seen("/500"), timeout=0.3)
