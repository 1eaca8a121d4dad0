"""Caller authentication: the signed JWT every CDS client sends (CDS Hooks 2.0, "Trusting CDS Clients").

Every call to a route under `/cds-services` (discovery, each service, feedback) carries
`Authorization: Bearer <JWT>`. The JWT is accepted only when:

- its header has `typ` JWT, a `kid`, an asymmetric `alg` the issuer is configured for, no embedded
  key (`jwk`, `x5c`, `x5u`) and no `crit`;
- `iss` is a configured trusted issuer (and `tenant` matches when the issuer names one);
- the signature verifies with the issuer's key: from its configured JWK Set URL, or from the `jku`
  header only when that exact URL is on the issuer's `jku` allowlist; an issuer with `pin_jwks_url`
  is always verified with its configured JWK Set URL, whatever `jku` the token names;
- `aud` (a string or an array) contains the URL of the endpoint actually called, built from the
  configured public base URL;
- `exp`, `iat` and `jti` are present; `exp` has not passed, `iat` is not in the future, `nbf` (when
  present) has passed, all within the configured clock skew, and the lifetime is at most the
  issuer's configured maximum (`max_lifetime`, else `jwt_max_lifetime`, 300 s by default). The spec
  sets no maximum lifetime: a short one is this service's choice, and an issuer whose tokens live
  longer is given its own;
- its `jti` has not been seen from the same issuer before it expired (the replay store, shared by
  replicas when it is database-backed; when that store cannot answer, the call is refused with
  `AuditUnavailable`, 503, never let through).

Other claims (`sub`, `client_id`, vendor claims) are accepted and ignored. A rejected call answers
401 with a short reason; neither the reason nor the logs ever contain the token.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import quote

import jwt
import requests

from cds_hooks.auth.outbound import OutboundError, deadline_clock, new_session, read_capped, transport_allowed
from cds_hooks.auth.replay import ReplayStore
from cds_hooks.config import ASYMMETRIC_ALGORITHMS, Config, TrustedIssuer
from cds_hooks.errors import AuditUnavailable, CdsError

log = logging.getLogger("cds_hooks.security")

MAX_TOKEN_CHARS = 8192
MAX_JWKS_BYTES = 256_000
STALE_KEYS_SECONDS = 24 * 3600  # keys still used when a refresh fails, up to this age
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_FORBIDDEN_HEADERS = ("jwk", "x5c", "x5u", "crit")
_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}


class ConfigError(CdsError, RuntimeError):
    """The configuration cannot run the service safely."""


class AuthError(CdsError):
    """Why a caller was refused: `code` for logs and metrics, `reason` for the 401 body."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Caller:
    """Who called, once the JWT is verified (web/authentication.py keeps it in `flask.g.caller`)."""

    iss: str
    tenant: str | None = None
    sub: str | None = None
    token_id: str = ""  # a hash of (iss, jti), never the jti itself


def replay_key(iss: str, jti: str) -> str:
    return hashlib.sha256(f"{iss}\x00{jti}".encode()).hexdigest()


@dataclass
class _KeySet:
    keys: dict[str, object] = field(default_factory=dict)  # kid -> jwt.PyJWK
    fetched_at: float = float("-inf")
    attempted_at: float = float("-inf")


