"""Trust that real CRD clients can meet (CDS Hooks 2.0, "Trusting CDS Clients").

The spec sets no maximum JWT lifetime and only recommends ES384/RS384; it lets a service decide where
a client's keys are. So the lifetime cap is a per-issuer setting with a short default, a configured
JWK Set URL can be pinned whatever `jku` a token names, a `jku` that gives no JWK Set is refused with
the reason, and browsers may send the X-Request-Id header CDS clients use.
"""

import time

import pytest

from cds_hooks.auth.caller_jwt import AuthError, CallerVerifier
from cds_hooks.auth.replay import MemoryReplayStore
from cds_hooks.config import Config
from cds_hooks.web.app import create_app
from support.jwt_issuer import JwksServer, Signer

BASE = "https://cds.example.org"
AUD = BASE + "/cds-services"


@pytest.fixture(scope="module")
def server():
    s = JwksServer().start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def signer(server):
    return Signer(server, iss="https://long-lived.example.org", prefix="/long")


def verifier(*issuers, **extra) -> CallerVerifier:
    return CallerVerifier(
        Config(public_base_url=BASE, trusted_issuers=list(issuers), allow_http_loopback=True, **extra),
        MemoryReplayStore(),
    )


def bearer(signer, **kw) -> str:
    return "Bearer " + signer.token(AUD, **kw)


def test_the_default_lifetime_cap_refuses_a_ten_minute_token(signer):
    """ "Trusting CDS Clients": no maximum is set by the spec; this service's default is 300 s."""
    now = int(time.time())
    with pytest.raises(AuthError) as exc:
        verifier(signer.issuer_config()).verify(bearer(signer, iat=now, exp=now + 600), AUD)
    assert exc.value.code == "lifetime"


def test_an_issuer_with_its_own_lifetime_cap_may_send_longer_tokens(signer):
    now = int(time.time())
    caller = verifier(signer.issuer_config(max_lifetime=900)).verify(bearer(signer, iat=now, exp=now + 600), AUD)
    assert caller.iss == signer.iss


def test_an_issuer_cap_is_a_cap_not_a_floor(signer):
    now = int(time.time())
    with pytest.raises(AuthError) as exc:
        verifier(signer.issuer_config(max_lifetime=60)).verify(bearer(signer, iat=now, exp=now + 240), AUD)
    assert exc.value.code == "lifetime"


def test_a_pinned_jwk_set_url_is_used_whatever_jku_the_token_names(server, signer):
    """A token naming a jku off the allowlist (even an attacker's) is verified with the pinned URL only."""
    attacker = JwksServer().start()
    try:
        issuer = {"iss": signer.iss, "jwks_url": signer.jwks_url, "pin_jwks_url": True}
        token = bearer(signer, headers={"jku": attacker.url + "/evil/jwks.json"})
        caller = verifier(issuer).verify(token, AUD)
    finally:
        attacker.stop()
    assert caller.iss == signer.iss
    assert attacker.requests == []


def test_without_pinning_an_unlisted_jku_is_still_refused(signer):
    with pytest.raises(AuthError) as exc:
        verifier(signer.issuer_config()).verify(bearer(signer, headers={"jku": signer.server.url + "/other.json"}), AUD)
    assert exc.value.code == "jku"


def test_pinning_needs_a_jwks_url():
    with pytest.raises(ValueError, match="pin_jwks_url"):
        Config(
            trusted_issuers=[
                {"iss": "https://x.example.org", "jku_allowlist": ["https://x.example.org/k"], "pin_jwks_url": True}
            ]
        )


@pytest.mark.parametrize(
    "body, reason",
    [
        (None, "answered HTTP 404"),
        ({"not": "a key set"}, "did not return a JWK Set"),
    ],
    ids=["404", "not-a-jwk-set"],
)
def test_a_jku_that_gives_no_jwk_set_is_refused_with_the_reason(server, signer, body, reason):
    path = f"/broken/{reason.split()[-1]}.json"
    if body is not None:
        server.sets[path] = body
    issuer = signer.issuer_config(jku_allowlist=[server.url + path])
    with pytest.raises(AuthError) as exc:
        verifier(issuer).verify(bearer(signer, key=signer.jku_ec, headers={"jku": server.url + path}), AUD)
    assert exc.value.code == "jwks-unavailable"
    assert reason in exc.value.reason


def test_a_browser_cds_client_may_send_x_request_id(engine, signer):
    """CDS Hooks 2.0 "CDS Services" (CORS): a preflight for the headers CDS clients send is allowed."""
    config = Config(
        public_base_url=BASE,
        trusted_issuers=[signer.issuer_config()],
        allow_http_loopback=True,
        cors_origins=["https://ehr.example.org"],
    )
    app = create_app(config, engine=engine)
    r = app.test_client().options(
        "/cds-services/lumbar-fusion",
        headers={
            "Origin": "https://ehr.example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-request-id",
        },
    )
    assert r.status_code == 204
    assert "X-Request-Id" in r.headers["Access-Control-Allow-Headers"]
