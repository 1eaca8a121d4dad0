"""Caller authentication (CDS Hooks 2.0, "Trusting CDS Clients"): every bad token 401, every good one 200.

The service runs with authentication on, trusting one issuer whose keys are generated for this run and
served over real HTTP on 127.0.0.1 (a configured JWK Set URL, and a second set at an allowlisted `jku`).
An attacker's JWK Set is served by another server that records every request it gets.
"""

import copy
import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from cds_hooks.web.app import create_app
from cds_hooks.config import Config
from cds_hooks.auth.caller_jwt import AuthError, CallerVerifier, ConfigError, JwksCache
from cds_hooks.auth.replay import MemoryReplayStore
from conftest import request_fixture
from support.conformance import assert_conformant
from support.jwt_issuer import JwksServer, Signer, hs256_with, public_jwk, tamper, unsigned

BASE = "https://cds.example.org/fusion"
DISCOVERY = "/cds-services"
SERVICE = "/cds-services/lumbar-fusion"
FEEDBACK = "/cds-services/lumbar-fusion/feedback"
TENANT_ISS = "https://tenanted-ehr.example.org"


@pytest.fixture(scope="module")
def keys():
    server = JwksServer().start()
    attacker = JwksServer().start()
    try:
        yield server, attacker
    finally:
        server.stop()
        attacker.stop()


@pytest.fixture(scope="module")
def signer(keys):
    return Signer(keys[0])


@pytest.fixture(scope="module")
def tenant_signer(keys):
    return Signer(keys[0], iss=TENANT_ISS, prefix="/tenanted")


@pytest.fixture(scope="module")
def attacker(keys):
    server = keys[1]
    evil = Signer(server, iss="https://ehr.example.org/cds-client")
    return server, evil


def secured_config(signer, tenant_signer, **extra) -> Config:
    issuers = [signer.issuer_config(), {"iss": TENANT_ISS, "jwks_url": tenant_signer.jwks_url, "tenant": "hospital-a"}]
    return Config(public_base_url=BASE, trusted_issuers=issuers, allow_http_loopback=True, **extra)


@pytest.fixture(scope="module")
def secured_app(engine, signer, tenant_signer, tmp_path_factory):
    app = create_app(secured_config(signer, tenant_signer, var_dir=tmp_path_factory.mktemp("var")), engine=engine)
    app.testing = True
    return app


def url(path: str) -> str:
    return BASE + path


def feedback_body() -> dict:
    return {
        "feedback": [
            {
                "card": str(uuid.uuid4()),
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": str(uuid.uuid4())}],
                "outcomeTimestamp": "2026-11-25T10:00:00Z",
            }
        ]
    }


def call(app, path: str, authorization: str | None):
    client = app.test_client()
    headers = {"Authorization": authorization} if authorization is not None else {}
    if path == DISCOVERY:
        return client.get(path, headers=headers)
    body = feedback_body() if path == FEEDBACK else request_fixture("seed")
    return client.post(path, json=body, headers=headers)


# ---- good tokens -------------------------------------------------------------------------------


def es384(s, aud):
    return s.token(aud, alg="ES384")


def rs384(s, aud):
    return s.token(aud, alg="RS384")


def es384_jku(s, aud):
    return s.token(aud, alg="ES384", key=s.jku_ec, headers={"jku": s.jku_url})


def rs384_jku(s, aud):
    return s.token(aud, alg="RS384", key=s.jku_rsa, headers={"jku": s.jku_url})


def epic_like(s, aud):
    """RS384 with jku, `sub` and vendor claims, `nbf`, and `aud` as an array."""
    now = int(time.time())
    return s.token(
        [aud, "https://other.example.org/cds-services"],
        alg="RS384",
        key=s.jku_rsa,
        headers={"jku": s.jku_url},
        sub="4f7e2a90-client-id",
        nbf=now,
        client_id="4f7e2a90-client-id",
        **{"epic.eci": "opaque-ehr-user", "deployment_id": "prod-1"},
    )


GOOD = {"ES384": es384, "RS384": rs384, "ES384+jku": es384_jku, "RS384+jku": rs384_jku, "epic-like": epic_like}


@pytest.mark.parametrize("path", [DISCOVERY, SERVICE, FEEDBACK], ids=["discovery", "service", "feedback"])
@pytest.mark.parametrize("kind", list(GOOD))
def test_a_good_token_is_accepted_on_every_endpoint(secured_app, signer, kind, path):
    r = call(secured_app, path, "Bearer " + GOOD[kind](signer, url(path)))
    assert r.status_code == 200, r.get_json()
    if path == SERVICE:
        assert_conformant(r.get_json())
        assert len(r.get_json()["cards"]) == 1


