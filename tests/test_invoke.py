"""`cds-hooks invoke` behaves as an EHR: discovery, prefetch, a signed order-sign call, readable cards.

The service runs for real over HTTP (development configuration, so authentication is off) and the
patient data lives on the real FHIR server of the test session. The service does not check the JWT
here, so the tests check it themselves: every call the CLI made carried one, and each one is
verified against the JWK Set that `cds-hooks keys` printed, header and claims per CDS Hooks 2.0
"Trusting CDS Clients".
"""

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import jwt
import pytest

from cds_hooks.web.app import create_app
from cds_hooks.config import Config
from conftest import REPO, request_fixture
from support.conformance import assert_conformant
from support.hooks import resources, statuses
from support.live import LiveServer

pytestmark = pytest.mark.fhir_server

CLI = str(Path(sys.executable).parent / "cds-hooks")
ISS = "https://ehr.example.org/fusion-sandbox"
SEED_STATUSES = {
    "indication": "met",
    "imaging-severity@L5-S1": "not-met",
    "conservative-care": "not-met",
    "instability@L5-S1": "not-documented",
    "injection-trial": "met",
    "neuropathic-medication": "not-documented",
    "facet-evaluation": "not-documented",
    "nicotine": "not-documented",
    "red-flags": "not-documented",
}


def cli(*args):
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120, cwd=REPO)


@pytest.fixture(scope="module")
def service(engine):
    app = create_app(Config.development(), engine=engine)
    live = LiveServer(app).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """An ES384 key pair made by the CLI, and the JWK Set it printed."""
    folder = tmp_path_factory.mktemp("keys")
    out = cli("keys", "generate", "--out", str(folder / "ehr.pem"), "--kid", "ehr-key-1")
    assert out.returncode == 0, out.stderr
    return {"key": str(folder / "ehr.pem"), "jwks": json.loads(out.stdout), "folder": folder}


def invoke(service, fhir_server, *extra):
    return cli("invoke", "--service-url", service.url, "--fhir-server", fhir_server.base_url, *extra)


def sent_requests(service, path="/cds-services/lumbar-fusion"):
    return [json.loads(s.body) for s in service.requests_to(path, "POST")]


def verified_claims(authorization: str, jwks: dict, url: str) -> tuple[dict, dict]:
    assert authorization and authorization.startswith("Bearer ")
    token = authorization.removeprefix("Bearer ")
    header = jwt.get_unverified_header(token)
    jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(
        token,
        jwt.PyJWK(jwk).key,
        algorithms=[jwk["alg"]],
        audience=url,
        options={"require": ["iss", "aud", "exp", "iat", "jti"]},
    )
    return header, claims


def test_seed_order_renders_the_warning_card_with_its_gaps_suggestions_and_links(service, fhir_server):
    out = invoke(service, fhir_server, "--order", "seed", "--color", "never")
    assert out.returncode == 0, out.stderr
    assert sent_requests(service)[-1]["context"]["patientId"] == "seed-patient"
    text = out.stdout
    assert text.startswith(" WARNING  L5-S1 ALIF (22558): 3 of 4 required criteria unmet")
    flat = " ".join(text.split())  # the terminal wraps long lines
    assert "Pathway: Stenosis with instability" in flat and "No paperwork changes this: Highest stenosis" in flat
    assert "Suggestions (choose any)" in text
    assert "[1] Order flexion-extension radiographs (L5-S1)" in text
    assert "→ create ServiceRequest 72114" in text
    assert f"{service.url}/policies/lumbar-fusion/default" in text
    assert "Override reasons" in text and "Payer approval already obtained" in text
    assert "\033[" not in text


