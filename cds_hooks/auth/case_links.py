"""Signed, short-lived links to one card's case view (docs/security.md, "Case view links").

A card's `links` entry (CDS Hooks 2.0, "Link") is opened by the EHR in the user's browser, without the
caller's JWT: the URL itself is the credential. It names the call and the card and carries an expiry
and an HMAC-SHA-256 over all three, under a key of its own (`case_view_key`). The signature covers
the call id and the card uuid together, so a link opens one card of one call and nothing else; after
the expiry it opens nothing. Comparison is constant-time. No patient identifier is in the URL.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass

from cds_hooks.errors import CdsError

log = logging.getLogger("cds_hooks.security")

_VERSION = "v1"  # part of what is signed: a change of the format invalidates every older link


class LinkRefused(CdsError):
    """A case-view link that is expired, altered or signed for another call or card."""

    code = "link-refused"


@dataclass(frozen=True)
class CaseLink:
    call_id: str
    card_uuid: str
    expires: int  # Unix seconds


class CaseLinkSigner:
    def __init__(self, key: bytes, ttl_seconds: float, clock=time.time):
        if len(key) < 32:
            raise ValueError("the case-view link key must be at least 32 bytes")
        self._key = key
        self.ttl_seconds = ttl_seconds
        self.clock = clock

    @classmethod
    def from_setting(cls, value: str | None, ttl_seconds: float, clock=time.time) -> "CaseLinkSigner":
        """The key from `case_view_key` (base64 of at least 32 bytes); without it, a random key for this
        process only (links then open only on the process that issued them), with a warning."""
        if not value:
            log.warning(
                "NO case_view_key IS CONFIGURED: case-view links are signed with a random key of this "
                "process and open only here. Configure case_view_key from a secret store in production."
            )
            return cls(secrets.token_bytes(32), ttl_seconds, clock)
        try:
            key = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("case_view_key is not valid base64") from None
        return cls(key, ttl_seconds, clock)

    def _signature(self, call_id: str, card_uuid: str, expires: int) -> str:
        message = "\n".join((_VERSION, call_id, card_uuid, str(expires))).encode("utf-8")
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def issue(self, call_id: str, card_uuid: str) -> dict[str, str]:
        """The query parameters of a new link: `e` (expiry, Unix seconds) and `s` (signature)."""
        expires = int(self.clock() + self.ttl_seconds)
        return {"e": str(expires), "s": self._signature(call_id, card_uuid, expires)}

    def verify(self, call_id: str, card_uuid: str, expires: str | None, signature: str | None) -> CaseLink:
        """The link, if its signature is this key's for this call, card and expiry and it has not expired."""
        if not expires or not signature or not expires.isdigit() or len(expires) > 12:
            raise LinkRefused("This link is incomplete. Open the case view again from the card.")
        expected = self._signature(call_id, card_uuid, int(expires))
        if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace")):
            raise LinkRefused("This link is not valid for this case. Open the case view again from the card.")
        if int(expires) <= self.clock():
            raise LinkRefused(
                "This link has expired. Open the case view again from the card, or ask the "
                "office for the case from the audit trail.",
                code="link-expired",
            )
        return CaseLink(call_id, card_uuid, int(expires))
