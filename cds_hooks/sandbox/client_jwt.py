"""The CDS Client's side of caller authentication: key pairs, the JWK Set, and the signed JWT.

CDS Hooks 2.0, "Trusting CDS Clients": every call (discovery, a service, feedback) carries
`Authorization: Bearer <JWT>`, signed with the client's private key (RFC 7515).

- Header: `alg` (ES384 or RS384, both RECOMMENDED by "JWT Signing Algorithm"; never `none`, never
  a symmetric algorithm), `kid` (the key's id in the client's JWK Set), `typ` = `JWT`, optional
  `jku` (where the JWK Set is published).
- Payload: `iss`, `aud` (the exact URL of the endpoint being called), `exp`, `iat`, `jti` (a fresh
  nonce per token) and optional `tenant`.

The public key is published as a JWK Set (RFC 7517); a `kid` defaults to the key's RFC 7638
thumbprint, so the same key always gets the same id.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds_hooks.errors import CdsError

ALGORITHMS = ("ES384", "RS384")
DEFAULT_ALGORITHM = "ES384"
# The spec sets no number; five minutes is the ceiling this client allows and its default.
MAX_LIFETIME = 300
RSA_BITS = 3072


class SigningKeyError(CdsError, ValueError):
    """A key file that cannot be used to sign CDS Hooks JWTs."""

    code = "signing-key"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_bytes(value: int, length: int | None = None) -> bytes:
    length = length or max(1, (value.bit_length() + 7) // 8)
    return value.to_bytes(length, "big")


def generate_private_key(alg: str = DEFAULT_ALGORITHM):
    """A new key pair for `alg`: P-384 for ES384 (RFC 7518 3.4), 3072-bit RSA for RS384."""
    if alg == "ES384":
        return ec.generate_private_key(ec.SECP384R1())
    if alg == "RS384":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    raise SigningKeyError(f"unsupported algorithm {alg!r}; use one of {', '.join(ALGORITHMS)}")


def algorithm_for(key) -> str:
    """The JWS algorithm a private or public key signs with; refuses keys the spec's algorithms cannot use."""
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        if not isinstance(key.curve, ec.SECP384R1):
            raise SigningKeyError(f"EC key on {key.curve.name}: ES384 needs a P-384 (secp384r1) key")
        return "ES384"
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        if key.key_size < 2048:
            raise SigningKeyError(f"RSA key of {key.key_size} bits: RS384 needs at least 2048")
        return "RS384"
    raise SigningKeyError("only EC P-384 (ES384) and RSA (RS384) keys are supported")


def private_key_pem(key) -> bytes:
    """PKCS#8 PEM, unencrypted: the file is protected by its permissions."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_jwk(key, kid: str | None = None) -> dict:
    """The public half of `key` as a JWK with `kty`, `use`, `alg`, `kid` (RFC 7517, RFC 7518 6)."""
    alg = algorithm_for(key)
    public = key.public_key() if hasattr(key, "public_key") else key
    if alg == "ES384":
        numbers = public.public_numbers()
        jwk = {
            "kty": "EC",
            "crv": "P-384",
            "x": _b64url(_int_bytes(numbers.x, 48)),
            "y": _b64url(_int_bytes(numbers.y, 48)),
        }
    else:
        numbers = public.public_numbers()
        jwk = {"kty": "RSA", "n": _b64url(_int_bytes(numbers.n)), "e": _b64url(_int_bytes(numbers.e))}
    return {**jwk, "use": "sig", "alg": alg, "kid": kid or thumbprint(jwk)}


def thumbprint(jwk: dict) -> str:
    """RFC 7638 JWK thumbprint (SHA-256 over the required members in lexicographic order)."""
    members = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("e", "kty", "n")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def jwks(*jwk_list: dict) -> dict:
    """A JWK Set holding only public members."""
    private = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
    return {"keys": [{k: v for k, v in j.items() if k not in private} for j in jwk_list]}


@dataclass
class SigningKey:
    """A private key with the `kid` under which its public half is published."""

    key: object
    kid: str
    alg: str

    @property
    def public_jwk(self) -> dict:
        return public_jwk(self.key, self.kid)


def load_signing_key(path: str | Path, kid: str | None = None) -> SigningKey:
    """A private key from a PEM file (PKCS#8, SEC1 or PKCS#1) or a private JWK (JSON with `d`).

    The `kid` is, in order: the one given, the JWK's own `kid`, the RFC 7638 thumbprint.
    """
    raw = Path(path).read_bytes()
    jwk_kid = None
    text = raw.lstrip()
    if text.startswith(b"{"):
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise SigningKeyError(f"{path}: not valid JSON") from exc
        if isinstance(data, dict) and isinstance(data.get("keys"), list) and len(data["keys"]) == 1:
            data = data["keys"][0]
        if not isinstance(data, dict) or "d" not in data:
            raise SigningKeyError(f"{path}: a JWK file must hold one private key (with 'd')")
        jwk_kid = data.get("kid")
        try:
            if data.get("kty") == "EC":
                key = jwt.algorithms.ECAlgorithm.from_jwk(data)
            elif data.get("kty") == "RSA":
                key = jwt.algorithms.RSAAlgorithm.from_jwk(data)
            else:
                raise SigningKeyError(f"{path}: kty must be EC or RSA")
        except (jwt.exceptions.InvalidKeyError, ValueError) as exc:
            raise SigningKeyError(f"{path}: not a usable private JWK ({type(exc).__name__})") from exc
    else:
        try:
            key = serialization.load_pem_private_key(raw, password=None)
        except (ValueError, TypeError) as exc:
            raise SigningKeyError(f"{path}: not an unencrypted PEM private key") from exc
    alg = algorithm_for(key)
    return SigningKey(key=key, kid=kid or jwk_kid or public_jwk(key)["kid"], alg=alg)


def sign(
    signing_key: SigningKey,
    *,
    iss: str,
    aud: str,
    lifetime: int = MAX_LIFETIME,
    tenant: str | None = None,
    jku: str | None = None,
    now: float | None = None,
) -> str:
    """One JWT for one call to `aud`, valid for `lifetime` seconds (at most five minutes)."""
    if not iss:
        raise ValueError("iss is required")
    if not aud:
        raise ValueError("aud is required")
    if not 0 < lifetime <= MAX_LIFETIME:
        raise ValueError(f"lifetime must be between 1 and {MAX_LIFETIME} seconds")
    issued = int(now if now is not None else time.time())
    payload = {"iss": iss, "aud": aud, "exp": issued + lifetime, "iat": issued, "jti": str(uuid.uuid4())}
    if tenant:
        payload["tenant"] = tenant
    headers = {"alg": signing_key.alg, "kid": signing_key.kid, "typ": "JWT"}
    if jku:
        headers["jku"] = jku
    return jwt.encode(payload, signing_key.key, algorithm=signing_key.alg, headers=headers)


@dataclass
class TokenIssuer:
    """Signs one fresh JWT per call, with the audience set to the URL being called."""

    signing_key: SigningKey
    iss: str
    tenant: str | None = None
    jku: str | None = None
    lifetime: int = MAX_LIFETIME

    def token_for(self, url: str) -> str:
        return sign(self.signing_key, iss=self.iss, aud=url, lifetime=self.lifetime, tenant=self.tenant, jku=self.jku)

    def headers_for(self, url: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token_for(url)}"}