def test_the_orders_coverage_information_is_shown_after_the_cards(service, fhir_server):
    """CDS Hooks 2.0 `systemActions`; Da Vinci CRD 2.2.1 coverage information on the order."""
    out = invoke(service, fhir_server, "--order", "seed", "--color", "never")
    assert out.returncode == 0, out.stderr
    cards, _, actions = out.stdout.partition("System actions")
    assert "WARNING" in cards and actions
    assert "update ServiceRequest/" in actions
    flat = " ".join(actions.split())  # the terminal wraps long lines
    assert "covered: covered · prior auth: auth-needed · documentation: clinical (withpa)" in flat
    assert "questionnaire: http://fusion-cds.example.org/fhir/Questionnaire/lumbar-fusion-documentation" in flat


def test_color_marks_the_indicator_in_its_colour(service, fhir_server):
    out = invoke(service, fhir_server, "--order", "seed", "--color", "always")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("\033[1m\033[33m\033[7m WARNING ")  # warning is yellow


def test_prefetch_is_resolved_on_the_fhir_server_and_matches_the_record(service, fhir_server):
    out = invoke(service, fhir_server, "--order", "seed", "--json")
    assert out.returncode == 0, out.stderr
    request = sent_requests(service)[-1]
    assert request["fhirServer"] == fhir_server.base_url
    assert set(request["prefetch"]) == {
        "patient",
        "coverage",
        "conditions",
        "procedures",
        "encounters",
        "imagingStudies",
        "diagnosticReports",
        "observations",
        "medicationRequests",
        "medicationStatements",
        "questionnaireResponses",
        "documentReferences",
    }
    assert request["prefetch"]["patient"]["id"] == "seed-patient"
    assert request["prefetch"]["observations"]["total"] == 0 and "entry" not in request["prefetch"]["observations"]
    fetched = {(r["resourceType"], r["id"]) for r in resources(request)}
    expected = {(r["resourceType"], r["id"]) for r in resources(request_fixture("seed"))}
    assert fetched == expected
    body = json.loads(out.stdout)
    assert_conformant(body)
    assert statuses(body["cards"][0]) == SEED_STATUSES
    assert body["extension"]["org.example.fusion-cds.evaluation"]["dataSource"] == "prefetch"


def test_no_prefetch_leaves_the_fetching_to_the_service(service, fhir_server):
    out = invoke(service, fhir_server, "--order", "seed", "--no-prefetch", "--json")
    assert out.returncode == 0, out.stderr
    request = sent_requests(service)[-1]
    assert "prefetch" not in request and request["fhirServer"] == fhir_server.base_url
    body = json.loads(out.stdout)
    assert body["extension"]["org.example.fusion-cds.evaluation"]["dataSource"] == "fetched"
    assert statuses(body["cards"][0]) == SEED_STATUSES


