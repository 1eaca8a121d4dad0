"""One order-sign request carrying a lumbar and a cervical fusion order (CDS Hooks 2.0: the EHR calls
every service registered for the hook, each with the same request): each service answers for the
orders of its own procedure and ignores the other's."""

import uuid

from conftest import FIXTURES, load_json
from support.hooks import call

MIXED = FIXTURES / "corpus" / "cervical-fusion" / "requests" / "cv11-lumbar-and-cervical-orders.json"


def mixed_request() -> dict:
    # A call of its own: coverage information is sent once per hookInstance and order (Da Vinci CRD), and
    # the session's service may have answered this corpus request already (tests/test_corpus.py).
    return {**load_json(MIXED), "hookInstance": str(uuid.uuid4())}


def test_the_lumbar_service_answers_only_for_the_lumbar_order(client):
    body = call(client, mixed_request(), service="lumbar-fusion")
    assert len(body["cards"]) == 1
    assert body["cards"][0]["summary"].startswith("L4-L5 ALIF (22558)")
    assert "22551" not in body["cards"][0]["summary"]
    actions = {a["resource"]["id"] for a in body.get("systemActions", [])}
    assert actions == {"cv34-order-lumbar"}


def test_the_cervical_service_answers_only_for_the_cervical_order(client):
    body = call(client, mixed_request(), service="cervical-fusion")
    assert len(body["cards"]) == 1
    assert body["cards"][0]["summary"].startswith("C5-C6 ACDF (22551)")
    assert "22558" not in body["cards"][0]["summary"]
    actions = {a["resource"]["id"] for a in body.get("systemActions", [])}
    assert actions == {"cv34-order-cervical"}