class JwksCache:
    """JWK Sets by URL: cached, refreshed when stale or on an unknown `kid` at most once per
    `min_refresh` seconds, each download bounded by `timeout` and a byte cap."""

    def __init__(
        self,
        *,
        timeout: float = 2.0,
        ttl: float = 3600.0,
        min_refresh: float = 30.0,
        allow_http_loopback: bool = False,
        session: requests.Session | None = None,
        clock=time.monotonic,
    ):
        self.timeout = timeout
        self.ttl = ttl
        self.min_refresh = min_refresh
        self.allow_http_loopback = allow_http_loopback
        self._session = session or new_session()
        self._clock = clock
        self._sets: dict[str, _KeySet] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.downloads = 0  # for tests and metrics
        self._failures: dict[str, str] = {}  # url -> why its last download gave no JWK Set (no secrets)

    def key(self, url: str, kid: str):
        """The verification key for `kid` at `url`, or AuthError."""
        entry = self._sets.get(url)
        now = self._clock()
        fresh = entry is not None and now - entry.fetched_at < self.ttl
        if entry is None or not fresh or kid not in entry.keys:
            entry = self._refresh(url) or entry
        if entry is None:
            reason = self._failures.get(url) or "could not be obtained"
            raise AuthError("jwks-unavailable", f"the issuer's signing keys {reason}")
        if self._clock() - entry.fetched_at > STALE_KEYS_SECONDS:
            raise AuthError("jwks-unavailable", "the issuer's signing keys could not be refreshed")
        found = entry.keys.get(kid)
        if found is None:
            raise AuthError("unknown-kid", "no signing key with this kid")
        return found

    def _lock_for(self, url: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(url, threading.Lock())

    def _refresh(self, url: str) -> _KeySet | None:
        lock = self._lock_for(url)
        # Another request may be downloading the same set: wait for it, but not for long.
        if not lock.acquire(timeout=self.timeout):
            return self._sets.get(url)
        try:
            entry = self._sets.get(url)
            now = self._clock()
            if entry is not None and now - entry.attempted_at < self.min_refresh:
                return entry
            if entry is None:
                entry = _KeySet()
            entry.attempted_at = now
            self._sets[url] = entry
            try:
                keys = self._download(url)
            except (OutboundError, requests.RequestException, ValueError) as exc:
                log.warning("JWK Set download failed: %s", getattr(exc, "kind", type(exc).__name__))
                self._failures[url] = _failure_reason(exc)
                return entry if entry.keys else None
            self._failures.pop(url, None)
            entry.keys = keys
            entry.fetched_at = self._clock()
            return entry
        finally:
            lock.release()

    def download(self, url: str) -> dict[str, object]:
        """One download of the JWK Set at `url`, parsed as for verification, bypassing the cache
        (`cds-hooks doctor`). Raises OutboundError, requests.RequestException or ValueError."""
        return self._download(url)

    def _download(self, url: str) -> dict[str, object]:
        if not transport_allowed(url, self.allow_http_loopback):
            raise OutboundError("refused", "JWK Set URL must be https")
        self.downloads += 1
        remaining = deadline_clock(None, self.timeout)
        with self._session.get(
            url, headers={"Accept": "application/json"}, timeout=self.timeout, stream=True, allow_redirects=False
        ) as response:
            if response.status_code != 200:
                raise OutboundError("http", f"JWK Set answered HTTP {response.status_code}")
            body = read_capped(response, MAX_JWKS_BYTES, remaining)
        data = json.loads(body)
        raw_keys = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(raw_keys, list):
            raise ValueError("not a JWK Set")
        keys: dict[str, object] = {}
        for raw in raw_keys:
            if not isinstance(raw, dict) or not isinstance(raw.get("kid"), str):
                continue
            if raw.get("use", "sig") != "sig" or "d" in raw:
                continue  # encryption keys, and private keys published by mistake, are not used
            try:
                keys[raw["kid"]] = jwt.PyJWK(raw)
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                continue
        return keys


def _failure_reason(exc: Exception) -> str:
    """Why a JWK Set URL gave no keys, in words a client's administrator can act on."""
    if isinstance(exc, OutboundError):
        if exc.kind == "http":
            return f"could not be obtained: the {exc}"  # "the JWK Set answered HTTP 404"
        if exc.kind == "refused":
            return "could not be obtained: the JWK Set URL must be https"
        return "could not be obtained: the JWK Set URL did not answer in time or sent too much"
    if isinstance(exc, requests.RequestException):
        return "could not be obtained: the JWK Set URL could not be reached"
    return "could not be obtained: the JWK Set URL did not return a JWK Set (a JSON object with a keys array)"


class CallerVerifier:
    """Verifies one `Authorization` header for one endpoint URL."""

    def __init__(self, config: Config, replay_store: ReplayStore, jwks: JwksCache | None = None, clock=time.time):
        self.issuers: list[TrustedIssuer] = list(config.trusted_issuers)
        self.skew = config.jwt_clock_skew
        self.max_lifetime = config.jwt_max_lifetime
        self.replay_store = replay_store
        self.jwks = jwks or JwksCache(
            timeout=config.jwks_timeout,
            ttl=config.jwks_cache_seconds,
            min_refresh=config.jwks_min_refresh_interval,
            allow_http_loopback=config.allow_http_loopback,
        )
        self._clock = clock

    def _issuer(self, iss, tenant) -> TrustedIssuer:
        for entry in self.issuers:
            if entry.iss == iss and (entry.tenant is None or entry.tenant == tenant):
                return entry
        raise AuthError("untrusted-issuer", "the token's issuer is not trusted")

    def verify(self, authorization: str | None, audience: str | list[str]) -> Caller:
        """`audience`: the endpoint URL (or its equivalent spellings); `aud` must contain one of them."""
        audiences = [audience] if isinstance(audience, str) else list(audience)
        token = _bearer(authorization)
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
            raise AuthError("malformed", "the bearer token is not a well-formed JWT") from None
        if not isinstance(unverified, dict):
            raise AuthError("malformed", "the bearer token is not a well-formed JWT")

        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ASYMMETRIC_ALGORITHMS:
            raise AuthError("algorithm", "the token's algorithm is not accepted")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.upper() != "JWT":
            raise AuthError("typ", "the token's typ header must be JWT")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > 256:
            raise AuthError("kid", "the token has no kid header")
        if any(name in header for name in _FORBIDDEN_HEADERS):
            raise AuthError("header", "the token carries a header parameter that is not accepted")

        iss, tenant = unverified.get("iss"), unverified.get("tenant")
        if not isinstance(iss, str):
            raise AuthError("untrusted-issuer", "the token has no issuer")
        issuer = self._issuer(iss, tenant if isinstance(tenant, str) else None)
        if alg not in issuer.algorithms:
            raise AuthError("algorithm", "the token's algorithm is not accepted for this issuer")

        jku = header.get("jku")
        if issuer.pin_jwks_url:
            # Pinned: the configured JWK Set, whatever jku the token names (some clients send a jku
            # that is not where their keys are, or one that changes per deployment).
            url = issuer.jwks_url
        elif jku is not None:
            if not isinstance(jku, str) or jku not in issuer.jku_allowlist:
                raise AuthError("jku", "the token's jku is not on the issuer's allowlist")
            url = jku
        elif issuer.jwks_url:
            url = issuer.jwks_url
        else:
            raise AuthError("jku", "the token has no jku and the issuer has no configured JWK Set")
        key = self.jwks.key(url, kid)
        if not _fits(key, alg):
            raise AuthError("key", "the signing key does not fit the token's algorithm")

        now = self._clock()
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=audiences + [a + "/" for a in audiences if not a.endswith("/")],
                issuer=iss,
                leeway=self.skew,
                options={
                    "require": ["iss", "aud", "exp", "iat", "jti"],
                    "verify_iat": True,
                    "verify_nbf": True,
                    "verify_exp": True,
                    "verify_aud": True,
                    "verify_iss": True,
                },
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("expired", "the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("not-yet-valid", "the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise AuthError("audience", "the token's aud is not this endpoint") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError("missing-claim", f"the token has no {exc.claim} claim") from None
        except jwt.InvalidSignatureError:
            raise AuthError("signature", "the token's signature does not verify") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise AuthError("invalid", "the token could not be verified") from None

        exp, iat, jti = claims["exp"], claims["iat"], claims["jti"]
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise AuthError("missing-claim", "the token's jti must be a non-empty string")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (exp, iat)):
            raise AuthError("invalid", "the token's exp and iat must be numbers")
        max_lifetime = issuer.max_lifetime or self.max_lifetime
        if exp - iat > max_lifetime or exp > now + max_lifetime + self.skew:
            raise AuthError("lifetime", "the token's lifetime is longer than accepted")
        if issuer.tenant is not None and claims.get("tenant") != issuer.tenant:
            raise AuthError("tenant", "the token's tenant is not trusted")
        token_id = replay_key(iss, jti)
        try:
            first_use = self.replay_store.first_use(token_id, float(exp) + self.skew)
        except Exception as exc:  # noqa: BLE001 - a store that cannot answer must not let the call in
            raise AuditUnavailable("the replay check could not reach the audit database; retry later") from exc
        if not first_use:
            raise AuthError("replay", "the token has already been used")
        sub = claims.get("sub")
        return Caller(
            iss=iss,
            tenant=claims.get("tenant") if isinstance(claims.get("tenant"), str) else None,
            sub=sub if isinstance(sub, str) else None,
            token_id=token_id[:16],
        )


def _fits(key, alg: str) -> bool:
    """The key's type (and curve) is the one `alg` needs, and the JWK names no other `alg`."""
    jwk_alg = getattr(key, "_jwk_data", {}).get("alg")
    if jwk_alg and jwk_alg != alg:
        return False
    if alg.startswith("ES"):
        return key.key_type == "EC" and getattr(getattr(key.key, "curve", None), "name", None) == _CURVES[alg]
    return key.key_type == "RSA"


def usable_algorithms(key, algorithms) -> list[str]:
    """The algorithms among `algorithms` that `key` (a PyJWK) can verify."""
    return [alg for alg in algorithms if _fits(key, alg)]


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise AuthError("missing", "an Authorization: Bearer JWT is required")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError("scheme", "the Authorization header must be Bearer <JWT>")
    if len(token) > MAX_TOKEN_CHARS or not _COMPACT_JWS.fullmatch(token):
        raise AuthError("malformed", "the bearer token is not a well-formed JWT")
    return token


def endpoint_urls(config: Config, path: str) -> list[str]:
    """The audience: the URL the client called, on the configured public base URL (the path as
    routed, and percent-encoded as a client writes it in a URL)."""
    base = config.public_base_url.rstrip("/")
    return sorted({base + path, base + quote(path, safe="/:@!$&'()*+,;=-._~")})


def check_settings(config: Config) -> None:
    """With authentication on, the audience and at least one trusted issuer must be configured."""
    if config.auth_disabled:
        return
    if not config.public_base_url:
        raise ConfigError(
            "caller authentication is on: set CDS_PUBLIC_BASE_URL (the URL clients call, "
            "the JWT audience), or turn authentication off for development (CDS_AUTH_DISABLED)"
        )
    if not config.trusted_issuers:
        raise ConfigError(
            "caller authentication is on: set CDS_TRUSTED_ISSUERS (the CDS clients allowed to "
            "call), or turn authentication off for development (CDS_AUTH_DISABLED)"
        )
