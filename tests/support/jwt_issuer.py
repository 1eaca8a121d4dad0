"""A CDS client's signing side for the tests: keys generated per run, JWK Sets served over real HTTP
on 127.0.0.1, and JWTs shaped like CDS Hooks 2.0 "Trusting CDS Clients" requires (or deliberately not).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .servers import Answer, LoopbackServer

ISSUER = "https://ehr.example.org/cds-client"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(private_key, kid: str, alg: str | None = None) -> dict:
    jwk = json.loads(
        jwt.algorithms.get_default_algorithms()[
            "ES384" if isinstance(private_key, ec.EllipticCurvePrivateKey) else "RS384"
        ].to_jwk(private_key.public_key())
    )
    jwk["kid"] = kid
    jwk["use"] = "sig"
    if alg:
        jwk["alg"] = alg
    return jwk


class JwksServer(LoopbackServer):
    """Serves JWK Sets at paths set by the test; `hang` makes a path never answer in time."""

    def __init__(self):
        super().__init__()
        self.sets: dict[str, dict] = {}
        self.hang: set[str] = set()

    def respond(self, seen, handler):
        if seen.path in self.hang:
            self.stopping.wait(30)
            return Answer(504)
        if seen.path not in self.sets:
            return Answer(404)
        return Answer(200, {"Content-Type": "application/json"}, json.dumps(self.sets[seen.path]).encode())


class Signer:
    """One EHR's keys: an ES384 key and an RS384 key (configured JWK Set) and a second pair of keys
    published only at an allowlisted `jku` URL."""

    def __init__(self, server: JwksServer, iss: str = ISSUER, prefix: str = "/ehr"):
        self.iss = iss
        self.server = server
        self.ec = ec.generate_private_key(ec.SECP384R1())
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jku_ec = ec.generate_private_key(ec.SECP384R1())
        self.jku_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwks_path = f"{prefix}/jwks.json"
        self.jku_path = f"{prefix}/rotating/jwks.json"
        server.sets[self.jwks_path] = {"keys": [public_jwk(self.ec, "ec-1"), public_jwk(self.rsa, "rsa-1")]}
        server.sets[self.jku_path] = {
            "keys": [public_jwk(self.jku_ec, "jku-ec-1", "ES384"), public_jwk(self.jku_rsa, "jku-rsa-1", "RS384")]
        }

    @property
    def jwks_url(self) -> str:
        return self.server.url + self.jwks_path

    @property
    def jku_url(self) -> str:
        return self.server.url + self.jku_path

    def issuer_config(self, **extra) -> dict:
        return {"iss": self.iss, "jwks_url": self.jwks_url, "jku_allowlist": [self.jku_url], **extra}

    def claims(self, aud, **overrides) -> dict:
        now = int(time.time())
        claims = {"iss": self.iss, "aud": aud, "exp": now + 240, "iat": now, "jti": str(uuid.uuid4())}
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(
        self,
        aud,
        *,
        alg: str = "ES384",
        key=None,
        kid: str | None = None,
        headers: dict | None = None,
        **claim_overrides,
    ) -> str:
        if key is None:
            key = self.ec if alg.startswith("ES") else self.rsa
        if kid is None:
            kid = (
                "ec-1"
                if key is self.ec
                else "rsa-1"
                if key is self.rsa
                else "jku-ec-1"
                if key is self.jku_ec
                else "jku-rsa-1"
                if key is self.jku_rsa
                else "unknown"
            )
        head = {"kid": kid, "typ": "JWT", **(headers or {})}
        head = {k: v for k, v in head.items() if v is not None}
        return jwt.encode(self.claims(aud, **claim_overrides), key, algorithm=alg, headers=head)

    def public_pem(self) -> bytes:
        return self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def unsigned(header: dict, claims: dict, signature: bytes = b"") -> str:
    """A compact JWS assembled by hand (for alg none and other forgeries PyJWT refuses to make)."""
    head = b64url(json.dumps(header).encode())
    body = b64url(json.dumps(claims).encode())
    return f"{head}.{body}.{b64url(signature)}"


def hs256_with(secret: bytes, header: dict, claims: dict) -> str:
    """The classic key-confusion forgery: HMAC-SHA256 keyed with the issuer's public key."""
    head = b64url(json.dumps({**header, "alg": "HS256"}).encode())
    body = b64url(json.dumps(claims).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(mac)}"


def tamper(token: str, **claim_changes) -> str:
    """Change claims in a signed token and keep the old signature."""
    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims.update(claim_changes)
    return f"{head}.{b64url(json.dumps(claims).encode())}.{sig}"