def test_the_tenant_claim_is_checked_when_the_issuer_names_one(secured_app, tenant_signer):
    good = tenant_signer.token(url(SERVICE), tenant="hospital-a")
    assert call(secured_app, SERVICE, "Bearer " + good).status_code == 200
    wrong = tenant_signer.token(url(SERVICE), tenant="hospital-b")
    assert call(secured_app, SERVICE, "Bearer " + wrong).status_code == 401
    missing = tenant_signer.token(url(SERVICE))
    assert call(secured_app, SERVICE, "Bearer " + missing).status_code == 401


def test_clock_skew_within_the_bound_is_tolerated(secured_app, signer):
    now = int(time.time())
    token = signer.token(url(DISCOVERY), iat=now - 200, exp=now - 30)  # expired 30 s ago, skew is 60 s
    assert call(secured_app, DISCOVERY, "Bearer " + token).status_code == 200


# ---- bad tokens --------------------------------------------------------------------------------


def _now():
    return int(time.time())


BAD = {
    "no-authorization-header": lambda s, a, ev: None,
    "basic-scheme": lambda s, a, ev: "Basic dXNlcjpwYXNz",
    "bearer-without-token": lambda s, a, ev: "Bearer ",
    "garbage": lambda s, a, ev: "Bearer not-a-jwt",
    "three-garbage-segments": lambda s, a, ev: "Bearer aaaa.bbbb.cccc",
    "alg-none": lambda s, a, ev: "Bearer " + unsigned({"alg": "none", "typ": "JWT", "kid": "ec-1"}, s.claims(a)),
    "alg-none-with-a-signature": lambda s, a, ev: (
        "Bearer " + unsigned({"alg": "none", "typ": "JWT", "kid": "ec-1"}, s.claims(a), b"not-a-signature")
    ),
    "hs256-with-public-key-as-secret": lambda s, a, ev: (
        "Bearer " + hs256_with(s.public_pem(), {"typ": "JWT", "kid": "rsa-1"}, s.claims(a))
    ),
    "expired": lambda s, a, ev: "Bearer " + s.token(a, iat=_now() - 400, exp=_now() - 120),
    "not-yet-valid-nbf": lambda s, a, ev: "Bearer " + s.token(a, nbf=_now() + 200),
    "issued-in-the-future": lambda s, a, ev: "Bearer " + s.token(a, iat=_now() + 200, exp=_now() + 400),
    "lifetime-too-long": lambda s, a, ev: "Bearer " + s.token(a, exp=_now() + 3600),
    "wrong-aud": lambda s, a, ev: "Bearer " + s.token("https://other-service.example.org/cds-services/x"),
    "aud-of-another-endpoint": lambda s, a, ev: (
        "Bearer " + s.token(url(DISCOVERY) if a != url(DISCOVERY) else url(SERVICE))
    ),
    "aud-on-request-host-not-public-url": lambda s, a, ev: "Bearer " + s.token(a.replace(BASE, "http://localhost")),
    "unknown-iss": lambda s, a, ev: "Bearer " + s.token(a, iss="https://unknown-ehr.example.org"),
    "jku-off-the-allowlist": lambda s, a, ev: (
        "Bearer " + ev.token(a, key=ev.ec, kid="ec-1", headers={"jku": ev.server.url + "/ehr/jwks.json"})
    ),
    "embedded-jwk-header": lambda s, a, ev: (
        "Bearer " + ev.token(a, key=ev.ec, kid="ec-1", headers={"jwk": public_jwk(ev.ec, "ec-1")})
    ),
    "unknown-kid": lambda s, a, ev: "Bearer " + s.token(a, kid="no-such-kid"),
    "signed-by-another-key-under-a-known-kid": lambda s, a, ev: "Bearer " + s.token(a, key=ev.ec, kid="ec-1"),
    "tampered-payload": lambda s, a, ev: (
        "Bearer " + tamper(s.token(a), iss=s.iss, sub="someone-else", exp=_now() + 250)
    ),
    "tampered-signature": lambda s, a, ev: "Bearer " + s.token(a)[:-6] + "AAAAAA",
    "missing-jti": lambda s, a, ev: "Bearer " + s.token(a, jti=None),
    "missing-exp": lambda s, a, ev: "Bearer " + s.token(a, exp=None),
    "missing-iat": lambda s, a, ev: "Bearer " + s.token(a, iat=None),
    "missing-aud": lambda s, a, ev: "Bearer " + s.token(None),
    "missing-kid": lambda s, a, ev: "Bearer " + s.token(a, headers={"kid": None}),
    "wrong-typ": lambda s, a, ev: "Bearer " + s.token(a, headers={"typ": "at+jwt"}),
    "no-typ": lambda s, a, ev: (
        "Bearer " + jwt.encode(s.claims(a), s.ec, algorithm="ES384", headers={"kid": "ec-1", "typ": None})
    ),
    "rs256-not-configured-for-issuer": lambda s, a, ev: "Bearer " + s.token(a, alg="RS256"),
    "es384-header-on-the-rsa-kid": lambda s, a, ev: "Bearer " + s.token(a, alg="ES384", key=s.ec, kid="rsa-1"),
    "critical-header": lambda s, a, ev: "Bearer " + s.token(a, headers={"crit": ["exp"]}),
    "oversized-token": lambda s, a, ev: "Bearer " + s.token(a, padding="x" * 9000),
}