def test_flags_build_the_fusion_order(service, fhir_server):
    out = invoke(
        service,
        fhir_server,
        "--cpt",
        "22630",
        "--level",
        "L4-S1",
        "--patient",
        "case360-patient",
        "--priority",
        "urgent",
        "--date",
        "2026-12-10",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    (order,) = [e["resource"] for e in sent_requests(service)[-1]["context"]["draftOrders"]["entry"]]
    assert order["resourceType"] == "ServiceRequest" and order["status"] == "draft" and order["intent"] == "order"
    assert order["code"]["coding"][0] == {
        "system": "http://www.ama-assn.org/go/cpt",
        "code": "22630",
        "display": "Posterior lumbar interbody fusion",
    }
    assert [s["coding"][0]["code"] for s in order["bodySite"]] == ["L4-L5", "L5-S1"]
    assert order["priority"] == "urgent" and order["occurrenceDateTime"] == "2026-12-10"
    assert order["subject"] == {"reference": "Patient/case360-patient"}
    (card,) = json.loads(out.stdout)["cards"]
    assert card["summary"].startswith("Urgent L4-L5, L5-S1 PLIF/TLIF (22630)")


def test_every_call_carries_a_jwt_signed_per_the_spec(service, fhir_server, keys):
    service.seen.clear()
    out = invoke(
        service,
        fhir_server,
        "--order",
        "seed",
        "--key",
        keys["key"],
        "--kid",
        "ehr-key-1",
        "--iss",
        ISS,
        "--jku",
        "https://ehr.example.org/.well-known/jwks.json",
        "--tenant",
        "hospital-7",
    )
    assert out.returncode == 0, out.stderr
    calls = {s.path: s for s in service.seen}
    assert set(calls) == {"/cds-services", "/cds-services/lumbar-fusion"}
    for path, seen in calls.items():
        url = service.url + path  # aud is exactly the URL called
        header, claims = verified_claims(seen.authorization, keys["jwks"], url)
        assert header == {
            "alg": "ES384",
            "kid": "ehr-key-1",
            "typ": "JWT",
            "jku": "https://ehr.example.org/.well-known/jwks.json",
        }
        assert set(claims) == {"iss", "aud", "exp", "iat", "jti", "tenant"}
        assert claims["iss"] == ISS and claims["aud"] == url and claims["tenant"] == "hospital-7"
        assert 0 < claims["exp"] - claims["iat"] <= 300
        assert abs(claims["iat"] - time.time()) < 120
        uuid.UUID(claims["jti"])
    jtis = {jwt.decode(s.authorization[7:], options={"verify_signature": False})["jti"] for s in service.seen}
    assert len(jtis) == len(service.seen)


def test_an_rs384_key_from_keys_generate_signs_rs384_tokens(service, fhir_server, keys):
    key = keys["folder"] / "rsa.pem"
    generated = cli("keys", "generate", "--alg", "RS384", "--out", str(key))
    assert generated.returncode == 0, generated.stderr
    jwks = json.loads(cli("keys", "jwks", "--key", str(key)).stdout)
    assert jwks["keys"][0]["kty"] == "RSA"
    service.seen.clear()
    out = invoke(service, fhir_server, "--order", "seed", "--key", str(key), "--iss", ISS, "--json")
    assert out.returncode == 0, out.stderr
    seen = service.requests_to("/cds-services/lumbar-fusion")[-1]
    header, claims = verified_claims(seen.authorization, jwks, service.url + "/cds-services/lumbar-fusion")
    assert header["alg"] == "RS384" and header["kid"] == jwks["keys"][0]["kid"]
    assert "jku" not in header and "tenant" not in claims


def test_keys_jwks_prints_the_same_public_key_that_generate_printed(keys):
    out = cli("keys", "jwks", "--key", keys["key"], "--kid", "ehr-key-1")
    assert out.returncode == 0
    assert json.loads(out.stdout) == keys["jwks"]
    assert (Path(keys["key"]).stat().st_mode & 0o777) == 0o600


def test_without_a_key_no_authorization_header_is_sent(service, fhir_server):
    service.seen.clear()
    out = invoke(service, fhir_server, "--order", "seed", "--json")
    assert out.returncode == 0
    assert all(s.authorization is None for s in service.seen)
    assert "no JWT" in out.stderr


def test_a_key_without_an_issuer_is_refused_before_anything_is_sent(service, fhir_server, keys):
    service.seen.clear()
    out = invoke(service, fhir_server, "--order", "seed", "--key", keys["key"])
    assert out.returncode == 2 and "--iss" in out.stderr
    assert service.seen == []


def test_a_bundled_patient_needs_no_fhir_server(service):
    out = cli("invoke", "--service-url", service.url, "--order", "meets-all", "--json")
    assert out.returncode == 0, out.stderr
    assert "bundled fixture" in out.stderr
    request = sent_requests(service)[-1]
    assert "fhirServer" not in request
    assert json.loads(out.stdout)["cards"][0]["indicator"] == "info"


def test_a_non_fusion_order_sent_to_a_named_service_gets_the_no_cards_sentence(service):
    out = cli("invoke", "--service-url", service.url, "--order", "non-fusion", "--service", "lumbar-fusion")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "No cards: the service has nothing to say about these orders."


def test_orders_no_service_claims_are_refused_in_one_line_without_a_call(service):
    service.seen.clear()
    out = cli("invoke", "--service-url", service.url, "--order", "non-fusion")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "no service claims these orders" in out.stderr
    assert [s.path for s in service.seen] == ["/cds-services"]


def test_the_orders_go_to_the_service_whose_pack_claims_them(service):
    service.seen.clear()
    out = cli("invoke", "--service-url", service.url, "--order", "cervical-seed", "--json")
    assert out.returncode == 0, out.stderr
    assert [s.path for s in service.seen] == ["/cds-services", "/cds-services/cervical-fusion"]
    assert json.loads(out.stdout)["cards"]


def test_orders_for_two_services_are_sent_to_each_and_both_answers_are_shown(service, fhir_server, tmp_path):
    orders = json.loads((REPO / "fhir_fixtures" / "orders" / "seed.json").read_text())
    cervical = json.loads((REPO / "fhir_fixtures" / "orders" / "cervical-seed.json").read_text())
    orders["entry"] += cervical["entry"]
    both = tmp_path / "both.json"
    both.write_text(json.dumps(orders))
    service.seen.clear()
    out = invoke(service, fhir_server, "--order", str(both), "--patient", "seed-patient", "--color", "never")
    assert out.returncode == 0, out.stderr
    called = {s.path for s in service.seen if s.method == "POST"}
    assert called == {"/cds-services/lumbar-fusion", "/cds-services/cervical-fusion"}
    headings = [line for line in out.stdout.splitlines() if line.startswith("== ")]
    assert sorted(headings) == ["== cervical-fusion ==", "== lumbar-fusion =="]


def test_a_service_error_is_shown_with_a_non_zero_exit(service):
    # No prefetch and a FHIR server the service cannot reach: CDS Hooks 2.0 says 412.
    out = cli(
        "invoke",
        "--service-url",
        service.url,
        "--order",
        "seed",
        "--no-prefetch",
        "--fhir-server",
        "http://127.0.0.1:9/fhir",
    )
    assert out.returncode == 1
    assert "HTTP 412" in out.stderr
    assert json.loads(out.stdout)["error"] == "no-data"


def test_an_unknown_service_id_is_reported_from_discovery(service, fhir_server):
    out = invoke(service, fhir_server, "--order", "seed", "--service", "knee-arthroscopy")
    assert out.returncode == 1
    assert "no service 'knee-arthroscopy'" in out.stderr and "lumbar-fusion" in out.stderr


def test_a_level_outside_the_region_of_the_pack_that_orders_the_code_is_refused(service, fhir_server):
    out = invoke(service, fhir_server, "--cpt", "22558", "--level", "C5-C6", "--patient", "seed-patient")
    assert out.returncode == 2 and "C5-C6 is not a level of the service that orders CPT 22558" in out.stderr


def test_an_unreachable_service_is_reported_without_a_traceback():
    out = cli("invoke", "--service-url", "http://127.0.0.1:9", "--order", "seed", "--timeout", "2")
    assert out.returncode == 1
    assert "cannot reach http://127.0.0.1:9/cds-services" in out.stderr and "Traceback" not in out.stderr


def test_a_refused_call_shows_the_status_with_the_service_s_reason(engine, fhir_server):
    # Authentication on, and the call carries no JWT: the 401 comes with the service's reason.
    config = Config.development(
        auth_disabled=False,
        public_base_url="http://127.0.0.1",
        trusted_issuers=[{"iss": "https://ehr.example.org", "jwks_url": "https://ehr.example.org/jwks.json"}],
    )
    live = LiveServer(create_app(config, engine=engine)).start()
    try:
        out = invoke(live, fhir_server, "--order", "seed")
    finally:
        live.stop()
    assert out.returncode == 1
    line = next(line for line in out.stderr.splitlines() if "answered HTTP 401" in line)
    assert line.split("HTTP 401", 1)[1].startswith(": ") and len(line.split("HTTP 401: ", 1)[1]) > 5, line
