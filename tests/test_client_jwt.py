"""The client's JWT follows CDS Hooks 2.0 "Trusting CDS Clients" to the letter.

Header: alg (ES384 or RS384), kid, typ "JWT", optional jku. Payload: iss, aud (the URL called),
exp, iat, jti, optional tenant. Verified here with the public JWK Set the module publishes.
"""

import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds_hooks.sandbox import client_jwt

AUD = "https://cds.example.org/cds-services/lumbar-fusion"


@pytest.fixture(scope="module")
def es384():
    key = client_jwt.generate_private_key("ES384")
    return client_jwt.SigningKey(key, client_jwt.public_jwk(key)["kid"], "ES384")


@pytest.fixture(scope="module")
def rs384():
    key = client_jwt.generate_private_key("RS384")
    return client_jwt.SigningKey(key, "rsa-key-1", "RS384")


def verify(token: str, signing: client_jwt.SigningKey, aud: str = AUD) -> dict:
    """Verify with the published JWK Set only, as a CDS service does."""
    published = client_jwt.jwks(signing.public_jwk)
    header = jwt.get_unverified_header(token)
    jwk = next(k for k in published["keys"] if k["kid"] == header["kid"])
    return jwt.decode(
        token,
        jwt.PyJWK(jwk).key,
        algorithms=[jwk["alg"]],
        audience=aud,
        options={"require": ["iss", "aud", "exp", "iat", "jti"]},
    )


def test_header_has_alg_kid_typ_and_jku_when_given(es384):
    token = client_jwt.sign(es384, iss="https://ehr.example.org", aud=AUD, jku="https://ehr.example.org/jwks.json")
    assert jwt.get_unverified_header(token) == {
        "alg": "ES384",
        "kid": es384.kid,
        "typ": "JWT",
        "jku": "https://ehr.example.org/jwks.json",
    }


def test_header_has_no_jku_unless_given(es384):
    assert "jku" not in jwt.get_unverified_header(client_jwt.sign(es384, iss="https://ehr", aud=AUD))


def test_payload_has_exactly_the_spec_claims(es384):
    before = int(time.time())
    claims = verify(client_jwt.sign(es384, iss="https://ehr.example.org", aud=AUD, tenant="hospital-7"), es384)
    assert set(claims) == {"iss", "aud", "exp", "iat", "jti", "tenant"}
    assert claims["iss"] == "https://ehr.example.org"
    assert claims["aud"] == AUD
    assert claims["tenant"] == "hospital-7"
    assert before <= claims["iat"] <= int(time.time())
    assert claims["exp"] - claims["iat"] == 300
    uuid.UUID(claims["jti"])


def test_tenant_is_left_out_when_not_given(es384):
    assert "tenant" not in verify(client_jwt.sign(es384, iss="https://ehr", aud=AUD), es384)


def test_every_token_gets_a_new_jti(es384):
    issuer = client_jwt.TokenIssuer(es384, iss="https://ehr")
    ids = {jwt.decode(issuer.token_for(AUD), options={"verify_signature": False})["jti"] for _ in range(20)}
    assert len(ids) == 20


def test_issuer_sets_the_audience_to_the_url_it_is_asked_for(es384):
    issuer = client_jwt.TokenIssuer(es384, iss="https://ehr")
    discovery = "https://cds.example.org/cds-services"
    header = issuer.headers_for(discovery)["Authorization"]
    assert header.startswith("Bearer ")
    assert verify(header.removeprefix("Bearer "), es384, aud=discovery)["aud"] == discovery


def test_lifetime_is_capped_at_five_minutes(es384):
    with pytest.raises(ValueError):
        client_jwt.sign(es384, iss="https://ehr", aud=AUD, lifetime=301)
    claims = verify(client_jwt.sign(es384, iss="https://ehr", aud=AUD, lifetime=60), es384)
    assert claims["exp"] - claims["iat"] == 60


def test_rs384_tokens_verify_with_the_rsa_jwk(rs384):
    token = client_jwt.sign(rs384, iss="https://ehr", aud=AUD)
    assert jwt.get_unverified_header(token)["alg"] == "RS384"
    assert verify(token, rs384)["iss"] == "https://ehr"
    assert rs384.public_jwk["kty"] == "RSA" and rs384.public_jwk["kid"] == "rsa-key-1"


def test_a_token_does_not_verify_with_another_key(es384):
    other = client_jwt.generate_private_key("ES384")
    stranger = client_jwt.SigningKey(other, es384.kid, "ES384")
    with pytest.raises(jwt.InvalidSignatureError):
        verify(client_jwt.sign(stranger, iss="https://ehr", aud=AUD), es384)


def test_published_jwks_holds_only_public_members(es384, rs384):
    for signing in (es384, rs384):
        (jwk,) = client_jwt.jwks(signing.public_jwk)["keys"]
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)
        assert jwk["use"] == "sig" and jwk["alg"] == signing.alg


def test_ec_jwk_has_p384_coordinates_of_48_bytes(es384):
    jwk = es384.public_jwk
    assert jwk["crv"] == "P-384"
    for c in ("x", "y"):
        assert len(jwt.utils.base64url_decode(jwk[c])) == 48


def test_default_kid_is_stable_for_a_key_and_differs_between_keys(es384):
    assert client_jwt.public_jwk(es384.key)["kid"] == client_jwt.public_jwk(es384.key)["kid"]
    assert client_jwt.public_jwk(client_jwt.generate_private_key())["kid"] != es384.kid


def test_keys_load_from_pem_with_the_algorithm_they_sign_with(tmp_path):
    for alg in client_jwt.ALGORITHMS:
        path = tmp_path / f"{alg}.pem"
        path.write_bytes(client_jwt.private_key_pem(client_jwt.generate_private_key(alg)))
        signing = client_jwt.load_signing_key(path, kid="k1")
        assert (signing.alg, signing.kid) == (alg, "k1")


def test_keys_load_from_a_private_jwk_keeping_its_kid(tmp_path, es384):
    private = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(es384.key))
    private["kid"] = "from-the-jwk"
    path = tmp_path / "key.jwk"
    path.write_text(json.dumps(private))
    signing = client_jwt.load_signing_key(path)
    assert signing.kid == "from-the-jwk"
    assert {k: signing.public_jwk[k] for k in ("x", "y")} == {k: es384.public_jwk[k] for k in ("x", "y")}
    assert verify(client_jwt.sign(signing, iss="https://ehr", aud=AUD), signing)["aud"] == AUD


@pytest.mark.parametrize(
    "make",
    [
        lambda: ec.generate_private_key(ec.SECP256R1()),
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024),
    ],
    ids=["p256-curve", "rsa-1024"],
)
def test_keys_the_recommended_algorithms_cannot_use_are_refused(tmp_path, make):
    path = tmp_path / "weak.pem"
    path.write_bytes(client_jwt.private_key_pem(make()))
    with pytest.raises(client_jwt.SigningKeyError):
        client_jwt.load_signing_key(path)


def test_a_file_that_is_no_key_is_refused_with_its_name(tmp_path):
    path = tmp_path / "not-a-key.pem"
    path.write_text("hello")
    with pytest.raises(client_jwt.SigningKeyError, match="not-a-key.pem"):
        client_jwt.load_signing_key(path)