# Why each one is refused (the reason the 401 gives): the matrix proves each check, not just "some 401".
REASON = {
    "no-authorization-header": "is required",
    "basic-scheme": "must be Bearer",
    "bearer-without-token": "must be Bearer",
    "garbage": "well-formed",
    "three-garbage-segments": "well-formed",
    "alg-none": "well-formed",
    "alg-none-with-a-signature": "algorithm",
    "hs256-with-public-key-as-secret": "algorithm",
    "expired": "expired",
    "not-yet-valid-nbf": "not valid yet",
    "issued-in-the-future": "not valid yet",
    "lifetime-too-long": "lifetime",
    "wrong-aud": "aud",
    "aud-of-another-endpoint": "aud",
    "aud-on-request-host-not-public-url": "aud",
    "unknown-iss": "issuer is not trusted",
    "jku-off-the-allowlist": "jku",
    "embedded-jwk-header": "header parameter",
    "unknown-kid": "kid",
    "signed-by-another-key-under-a-known-kid": "signature",
    "tampered-payload": "signature",
    "tampered-signature": "signature",
    "missing-jti": "jti",
    "missing-exp": "exp",
    "missing-iat": "iat",
    "missing-aud": "aud",
    "missing-kid": "kid",
    "wrong-typ": "typ",
    "no-typ": "typ",
    "rs256-not-configured-for-issuer": "algorithm",
    "es384-header-on-the-rsa-kid": "does not fit",
    "critical-header": "well-formed",
    "oversized-token": "well-formed",
}


def test_the_matrix_has_at_least_fifteen_bad_tokens():
    assert len(BAD) >= 15 and set(REASON) == set(BAD)


@pytest.mark.parametrize("path", [DISCOVERY, SERVICE, FEEDBACK], ids=["discovery", "service", "feedback"])
@pytest.mark.parametrize("kind", list(BAD))
def test_a_bad_token_is_refused_with_401_and_a_short_reason(secured_app, signer, attacker, kind, path):
    evil_server, evil = attacker
    authorization = BAD[kind](signer, url(path), evil)
    r = call(secured_app, path, authorization)
    assert r.status_code == 401, (kind, r.get_json())
    body = r.get_json()
    assert body["error"] == "unauthorized" and 0 < len(body["message"]) < 120
    assert REASON[kind] in body["message"], body["message"]
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    if authorization and " " in authorization:
        token = authorization.split(" ", 1)[1]
        if token:
            assert token not in r.get_data(as_text=True)
            for part in token.split("."):
                assert len(part) < 8 or part not in r.get_data(as_text=True)
    assert evil_server.seen() == [], "the service fetched keys from a URL that is not allowlisted"


def test_a_replayed_token_is_refused(secured_app, signer):
    token = signer.token(url(DISCOVERY))
    assert call(secured_app, DISCOVERY, "Bearer " + token).status_code == 200
    replay = call(secured_app, DISCOVERY, "Bearer " + token)
    assert replay.status_code == 401 and "already been used" in replay.get_json()["message"]


def test_the_same_jti_from_two_issuers_is_not_a_replay(secured_app, signer, tenant_signer):
    jti = str(uuid.uuid4())
    assert call(secured_app, DISCOVERY, "Bearer " + signer.token(url(DISCOVERY), jti=jti)).status_code == 200
    other = tenant_signer.token(url(DISCOVERY), jti=jti, tenant="hospital-a")
    assert call(secured_app, DISCOVERY, "Bearer " + other).status_code == 200


def test_a_token_for_the_service_is_not_accepted_on_its_feedback_url(secured_app, signer):
    token = signer.token(url(SERVICE))
    assert call(secured_app, FEEDBACK, "Bearer " + token).status_code == 401


def test_routes_outside_cds_services_need_no_token(secured_app):
    assert secured_app.test_client().get("/openapi.json").status_code == 200
    assert secured_app.test_client().get("/policies/lumbar-fusion/no-such-profile").status_code == 404


def test_an_unknown_service_is_checked_for_a_token_before_it_is_404(secured_app, signer):
    assert secured_app.test_client().post("/cds-services/nope", json={}).status_code == 401
    token = signer.token(url("/cds-services/nope"))
    r = secured_app.test_client().post(
        "/cds-services/nope", json=request_fixture("seed"), headers={"Authorization": "Bearer " + token}
    )
    assert r.status_code == 404


# ---- keys: caching, rotation, rate limit, timeouts -----------------------------------------------


def fresh_verifier(signer, tenant_signer, **extra) -> CallerVerifier:
    config = secured_config(signer, tenant_signer, **extra)
    return CallerVerifier(config, MemoryReplayStore())


def test_the_jwk_set_is_downloaded_once_and_cached(signer, tenant_signer):
    verifier = fresh_verifier(signer, tenant_signer)
    for _ in range(3):
        verifier.verify("Bearer " + signer.token(url(DISCOVERY)), url(DISCOVERY))
    assert verifier.jwks.downloads == 1


def test_a_rotated_key_is_picked_up_by_refreshing_on_an_unknown_kid(signer, tenant_signer):
    verifier = fresh_verifier(signer, tenant_signer, jwks_min_refresh_interval=0)
    verifier.verify("Bearer " + signer.token(url(DISCOVERY)), url(DISCOVERY))
    new_key = ec.generate_private_key(ec.SECP384R1())
    saved = copy.deepcopy(signer.server.sets[signer.jwks_path])
    signer.server.sets[signer.jwks_path]["keys"].append(public_jwk(new_key, "ec-2"))
    try:
        caller = verifier.verify("Bearer " + signer.token(url(DISCOVERY), key=new_key, kid="ec-2"), url(DISCOVERY))
    finally:
        signer.server.sets[signer.jwks_path] = saved
    assert caller.iss == signer.iss and verifier.jwks.downloads == 2


def test_unknown_kids_refresh_the_jwk_set_at_most_once_per_interval(signer, tenant_signer):
    verifier = fresh_verifier(signer, tenant_signer, jwks_min_refresh_interval=300)
    verifier.verify("Bearer " + signer.token(url(DISCOVERY)), url(DISCOVERY))
    for i in range(5):
        with pytest.raises(Exception) as exc:
            verifier.verify("Bearer " + signer.token(url(DISCOVERY), kid=f"made-up-{i}"), url(DISCOVERY))
        assert getattr(exc.value, "code", None) == "unknown-kid"
    assert verifier.jwks.downloads == 1


def test_a_jwk_set_that_never_answers_costs_at_most_the_jwks_timeout(signer, tenant_signer):
    signer.server.hang.add(signer.jwks_path)
    try:
        verifier = fresh_verifier(signer, tenant_signer, jwks_timeout=0.5)
        started = time.monotonic()
        with pytest.raises(Exception) as exc:
            verifier.verify("Bearer " + signer.token(url(DISCOVERY)), url(DISCOVERY))
        elapsed = time.monotonic() - started
    finally:
        signer.server.hang.discard(signer.jwks_path)
    assert getattr(exc.value, "code", None) == "jwks-unavailable"
    assert elapsed < 1.5, elapsed


def test_an_http_jwk_set_url_off_loopback_is_never_fetched(signer):
    cache = JwksCache(allow_http_loopback=True)
    with pytest.raises(AuthError):
        cache.key("http://keys.example.org/jwks.json", "ec-1")
    assert cache.downloads == 0


# ---- configuration --------------------------------------------------------------------------------


def test_authentication_is_on_by_default():
    assert Config().auth_disabled is False


def test_authentication_on_without_a_public_url_refuses_to_start(engine, signer, tenant_signer):
    config = secured_config(signer, tenant_signer).model_copy(update={"public_base_url": None})
    with pytest.raises(ConfigError, match="PUBLIC_BASE_URL"):
        create_app(config, engine=engine)


def test_authentication_on_without_trusted_issuers_refuses_to_start(engine):
    with pytest.raises(ConfigError, match="TRUSTED_ISSUERS"):
        create_app(Config(public_base_url=BASE), engine=engine)


@pytest.mark.parametrize("algorithms", [["HS256"], ["none"], ["ES384", "HS512"], []])
def test_symmetric_or_no_algorithms_cannot_be_configured(algorithms):
    with pytest.raises(ValueError):
        Config(trusted_issuers=[{"iss": "x", "jwks_url": "https://x/jwks", "algorithms": algorithms}])


def test_an_issuer_needs_a_key_source():
    with pytest.raises(ValueError):
        Config(trusted_issuers=[{"iss": "https://ehr.example.org"}])


def test_trusted_issuers_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv(
        "CDS_TRUSTED_ISSUERS",
        json.dumps(
            [
                {
                    "iss": "https://sandbox.cds-hooks.org",
                    "jku_allowlist": ["https://sandbox.cds-hooks.org/.well-known/jwks.json"],
                    "jwks_url": "https://sandbox.cds-hooks.org/.well-known/jwks.json",
                }
            ]
        ),
    )
    (issuer,) = Config.from_env().trusted_issuers
    assert issuer.iss == "https://sandbox.cds-hooks.org" and issuer.algorithms == ["ES384", "RS384"]
